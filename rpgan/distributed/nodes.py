"""What a cluster's nodes can hold and see, checked before any work starts.

A cluster is several machines, each with its own CPUs, GPUs and disk. Three things follow:
- a worker or actor must fit one node, not the cluster's total: a request no node can ever hold
  is refused at once, and one the cluster does not place within `placement_timeout()` seconds
  is refused then, instead of waiting forever (`place`);
- a local path is that machine's: a run's --storage written by several nodes must be a shared
  mount (`check_shared_storage`), and data a worker reads from a path must exist on every node
  (`check_on_every_node`);
- the driver's own disk is not the workers': analysis workers get the generator through Ray's
  object store (analysis.fanout), never from the driver's path.
A private local Ray is one machine: these checks pass through (ray_session.check_fit refuses
what it cannot hold).
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path

from rpgan.errors import RemoteError, UserError

BOOTSTRAP = Path("~/ray_bootstrap_config.yaml")  # on the head of a cluster started by `ray up`
PLACEMENT_S = 120.0  # a fixed cluster: how long a request may wait for room before it is refused
AUTOSCALING_PLACEMENT_S = 900.0  # a cluster that starts nodes on demand (minutes per node)
CHECK_S = 60.0  # a task on every node: how long it may take


class Unplaced(RemoteError):
    """The cluster did not place a request within the bound (one line, exit code 1)."""


def alive_nodes() -> list[dict]:
    """The connected cluster's alive nodes (ray.nodes() entries)."""
    import ray

    return [n for n in ray.nodes() if n.get("Alive")]


def autoscaling_node_types() -> list[dict[str, float]] | None:
    """The resources of each node type the autoscaler may add ([] without an autoscaler), or None
    when some type leaves its resources to Ray's detection (then no request is provably too big)."""
    path = BOOTSTRAP.expanduser()
    if not path.is_file():
        return []
    import yaml

    try:
        types = (yaml.safe_load(path.read_text()) or {}).get("available_node_types", {})
    except (OSError, yaml.YAMLError):
        return None
    found = [t.get("resources") for t in types.values()]
    return None if any(not r for r in found) else [{k: float(v) for k, v in r.items()} for r in found]


def possible_nodes() -> list[dict[str, float]] | None:
    """The resources of every node the cluster has or can have (alive nodes, and the node types
    the autoscaler may start); None if unknown (an autoscaler with detected resources)."""
    types = autoscaling_node_types()
    return None if types is None else [n["Resources"] for n in alive_nodes()] + types


def largest_alive_node() -> dict[str, float]:
    """The most CPUs and GPUs one alive node has ({"CPU": .., "GPU": ..})."""
    nodes = [n["Resources"] for n in alive_nodes()]
    return {kind: max((float(n.get(kind, 0.0)) for n in nodes), default=0.0) for kind in ("CPU", "GPU")}


def several_nodes() -> bool:
    """Whether the cluster's workers may run on more than one node: several are alive, or an
    autoscaler may add some (a head alone at first, GPU workers started on demand)."""
    return len(alive_nodes()) > 1 or autoscaling_node_types() != []


def placement_timeout() -> float:
    """Seconds a request may wait for room: $RPGAN_PLACEMENT_TIMEOUT_S, else PLACEMENT_S, or
    AUTOSCALING_PLACEMENT_S on a cluster whose autoscaler may start nodes."""
    given = os.environ.get("RPGAN_PLACEMENT_TIMEOUT_S")
    if given:
        return float(given)
    return AUTOSCALING_PLACEMENT_S if BOOTSTRAP.expanduser().is_file() else PLACEMENT_S


def check_fits_a_node(count: int, bundle: dict[str, float], flags: str) -> None:
    """Refuse `count` workers of `bundle` each when no single node of the cluster can ever hold
    one (UserError naming `flags`, the options that size them)."""
    nodes = possible_nodes()
    if nodes is None or any(all(v <= float(n.get(k, 0.0)) for k, v in bundle.items()) for n in nodes):
        return
    have = "; ".join(sorted({_show({k: float(n.get(k, 0.0)) for k in ("CPU", "GPU")}) for n in nodes}))
    raise UserError(f"{count} workers of {_show(bundle)} each: no node of this cluster has {_show(bundle)} "
                    f"(its nodes: {have}); lower {flags}")


