"""The torch.distributed process group of a Ray Train run, bound to the workers' node address.

Ray Train's own rendezvous (TorchConfig) has rank 0 open a TCPStore, which binds the wildcard
address whatever host it is given: a local `train --workers 2` listened on every interface.
Here rank 0 binds the store's socket to its Ray node address itself and hands it to TCPStore
(`master_listen_fd`), and gloo and NCCL open their connections on the same interface. On a
private local Ray (node address 127.0.0.1) nothing listens beyond loopback; on a cluster the
store, gloo and NCCL listen on each node's cluster address only (docs/distributed.md).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass
from datetime import timedelta

import ray
import torch.distributed as dist
from ray.exceptions import GetTimeoutError
from ray.train.backend import Backend
from ray.train.torch import TorchConfig

SHUTDOWN_TIMEOUT_S = 30

_store_socket: socket.socket | None = None  # rank 0's, kept open from _listen until _join


def _listen() -> tuple[str, int]:
    """On rank 0: a socket bound to this node's Ray address on a free port; (address, port)."""
    global _store_socket
    address = ray.util.get_node_ip_address()
    _store_socket = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
    _store_socket.bind((address, 0))
    _store_socket.listen()
    return address, _store_socket.getsockname()[1]


def _join(backend: str, address: str, port: int, world_rank: int, world: int, timeout_s: int) -> None:
    """Join the process group whose store rank 0 serves at address:port."""
    if ipaddress.ip_address(address).is_loopback:  # gloo and NCCL pick an outward interface otherwise
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
        os.environ.setdefault("NCCL_SOCKET_IFNAME", "lo")
    if backend == "nccl":  # fail on a timed-out collective instead of hanging (as Ray Train does)
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    timeout = timedelta(seconds=timeout_s)
    lead = world_rank == 0
    # rank 0's server listens on the socket _listen bound to the node address (127.0.0.1 on a local run)
    store = dist.TCPStore(address, port, world, is_master=lead, timeout=timeout,
                          master_listen_fd=_store_socket.fileno() if lead else None)
    dist.init_process_group(backend, store=store, rank=world_rank, world_size=world, timeout=timeout)


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class _NodeBoundBackend(Backend):
    share_cuda_visible_devices = True  # as Ray's torch backend: NCCL sees every GPU of the node

    def on_start(self, worker_group, backend_config: NodeBoundTorchConfig) -> None:
        address, port = worker_group.execute_single(0, _listen)
        world = len(worker_group)
        ray.get([worker_group.execute_single_async(rank, _join, backend=backend_config.backend, address=address,
                                                   port=port, world_rank=rank, world=world,
                                                   timeout_s=backend_config.timeout_s)
                 for rank in range(world)])

    def on_shutdown(self, worker_group, backend_config: NodeBoundTorchConfig) -> None:
        try:
            ray.get(worker_group.execute_async(_leave), timeout=SHUTDOWN_TIMEOUT_S)
        except GetTimeoutError:
            pass


@dataclass
class NodeBoundTorchConfig(TorchConfig):
    """TorchConfig whose process group listens on the workers' node address only; pass it as
    `TorchTrainer(torch_config=...)`. `backend` None: TorchTrainer picks nccl or gloo."""

    @property
    def backend_cls(self) -> type[Backend]:
        return _NodeBoundBackend
