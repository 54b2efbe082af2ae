"""Connecting to Ray: an existing cluster (--address or $RAY_ADDRESS), else a private local one.

Imported only by code that distributes work; the model and the in-process paths never need Ray.
"""

from __future__ import annotations

import os

from rpgan.errors import UserError

# Ray resolves "127.0.0.1" to the machine's public IP and binds its servers there unless this is
# set before Ray is imported. A private local Ray then listens on loopback only; `connect` to a
# cluster address is unaffected. Import this module before `ray`.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def connect(address: str | None = None, num_cpus: int | None = None, log_to_driver: bool = False) -> str:
    """Initialise Ray once per process. Returns a one-line description of the cluster.

    Without an address a local Ray starts with `num_cpus` logical CPUs (default: this machine's),
    bound to the loopback address, without a dashboard: nothing listens on the network.
    `log_to_driver` shows the workers' output (training progress) here."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS")
    if not ray.is_initialized():
        try:
            if address:
                ray.init(address=address, log_to_driver=log_to_driver)
            else:
                # Without a dashboard Ray's state API is absent, and Ray Train's placement-group
                # cleaner warns about it every few seconds: keep Ray's own loggers to errors.
                ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=log_to_driver,
                         _node_ip_address="127.0.0.1", configure_logging=False,
                         logging_config=ray.LoggingConfig(log_level="ERROR"))
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise UserError(f"cannot connect to Ray at {address}: {e}; check --address / RAY_ADDRESS "
                            "or leave both unset for a local Ray") from None
    res = ray.cluster_resources()
    return f"Ray: {len(ray.nodes())} node(s), {res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs"


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
