"""Typed configuration: one frozen dataclass per concern, serialised to JSON in every checkpoint.

`ModelConfig` is enough to rebuild the generator and discriminator; `TrainConfig` holds the
optimisation protocol; `RunConfig` ties them to a preset name and a data set.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import reprlib
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from rpgan.errors import UserError

CONFIG_VERSION = 1

# Bounds that keep a typo from allocating gigabytes before anything fails. Every preset and the
# paper's configurations sit well inside them (CIFAR-10, the largest, has 172M parameters).
MAX_WIDTH = 4096  # width, d_width, z_dim and each of fc_widths
MAX_BLOCKS = 10_000  # blocks in one bucket
MAX_BUCKETS = 64
MAX_IMAGE_SIZE = 1024
MAX_EIGEN_DIMS = 512
MAX_PARAMETERS = 1_000_000_000  # generator + discriminator: 4 GB of float32 weights, ~16 GB to train
MAX_BATCH = 65_536
MAX_STEPS = 1_000_000_000
MAX_D_STEPS = 1000
MAX_DATA_WORKERS = 64
MAX_EMA_KIMG = 1e9  # finite: a NaN or an infinite half-life is refused
MAX_EVAL_SAMPLES = 1_000_000
MAX_SEED = 2**63 - 1

Arch = Literal["resnet", "dcgan", "fc", "eigengan"]
DArch = Literal["resnet", "dcgan"]
InputMode = Literal["learned", "fixed", "gaussian"]
# which generator a checkpoint's reader loads: auto, the moving average when the run keeps one (--ema-kimg)
GeneratorWeights = Literal["auto", "ema", "raw"]
Routing = Literal["group", "gather", "loop"]
Loss = Literal["hinge", "wgan-gp"]
Precision = Literal["fp32", "bf16", "fp16"]


def setting(default: Any, help: str, resumable: bool = False) -> Any:
    """A scalar field a user sets by name: a `rpgan train` flag, a sweep's search key and a results
    column (rpgan.overrides). `resumable`: it may change when a run resumes."""
    return field(default=default, metadata={"help": help, "resumable": resumable})


@dataclass(frozen=True)
class ModelConfig:
    """Generator and discriminator architecture.

    `blocks[i]` is m_i, the number of blocks in bucket i; `len(blocks)` is the number of
    buckets. A standard GAN is `blocks=(1, ...)` with `input="gaussian"`. An EigenGAN
    (`arch="eigengan"`) has one block per layer: `len(blocks)` is its number of subspace layers.
    """

    arch: Arch = setting("resnet", "Generator backbone (eigengan: one subspace per layer, no paths).")
    image_size: int = setting(32, "Resolution of the generated images.")
    channels: int = setting(3, "Image channels: 1 (gray) or 3 (color).")
    blocks: tuple[int, ...] = (40, 40, 40, 40, 40)
    width: int = setting(256, "Generator channels (dcgan: of the last hidden layer).")
    fc_widths: tuple[int, ...] = (128, 256, 512, 1024)  # arch="fc": hidden widths (Table 3)
    plain_buckets: tuple[int, ...] = ()  # arch="fc": 0-based buckets without BN (mnist-fc's, merged ones)
    eigen_dims: int = setting(6, "EigenGAN: dimensions of each layer's subspace (He et al. use 6).")
    z_dim: int = setting(128, "Length of Z (learned or fixed), or of the Gaussian z.")
    input: InputMode = setting("learned", "Learned Z (paper), fixed Z, or Gaussian z per sample (a standard GAN "
                               "with --blocks 1).")
    linear: bool = setting(False, "Identity instead of every nonlinearity of the generator (section 4.4).")
    routing: Routing = setting("group", "How samples reach their blocks: same images, different speed.")
    d_arch: DArch = setting("resnet", "Discriminator backbone.")
    d_width: int = setting(128, "Discriminator channels.")

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
        check_types(self, "model")
        if any(m < 1 for m in self.blocks):
            raise UserError(f"every bucket needs at least 1 block, got blocks={list(self.blocks)}")
        if max(self.blocks, default=0) > MAX_BLOCKS or not 1 <= len(self.blocks) <= MAX_BUCKETS:
            raise UserError(f"--blocks takes 1..{MAX_BUCKETS} buckets of at most {MAX_BLOCKS} blocks each, "
                            f"got {len(self.blocks)} buckets of up to {max(self.blocks, default=0)}")
        _in_range("--image-size", self.image_size, 1, MAX_IMAGE_SIZE)
        for name, value in (("--width", self.width), ("--z-dim", self.z_dim), ("--d-width", self.d_width),
                            *(("fc_widths", w) for w in self.fc_widths)):
            _in_range(name, value, 1, MAX_WIDTH)
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
        else:  # "fc" (check_types refused any other arch)
            need = self.natural_n_buckets
            if self.n_buckets != need:
                raise UserError(f"the fc generator has {need} buckets; pass --blocks with {need} values")
            if any(not 0 <= i < need for i in self.plain_buckets):
                raise UserError(f"plain_buckets are 0-based buckets 0..{need - 1}, got {list(self.plain_buckets)}")
        if self.channels not in (1, 3):
            raise UserError(f"images have 1 or 3 channels, got {self.channels}")
        from rpgan.model.size import parameter_counts  # arithmetic on this config, nothing built

        g, d = parameter_counts(self)
        if g + d > MAX_PARAMETERS:
            raise UserError(f"this model would have {g / 1e6:,.1f}M generator and {d / 1e6:,.1f}M discriminator "
                            f"parameters, over rpgan's limit of {MAX_PARAMETERS / 1e6:,.0f}M; lower --width, "
                            "--blocks or --d-width")
        return self

    def _validate_eigengan(self) -> None:
        need, size = self.natural_n_buckets, self.image_size
        if self.n_buckets < need or set(self.blocks) != {1}:
            raise UserError(f"an eigengan generator at {size}x{size} has at least {need} layers of one block each "
                            f"(no random paths); pass --blocks 1,1,... with {need} or more values")
        if self.input != "gaussian":
            raise UserError("an eigengan generator draws its noise per sample: pass --input gaussian")
        if not 1 <= self.eigen_dims <= MAX_EIGEN_DIMS or self.linear:
            raise UserError(f"an eigengan generator needs --eigen-dims 1..{MAX_EIGEN_DIMS} and its nonlinearities "
                            "(drop --linear)")


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation protocol (paper section 4: Adam 2.5e-4, betas 0.5/0.999, hinge)."""

    steps: int = setting(450_000, "Generator steps (the total, also when resuming).", resumable=True)
    batch: int = setting(64, "Images per step (the global batch, shared by Ray workers).")
    d_steps: int = setting(5, "Discriminator steps per generator step.")
    loss: Loss = setting("hinge", "Adversarial loss.")
    lr: float = setting(2.5e-4, "Adam learning rate of G and D.")
    betas: tuple[float, float] = (0.5, 0.999)
    diversity_weight: float = setting(0.1, "Weight of the block diversity loss in the generator loss.")
    orthogonality_weight: float = setting(1.0, "EigenGAN: weight of sum_l ||U_l^T U_l - I||^2 in the generator "
                                          "loss.")
    gp_weight: float = setting(10.0, "WGAN-GP gradient penalty weight.")
    seed: int = setting(0, "Seed of the weights, paths and data order.")
    frozen_blocks: tuple[int, ...] = ()  # incremental learning: blocks [0, n_i) of bucket i stay fixed
    sample_every: int = setting(500, "Steps between sample grids (0: only at the end).", resumable=True)
    checkpoint_every: int = setting(1000, "Steps between checkpoints (0: only at the end).", resumable=True)
    log_every: int = setting(10, "Steps between rows of metrics.parquet and TensorBoard.", resumable=True)
    eval_every: int = setting(0, "Steps between FID evaluations during training (at its multiples; 0: none).",
                              resumable=True)
    eval_at: tuple[int, ...] = ()  # more steps to evaluate at, beside eval_every's multiples: a sweep's ASHA rungs
    eval_samples: int = setting(1000, "Generated images of each evaluation during training, against as many real "
                                "ones.", resumable=True)
    eval_prd: bool = setting(False, "Evaluations during training also compute PRD.", resumable=True)
    precision: Precision = setting("fp32", "Arithmetic of the forward passes: fp32, bf16 autocast, or fp16 autocast "
                                   "with gradient scaling (weights, gradients, optimizer states and the losses "
                                   "stay fp32).")
    allow_tf32: bool = setting(True, "CUDA: TF32 matrix products and convolutions (Ampere and newer GPUs).")
    cudnn_benchmark: bool = setting(True, "CUDA: let cuDNN time and pick its convolution algorithms.")
    compile: bool = setting(False, "torch.compile the discriminator and the generator's shared layers (the "
                            "routed buckets stay eager); D then sees real and fake images in one pass.")
    data_workers: int = setting(2, "Processes decoding folder: images ahead of the training step (0: decode "
                                "in the step; in-memory data sets need none).", resumable=True)
    ema_kimg: float = setting(0.0, "Keep an exponential moving average of the generator's weights, with this "
                              "half-life in thousands of generated images (stylegan2-ada's ema_kimg; 0: none). "
                              "sample, analyze, fid and the sweeps then use the averaged generator.")

    def validate(self) -> TrainConfig:
        """Return self, or raise UserError naming the impossible setting."""
        check_types(self, "train")
        for name in ("steps", "batch", "d_steps", "log_every"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        _in_range("--steps", self.steps, 1, MAX_STEPS)
        _in_range("--batch", self.batch, 1, MAX_BATCH)
        _in_range("--d-steps", self.d_steps, 1, MAX_D_STEPS)
        for name in ("sample_every", "checkpoint_every", "log_every"):
            _in_range(f"--{name.replace('_', '-')}", getattr(self, name), 0, MAX_STEPS)
        _in_range("--seed", self.seed, 0, MAX_SEED)
        _in_range("--data-workers", self.data_workers, 0, MAX_DATA_WORKERS)
        _in_range("--eval-every", self.eval_every, 0, MAX_STEPS)
        if any(not 1 <= step <= MAX_STEPS for step in self.eval_at):
            raise UserError(f"eval_at are steps 1..{MAX_STEPS}, got {list(self.eval_at)}")
        _in_range("--eval-samples", self.eval_samples, 2, MAX_EVAL_SAMPLES)
        if self.compile and self.loss == "wgan-gp":
            raise UserError("--compile cannot train with --loss wgan-gp: torch.compile has no double backward, "
                            "which the gradient penalty needs; drop --compile")
        if not 0 <= self.ema_kimg <= MAX_EMA_KIMG:
            raise UserError(f"--ema-kimg must be 0 (no average) up to {MAX_EMA_KIMG:g}, got {self.ema_kimg}")
        if self.lr <= 0 or self.diversity_weight < 0 or self.orthogonality_weight < 0:
            raise UserError("--lr must be positive, --diversity-weight and --orthogonality-weight non-negative")
        if self.gp_weight < 0 or not all(0 <= b < 1 for b in self.betas):
            raise UserError(f"--gp-weight must be non-negative and betas in [0, 1), got {self.gp_weight}, "
                            f"{list(self.betas)}")
        if any(n < 0 or n > MAX_BLOCKS for n in self.frozen_blocks):
            raise UserError(f"frozen_blocks are block counts 0..{MAX_BLOCKS}, got {list(self.frozen_blocks)}")
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
    def from_json(cls, text: str | bytes) -> RunConfig:
        """Parse a checkpoint's config.json (text, or its bytes); raise UserError if it is not one
        we can rebuild: not UTF-8, not JSON, nested too deep, unknown keys, wrong types, bad values."""
        try:
            raw = json.loads(text)
            if not isinstance(raw, dict):
                raise TypeError(f"the top level is a JSON {type(raw).__name__}, not an object")
            version = raw.pop("version")
            if type(version) is not int or version != CONFIG_VERSION:  # the string "1" is not version 1
                raise UserError(f"config version {json.dumps(version)[:20]} is not supported (this rpgan reads "
                                f"version {CONFIG_VERSION}, an integer)")
            model = _from_dict(ModelConfig, raw.pop("model"))
            train = _from_dict(TrainConfig, raw.pop("train"))
            config = cls(model=model.validate(), train=train.validate(), **raw)
        except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as e:
            # ValueError covers JSONDecodeError and UnicodeDecodeError (bytes that are not UTF-8)
            detail = " ".join(str(e).split())[:160]
            raise UserError(f"config.json is not an rpgan run configuration ({type(e).__name__}: {detail})") from None
        check_types(config, "")
        if config.dataset_size < 0:
            raise UserError(f"config.json: dataset_size must be non-negative, got {config.dataset_size}")
        return config


def _from_dict(cls: type, raw: dict[str, Any]) -> Any:
    if not isinstance(raw, dict):
        raise TypeError(f"{cls.__name__} is a JSON {type(raw).__name__}, not an object")
    # JSON turns tuples into lists; turn them back so configs compare equal after a round trip.
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    return cls(**values)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _fits(value: Any, hint: Any) -> bool:
    """Whether a value has the annotated type (int, float, bool, str, Literal, tuple[...])."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:  # a finite number: JSON allows NaN and Infinity
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if origin is Literal:
        return isinstance(value, str) and value in args
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(v, args[0]) for v in value)
        return len(value) == len(args) and all(_fits(v, a) for v, a in zip(value, args))
    return True  # nested dataclasses validate themselves


_KINDS = {int: "integer", float: "finite number", bool: "boolean", str: "string"}


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return "one of " + ", ".join(args)
    if origin is tuple:
        count = "" if len(args) == 2 and args[1] is Ellipsis else f"{len(args)} "
        return f"a list of {count}{_KINDS.get(args[0], str(args[0]))}s"
    if hint is bool:
        return "true or false"
    kind = _KINDS.get(hint, str(hint))
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def check_types(config: Any, section: str) -> None:
    """Raise UserError naming the first field of a config dataclass whose value has the wrong type
    (a hand-edited config.json: width 1.5, "abc", a list where a number goes)."""
    for f in dataclasses.fields(config):
        hint, value = _hints(type(config))[f.name], getattr(config, f.name)
        if not _fits(value, hint):
            name = f"{section}.{f.name}" if section else f.name
            raise UserError(f"{name} must be {_describe(hint)}, got {reprlib.repr(value)}")


def _in_range(name: str, value: int, lo: int, hi: int) -> None:
    if not lo <= value <= hi:
        raise UserError(f"{name} must be {lo}..{hi}, got {value}")


def expand_blocks(spec: str, n_buckets: int) -> tuple[int, ...]:
    """`--blocks 10` gives every bucket 10 blocks; `--blocks 20,20,20,8` sets each bucket."""
    try:
        values = tuple(int(v) for v in spec.split(","))
    except ValueError:
        raise UserError(f"--blocks takes N or a comma-separated list like 20,20,20,8, got {spec!r}") from None
    return values * n_buckets if len(values) == 1 else values


def generator_weights(config: RunConfig, weights: GeneratorWeights = "auto") -> str:
    """Which generator a reader asking for `weights` gets from a checkpoint of `config`: "ema"
    (the moving average) or "raw" (the trained weights). UserError for "ema" of a run without one."""
    if weights == "ema" and not config.train.ema_kimg:
        raise UserError("this run keeps no moving average of its generator (it was trained without --ema-kimg); "
                        "drop --generator-weights ema")
    return "ema" if weights != "raw" and config.train.ema_kimg else "raw"