def place(count: int, bundle: dict[str, float], flags: str) -> None:
    """Check that the cluster holds `count` workers of `bundle` each, one per bundle on any
    nodes: refused at once if no node can ever hold one, else after `placement_timeout()`
    seconds without room (Unplaced, naming `flags`); nothing is left reserved either way."""
    from ray.util.placement_group import placement_group, remove_placement_group

    check_fits_a_node(count, bundle, flags)
    limit = placement_timeout()
    group = placement_group([bundle] * count, strategy="PACK")
    try:
        ready = wait_within([group.ready()], limit, 5.0, f"room for {count} workers of {_show(bundle)}")
        if not ready:
            raise Unplaced(f"the cluster did not find room for {count} workers of {_show(bundle)} in {limit:.0f} s "
                           f"(busy, or no node that large); lower {flags}, or free the cluster and run again")
    finally:
        remove_placement_group(group)


def wait_within(refs: list, limit: float | None, say_after: float, what: str) -> list:
    """The refs that are ready within `limit` seconds in all (None: however long it takes);
    after `say_after` seconds without them all, says on stderr that it waits for `what`."""
    import ray

    first = say_after if limit is None else min(say_after, limit)  # a bound shorter than the notice holds
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=first)
    if len(ready) < len(refs) and (limit is None or limit > first):
        bound = "" if limit is None else f" (at most {limit:.0f} s)"
        print(f"rpgan: waiting for {what}{bound}", file=sys.stderr, flush=True)
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=None if limit is None else limit - first)
    return ready


def on_every_node(task, *args) -> dict[str, object]:
    """task(*args) run once on every alive node (no CPU reserved): {node address: its result}.
    RemoteError if a node does not answer within CHECK_S."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    remote = ray.remote(num_cpus=0)(task)
    nodes = alive_nodes()
    refs = [remote.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(*args)
            for n in nodes]
    ready, waiting = ray.wait(refs, num_returns=len(refs), timeout=CHECK_S)
    for ref in waiting:  # nothing left queued on a node that does not answer
        ray.cancel(ref, force=True)
    if waiting:
        raise RemoteError(f"{len(waiting)} of the cluster's {len(refs)} nodes did not answer within "
                          f"{CHECK_S:.0f} s; check the cluster (`ray status`)")
    answers = {}
    for node, ref in zip(nodes, refs):
        try:
            answers[node["NodeManagerAddress"]] = ray.get(ref)
        except ray.exceptions.RayError as e:  # rpgan missing there, a node lost in between
            raise RemoteError(f"node {node['NodeManagerAddress']} could not run the check ({type(e).__name__}); "
                              "check that every node runs the same rpgan (`ray status`, the cluster's setup)") from None
    return answers


def _exists(path: str) -> bool:
    return os.path.exists(path)


def check_on_every_node(path: str, what: str, fix: str) -> None:
    """Refuse (UserError) when a node of the cluster does not see `path` (a local file or folder
    its workers would read); `what` names it for the user, `fix` says what to do."""
    if not several_nodes():
        return
    missing = [node for node, seen in on_every_node(_exists, str(path)).items() if not seen]
    if missing:
        raise UserError(f"{what} {path} is not on every node of the cluster (missing on {', '.join(missing)}); "
                        f"{fix}")


def check_data_on_every_node(spec: str) -> None:
    """Refuse `--data npz:PATH` or `folder:PATH` that some node of the cluster does not have:
    every worker reads the data on its own node (the named data sets each node downloads)."""
    kind, _, path = spec.partition(":")
    if kind in ("npz", "folder"):
        check_on_every_node(path, f"--data {kind}:", "copy it to the same path on every node (or put it on a "
                            "mount they share); named data sets (cifar10, mnist) each node downloads itself")


def check_shared_storage(folder: Path | None, shared: bool, flag: str) -> None:
    """A local --storage on a cluster of several nodes: refused unless the user says it is shared
    (`flag`), and then only if a file written here is seen by every node (as NFS would)."""
    if folder is None or not several_nodes():
        return
    if not shared:
        alive = len(alive_nodes())
        nodes = f"{alive} nodes" if alive > 1 else "an autoscaler that adds nodes"
        raise UserError(f"--storage {folder.parent} is a local path and this Ray cluster has {nodes}, each with its "
                        "own disk: use s3://BUCKET/... (or gs://), or a folder every node mounts "
                        f"(NFS) and pass {flag}")
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / f".rpgan-shared-{uuid.uuid4().hex[:8]}"
    marker.write_text(str(time.time()))
    try:
        check_on_every_node(str(marker), "a file written in --storage", f"{folder.parent} is not shared by every node: "
                            "mount it on every node at the same path, or use s3://BUCKET/...")
    finally:
        marker.unlink(missing_ok=True)


def _show(bundle: dict[str, float]) -> str:
    return "(" + ", ".join(f"{v:g} {k}" for k, v in bundle.items() if v) + ")"
