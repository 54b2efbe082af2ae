"""Connecting to Ray and sizing its workers: the one resource policy of train, sweeps and analysis.

The cluster is --address, else $RAY_ADDRESS, else a private local Ray. A worker takes
`--gpus-per-worker` GPUs, by default one when the device asks for CUDA (`default_gpus`); a
private local Ray cannot grow, so workers that do not fit it are refused up front, before it
starts (`refuse_before_start`, from what it would hold: `local_resources`), while a cluster may
autoscale to them. Imported only by code that distributes work; the model and the
in-process paths never need Ray.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from rpgan.errors import UserError

LOOPBACK = "127.0.0.1"
ANSWER_S = 10.0  # how long a cluster's address may take to accept a connection
_private = False  # whether this process started its own local Ray (see connect)


@dataclass(frozen=True)
class Workers:
    """The worker group of a run: how many, and what each one holds."""

    count: int
    gpus: float = 0.0  # per worker; fractions share a GPU
    cpus: float = 1.0  # per worker; also its torch threads
    max_failures: int = 3  # worker-group restarts from the last checkpoint before the run fails

    def validate(self) -> Workers:
        if self.count < 1 or self.cpus <= 0 or self.gpus < 0 or self.max_failures < 0:
            raise UserError("--workers must be at least 1, --cpus-per-worker positive, --gpus-per-worker and "
                            "--max-failures non-negative")
        return self


def ray_address(address: str | None) -> str | None:
    """The cluster to join: `address` (--address), else $RAY_ADDRESS, else None (a private local Ray)."""
    return address or os.environ.get("RAY_ADDRESS") or None


def connect(address: str | None = None, num_cpus: int | None = None, log_to_driver: bool = False) -> str:
    """Initialise Ray once per process. Returns a one-line description of the cluster.

    With an address (or $RAY_ADDRESS) this joins that cluster. Without one, a private local Ray
    starts with `num_cpus` logical CPUs (default: this machine's), its own instance whatever
    `ray start` recorded in /tmp/ray, every server bound to the loopback address and no
    dashboard: nothing listens on the network. `log_to_driver` shows the workers' output
    (training progress) here."""
    import ray

    global _private
    address = ray_address(address)
    if not ray.is_initialized():
        try:
            if address:
                check_answers(address)
                ray.init(address=address, log_to_driver=log_to_driver)
            else:
                _start_private(num_cpus, log_to_driver)
            _private = not address
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise UserError(f"cannot connect to Ray at {address}: {e}; check --address / RAY_ADDRESS "
                            "or leave both unset for a local Ray") from None
    res = ray.cluster_resources()
    return f"Ray: {len(ray.nodes())} node(s), {res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs"


def check_answers(address: str) -> None:
    """UserError unless something accepts a connection at the cluster's HOST:PORT (a GCS, or a
    ray:// client server) within ANSWER_S: Ray's driver retries an address where nothing listens
    for many minutes (over 10 at 127.0.0.1:1) before it gives up. Ray's own words, "auto" (the
    cluster `ray start` recorded) and "local", are left to Ray."""
    if address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=ANSWER_S).close()
    except (OSError, ValueError) as e:
        raise UserError(f"nothing answers at Ray address {address!r} ({e}); check --address / RAY_ADDRESS "
                        "(HOST:PORT of the head's GCS, or ray://HOST:PORT), or leave both unset for a local Ray"
                        ) from None


def _start_private(num_cpus: int | None, log_to_driver: bool) -> None:
    import ray

    # Before Ray starts, its node address is loopback exactly when rpgan's switch (rpgan/__init__)
    # was set before ray was imported; otherwise every server would bind the network address.
    if ray.util.get_node_ip_address() != LOOPBACK:
        raise RuntimeError("ray was imported before rpgan, so a local Ray would listen on every network "
                           "interface: import rpgan first, or pass --address of a cluster")
    from rpgan.distributed import reaper

    reaper.start()  # its processes end with this one, even one killed with SIGKILL
    # address="local": a new instance, never one named in /tmp/ray/ray_current_cluster (stale, or
    # another user's). Without a dashboard Ray's state API is absent, and Ray Train's
    # placement-group cleaner warns about it every few seconds: keep Ray's own loggers to errors.
    have = local_resources(num_cpus)
    ray.init(address="local", num_cpus=int(have["CPU"]), num_gpus=int(have["GPU"]), include_dashboard=False,
             log_to_driver=log_to_driver, _node_ip_address=LOOPBACK, configure_logging=False,
             logging_config=ray.LoggingConfig(log_level="ERROR"))


def local_resources(num_cpus: int | None = None) -> dict[str, float]:
    """What a private local Ray of `num_cpus` CPUs (default: this machine's) holds, and `connect`
    starts it with: those CPUs and the GPUs torch sees (the only ones its workers can use)."""
    import torch

    return {"CPU": float(num_cpus or os.cpu_count() or 1), "GPU": float(torch.cuda.device_count())}


def cluster_resources() -> dict[str, float]:
    """Total resources of the connected cluster, e.g. {"CPU": 2.0, "GPU": 1.0}."""
    import ray

    return ray.cluster_resources()


def cluster_slots(gpus_per_worker: float, cpus_per_worker: float = 1.0) -> int:
    """How many workers of this size the connected cluster holds at once (at least 1)."""
    res = cluster_resources()
    if gpus_per_worker > 0:
        return max(1, int(res.get("GPU", 0) // gpus_per_worker))
    return max(1, int(res.get("CPU", 1) // cpus_per_worker))


def is_private() -> bool:
    """Whether this process runs its own local Ray (which cannot grow), not a cluster's."""
    return _private


def default_gpus(device: str, have: dict[str, float] | None = None) -> float:
    """GPUs per worker when the user gave none: 1 when `device` asks for CUDA (cuda, or auto on a
    cluster with GPUs: the connected one's, or `have`), else 0."""
    if device != "auto":
        return 1.0 if device == "cuda" else 0.0
    return 1.0 if (cluster_resources() if have is None else have).get("GPU", 0) > 0 else 0.0


def refuse_before_start(address: str | None, count: int, cpus: float, gpus: float | None, device: str,
                        flags: str) -> None:
    """Before `connect(address)`: when it would start a private local Ray, refuse `count` workers
    of (cpus, gpus) each (gpus None: `default_gpus(device)` there) that it could not hold, so that
    a refusal starts no Ray. Nothing when a cluster is named: it may autoscale."""
    if ray_address(address):
        return
    have = local_resources()
    _refuse_unfit(count, cpus, default_gpus(device, have) if gpus is None else gpus, have, flags)


def check_fit(count: int, cpus: float, gpus: float, flags: str, spare_cpus: float = 0.0) -> None:
    """Refuse `count` workers of (cpus, gpus) each that the connected private local Ray cannot
    hold, leaving `spare_cpus` aside, in one line naming the `flags` that size them; on a cluster,
    which may autoscale, accept them."""
    if not is_private():
        return
    have = cluster_resources()
    _refuse_unfit(count, cpus, gpus, {"CPU": have.get("CPU", 0) - spare_cpus, "GPU": have.get("GPU", 0)}, flags)


def _refuse_unfit(count: int, cpus: float, gpus: float, have: dict[str, float], flags: str) -> None:
    cpu, gpu = have.get("CPU", 0), have.get("GPU", 0)
    if count * cpus > cpu or count * gpus > gpu:
        raise UserError(f"{count} workers x ({cpus:g} CPU, {gpus:g} GPU) do not fit this machine ({cpu:g} CPUs, "
                        f"{gpu:g} GPUs); lower {flags}, or pass --address of a cluster")
