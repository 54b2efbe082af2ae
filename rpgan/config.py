"""Typed configuration: one frozen dataclass per concern, serialised to JSON in every checkpoint.

`ModelConfig` is enough to rebuild the generator and discriminator; `TrainConfig` holds the
optimisation protocol; `RunConfig` ties them to a preset name and a data set.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from rpgan.errors import UserError

CONFIG_VERSION = 1

Arch = Literal["resnet", "dcgan", "fc", "eigengan"]
DArch = Literal["resnet", "dcgan"]
InputMode = Literal["learned", "fixed", "gaussian"]
Routing = Literal["group", "gather", "loop"]
Loss = Literal["hinge", "wgan-gp"]


@dataclass(frozen=True)
class ModelConfig:
    """Generator and discriminator architecture.

    `blocks[i]` is m_i, the number of blocks in bucket i; `len(blocks)` is the number of
    buckets. A standard GAN is `blocks=(1, ...)` with `input="gaussian"`. An EigenGAN
    (`arch="eigengan"`) has one block per layer: `len(blocks)` is its number of subspace layers.
    """

    arch: Arch = "resnet"
    image_size: int = 32
    channels: int = 3
    blocks: tuple[int, ...] = (40, 40, 40, 40, 40)
    width: int = 256  # generator feature channels (dcgan: channels of the last hidden layer)
    fc_widths: tuple[int, ...] = (128, 256, 512, 1024)  # arch="fc": hidden widths (Table 3)
    plain_buckets: tuple[int, ...] = ()  # arch="fc": 0-based buckets without BN (mnist-fc's, merged ones)
    eigen_dims: int = 6  # arch="eigengan": dimensions of each layer's subspace (He et al. use 6)
    z_dim: int = 128
    input: InputMode = "learned"  # learned Z (paper), fixed Z, or Gaussian z per sample
    linear: bool = False  # every nonlinearity inside the generator replaced by identity (4.4)
    routing: Routing = "group"  # how samples reach their blocks; same outputs, different speed
    d_arch: DArch = "resnet"
    d_width: int = 128

    @property
    def n_buckets(self) -> int:
        return len(self.blocks)

    @property
    def latent_dim(self) -> int:
        """Length of a sample's Gaussian input z: z_dim, plus for EigenGAN every layer's subspace
        coefficients (z = [eps, z_1, ..., z_L])."""
        return self.z_dim + (self.n_buckets * self.eigen_dims if self.arch == "eigengan" else 0)

    @property
    def n_upsamplings(self) -> int:
        """Doublings from the 4x4 seed to the image size (conv generators)."""
        return int(math.log2(max(self.image_size // 4, 1)))

    @property
    def natural_n_buckets(self) -> int:
        """Buckets of the architecture without extra same-resolution buckets (Table 1 depths)."""
        if self.arch == "fc":
            return len(self.fc_widths) + 1
        return self.n_upsamplings + {"resnet": 2, "dcgan": 1, "eigengan": 0}[self.arch]

    def validate(self) -> ModelConfig:
        """Return self, or raise UserError naming the impossible setting."""
        if any(m < 1 for m in self.blocks):
            raise UserError(f"every bucket needs at least 1 block, got blocks={list(self.blocks)}")
        if self.arch in ("resnet", "dcgan", "eigengan"):
            size = self.image_size
            if size < 8 or size & (size - 1):
                raise UserError(f"arch {self.arch} needs a power-of-two image size >= 8, got {size}")
            need = self.natural_n_buckets
            if self.arch == "dcgan" and self.n_buckets != need:
                raise UserError(
                    f"a dcgan generator at {size}x{size} has {need} buckets; pass --blocks with {need} values"
                )
            if self.arch == "resnet" and self.n_buckets < need:
                raise UserError(
                    f"a resnet generator at {size}x{size} needs at least {need} buckets "
                    f"(linear, {self.n_upsamplings} up-blocks, conv); got {self.n_buckets}"
                )
            if self.arch == "eigengan":
                self._validate_eigengan()
        elif self.arch == "fc":
            need = self.natural_n_buckets
            if self.n_buckets != need:
                raise UserError(f"the fc generator has {need} buckets; pass --blocks with {need} values")
        else:
            raise UserError(f"unknown arch {self.arch!r}; choose resnet, dcgan, fc or eigengan")
        if self.input not in ("learned", "fixed", "gaussian"):
            raise UserError(f"unknown input {self.input!r}; choose learned, fixed or gaussian")
        if self.routing not in ("group", "gather", "loop"):
            raise UserError(f"unknown routing {self.routing!r}; choose group, gather or loop")
        if self.d_arch not in ("resnet", "dcgan"):
            raise UserError(f"unknown discriminator {self.d_arch!r}; choose resnet or dcgan")
        if self.channels not in (1, 3):
            raise UserError(f"images have 1 or 3 channels, got {self.channels}")
        return self

    def _validate_eigengan(self) -> None:
        need, size = self.natural_n_buckets, self.image_size
        if self.n_buckets < need or set(self.blocks) != {1}:
            raise UserError(f"an eigengan generator at {size}x{size} has at least {need} layers of one block each "
                            f"(no random paths); pass --blocks 1,1,... with {need} or more values")
        if self.input != "gaussian":
            raise UserError("an eigengan generator draws its noise per sample: pass --input gaussian")
        if self.eigen_dims < 1 or self.linear:
            raise UserError("an eigengan generator needs --eigen-dims >= 1 and its nonlinearities (drop --linear)")


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation protocol (paper section 4: Adam 2.5e-4, betas 0.5/0.999, hinge)."""

    steps: int = 450_000  # generator steps
    batch: int = 64
    d_steps: int = 5  # discriminator steps per generator step
    loss: Loss = "hinge"
    lr: float = 2.5e-4
    betas: tuple[float, float] = (0.5, 0.999)
    diversity_weight: float = 0.1  # weight of the block diversity loss in the generator loss
    orthogonality_weight: float = 1.0  # EigenGAN: weight of sum_l ||U_l^T U_l - I||^2 in the generator loss
    gp_weight: float = 10.0  # WGAN-GP gradient penalty weight
    seed: int = 0
    frozen_blocks: tuple[int, ...] = ()  # incremental learning: blocks [0, n_i) of bucket i stay fixed
    sample_every: int = 500  # steps between sample grids (0: only at the end)
    checkpoint_every: int = 1000  # steps between checkpoints (0: only at the end)
    log_every: int = 10  # steps between rows of the run's metrics (Parquet, TensorBoard)

    def validate(self) -> TrainConfig:
        for name in ("steps", "batch", "d_steps", "log_every"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.loss not in ("hinge", "wgan-gp"):
            raise UserError(f"unknown loss {self.loss!r}; choose hinge or wgan-gp")
        if self.lr <= 0 or self.diversity_weight < 0 or self.orthogonality_weight < 0:
            raise UserError("--lr must be positive, --diversity-weight and --orthogonality-weight non-negative")
        return self


@dataclass(frozen=True)
class RunConfig:
    """Everything a checkpoint records about how it was made."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: str = "digits"
    labels: str = ""  # train on these labels only, e.g. "0-6" or "1,3,5" ("" = all)
    dataset_size: int = 0  # images in the training set, for the coverage figure (Table 1)
    preset: str = ""

    def to_json(self) -> str:
        return json.dumps({"version": CONFIG_VERSION, **dataclasses.asdict(self)}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        """Parse a checkpoint's config.json; raise UserError if it is not one we can rebuild."""
        try:
            raw = json.loads(text)
            version = raw.pop("version")
            if version != CONFIG_VERSION:
                raise UserError(f"config version {version} is not supported (this rpgan reads {CONFIG_VERSION})")
            model = _from_dict(ModelConfig, raw.pop("model"))
            train = _from_dict(TrainConfig, raw.pop("train"))
            return cls(model=model.validate(), train=train.validate(), **raw)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise UserError(f"config.json is not an rpgan run configuration ({type(e).__name__}: {e})") from None


def _from_dict(cls: type, raw: dict[str, Any]) -> Any:
    # JSON turns tuples into lists; turn them back so configs compare equal after a round trip.
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    return cls(**values)


def expand_blocks(spec: str, n_buckets: int) -> tuple[int, ...]:
    """`--blocks 10` gives every bucket 10 blocks; `--blocks 20,20,20,8` sets each bucket."""
    try:
        values = tuple(int(v) for v in spec.split(","))
    except ValueError:
        raise UserError(f"--blocks takes N or a comma-separated list like 20,20,20,8, got {spec!r}") from None
    return values * n_buckets if len(values) == 1 else values
