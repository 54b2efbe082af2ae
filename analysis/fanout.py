"""Fan analysis work out to Ray actors that hold the generator and the Inception network once.

The pool knows no analysis. A job is a list of calls `(task, args)`: a task is a plain
module-level function `task(worker, *args)` of the analysis that owns it, run on an `AnalysisWorker`,
which holds what is expensive to build (a checkpoint's generator and the Inception network).
Results come back in call order, so the same seed gives the same numbers whatever the number
of workers. `workers=0` runs the calls in this process (debugging, tests of the numbers).
`Fanout` says where a job runs; `Fanout.holding` keeps one set of actors for several jobs.

A lost worker costs time, not numbers: Ray restarts a dead actor (its constructor reloads the
models, on any node with room) and runs the call it lost again there. Every task is a pure
function of its arguments (each seeds itself from them), so a retried call returns what the
first attempt would have. Restarts are bounded (`RESTARTS` per actor); past them the job ends
with `WorkerLost`, before anything is written.
"""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from rpgan.config import GeneratorWeights
from rpgan.errors import RemoteError
from rpgan.io.progress import Progress
from rpgan.metrics.inception import InceptionFeatures, features, resolve_weights, weights_identity
from rpgan.model.networks import Generator
from rpgan.training.checkpoint import load_generator

import torch
from torch import Tensor

Call = tuple[Callable[..., Any], tuple]  # (task, args): the worker runs task(worker, *args)
RESTARTS = 3  # per actor: a worker killed now and then recovers; one that dies on every call does not
_INCEPTION_HERE: dict[tuple, InceptionFeatures] = {}  # the in-process worker's network, by weights and device


SAY_WAITING_S = 30.0  # an actor's start (a Python importing torch) takes seconds; longer, it waits for room
ACTOR_FLAGS = "--workers or --gpus-per-worker"  # the options that size the actors, named in a refusal


class WorkerLost(RemoteError):
    """A call's Ray worker died more often than `RESTARTS` allows (one line, exit code 1)."""


class AnalysisWorker:
    """One worker's models: a generator (or none: image features only) and the FID Inception."""

    def __init__(self, generator: Generator | None, inception: dict[str, Tensor] | InceptionFeatures, device: str):
        self.generator = None if generator is None else generator.to(device).eval()
        self.inception = inception if isinstance(inception, InceptionFeatures) else \
            InceptionFeatures(inception).to(device)

    def embed(self, images: Tensor) -> Tensor:
        """Inception pool3 features [N, 2048] (CPU) of uint8 images [N, C, H, W]."""
        return features(self.inception, images)

    def run(self, task: Callable[..., Any], args: tuple) -> Any:
        return task(self, *args)


class AnalysisWorkerActor:
    """An AnalysisWorker in a Ray actor, on any node of a cluster: its models (the generator and
    the Inception weights) come through Ray's object store, so it needs nothing from the
    driver's disk. They come with each call, as object refs inside a list (Ray passes a nested
    ref as it is), and are fetched at the first call, again after a restart. Not as constructor
    arguments: Ray keeps no constructor arguments alive for a restart (ray-project/ray#53727) and
    logs an error-level line for every restartable actor that has some in the object store."""

    def __init__(self, device: str, threads: int):
        torch.set_num_threads(threads)
        self.device = device
        self.worker: AnalysisWorker | None = None

    def run(self, models: list, task: Callable[..., Any], args: tuple) -> Any:
        if self.worker is None:
            import ray

            generator, inception = models
            self.worker = AnalysisWorker(None if generator is None else ray.get(generator), ray.get(inception),
                                         self.device)
        return self.worker.run(task, args)


@dataclass(frozen=True)
class Fanout:
    """Where a job's calls run: Ray actors (workers None: as many as fit; 0: in-process)."""

    workers: int | None = None
    gpus_per_worker: float = 0.0
    cpus_per_worker: float | None = None  # also each actor's torch threads [default: see _actor_cpus]
    device: str = "cpu"  # of the in-process worker; actors use cuda exactly when given GPUs
    chunk: int = 250  # images per task, for jobs over images
    inception_weights: Path | None = None
    generator_weights: GeneratorWeights = "auto"  # which generator of the checkpoint the workers load
    # the actors of a `holding` block, started at its first job (mutable in a frozen config)
    _held: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @cached_property
    def inception_state(self) -> dict[str, Tensor]:
        """The Inception weights, resolved once per job."""
        return resolve_weights(self.inception_weights)[0]

    def _here(self, ckpt: str | None) -> AnalysisWorker:
        """The in-process worker for ckpt. Its Inception is built once per process and weights: a
        sweep trial's process, which Tune reuses, evaluates trial after trial without reloading it."""
        key = (weights_identity(self.inception_weights), self.device)  # a file rewritten in place is new
        if key not in _INCEPTION_HERE:
            _INCEPTION_HERE.clear()
            _INCEPTION_HERE[key] = InceptionFeatures(self.inception_state).to(self.device)
        generator = load_generator(ckpt, self.device, self.generator_weights)[0] if ckpt else None
        return AnalysisWorker(generator, _INCEPTION_HERE[key], self.device)

    def run(self, calls: list[Call], ckpt: Path | str | None, label: str = "task") -> list[Any]:
        """Run the calls on AnalysisWorkers for `ckpt` (a path or a URI: read here, shipped to the actors);
        their results in call order."""
        ckpt = str(ckpt) if ckpt else None
        progress = Progress(len(calls), label=label, every=1)
        if self.workers == 0:
            return _run_here(calls, self._here(ckpt), progress)
        if self._held and ckpt in (None, self._held["ckpt"]):
            if "actors" not in self._held:  # the block's first job on Ray starts them
                self._held["actors"] = self._held["stack"].enter_context(self._start(self._held["ckpt"], len(calls)))
            return _gather(self._held["actors"], calls, progress)
        with self._start(ckpt, len(calls)) as actors:
            return _gather(actors, calls, progress)

    @contextmanager
    def holding(self, ckpt: Path | str) -> Iterator[None]:
        """Within the block, every run for `ckpt` (or for no checkpoint: image features) uses one
        set of actors: a trial or command that runs several jobs on a checkpoint starts its
        workers (each importing torch and loading the models, seconds apiece) once. They start
        at the block's first job, as many (and with as many threads) as that job alone would."""
        if self.workers == 0 or self._held:
            yield
            return
        with ExitStack() as stack:
            self._held.update(ckpt=str(ckpt), stack=stack)
            try:
                yield
            finally:
                self._held.clear()

    def _start(self, ckpt: str | None, calls: int) -> AbstractContextManager[list]:
        """The actors of a job of `calls` calls: as many as fit, at most one per call."""
        from rpgan.distributed.ray_session import cluster_slots

        n = min(self.workers or cluster_slots(self.gpus_per_worker, self.cpus_per_worker or 1.0), calls)
        return _actors(ckpt, self.generator_weights, self.inception_state, n, self.gpus_per_worker,
                       self.cpus_per_worker)


def _actor_cpus(cpus_per_worker: float | None, gpus_per_worker: float, n: int) -> float:
    """The CPUs an actor declares and uses as torch threads: as given, else 1 beside a GPU, else
    an equal share of the cluster's CPUs, at most what its biggest node has (an actor runs on one
    node). Never what happens to be free at that moment: the thread count changes Inception's
    float sums, and a job's numbers must depend only on its seed and configuration (on a given
    cluster)."""
    if cpus_per_worker is not None:
        return cpus_per_worker
    from rpgan.distributed.nodes import largest_alive_node
    from rpgan.distributed.ray_session import cluster_resources

    if gpus_per_worker > 0:
        return 1.0
    share = max(1, int(cluster_resources().get("CPU", 1) // n))
    return float(max(1, min(share, int(largest_alive_node()["CPU"]))))


def _run_here(calls: list[Call], worker: AnalysisWorker, progress: Progress) -> list[Any]:
    results = []
    for i, (task, args) in enumerate(calls):
        results.append(worker.run(task, args))
        progress.update(i + 1)
    progress.close()
    return results


@contextmanager
def _actors(ckpt: str | None, weights: GeneratorWeights, inception_state: dict[str, Tensor], n: int,
            gpus_per_worker: float, cpus_per_worker: float | None) -> Iterator[list]:
    """n AnalysisWorkerActors for ckpt, started within the cluster's placement bound
    (rpgan.distributed.nodes), killed when the block ends; yields for each the function that
    submits a call to it (`_gather`)."""
    from rpgan.distributed.nodes import Unplaced, check_fits_a_node, placement_timeout, wait_within
    from rpgan.distributed.ray_session import check_fit, is_private

    import ray

    cpus = _actor_cpus(cpus_per_worker, gpus_per_worker, n)
    check_fit(n, cpus, gpus_per_worker, ACTOR_FLAGS)
    if not is_private():
        check_fits_a_node(n, {"CPU": cpus, "GPU": gpus_per_worker}, ACTOR_FLAGS)
    # "DEFAULT": outside any placement group, also when called from a Tune trial (whose group
    # holds only the trial function's own sliver of a CPU), and a restarted actor goes to any
    # node with room, not only to the one that died. max_task_retries: the call an actor was
    # running when it died runs again on its restarted self (at most as often as it restarts).
    remote = ray.remote(num_cpus=cpus, num_gpus=gpus_per_worker, scheduling_strategy="DEFAULT",
                        max_restarts=RESTARTS, max_task_retries=RESTARTS)(AnalysisWorkerActor)
    # The generator (read here: the checkpoint may be on this machine's disk only) and the
    # Inception weights, held here until the actors are killed (a restarted actor fetches them again).
    models = [ray.put(load_generator(ckpt, weights=weights)[0]) if ckpt else None, ray.put(inception_state)]
    actors = [remote.remote("cuda" if gpus_per_worker > 0 else "cpu", max(1, int(cpus))) for _ in range(n)]
    try:
        # Inside a sweep trial the actors may queue behind other trials' workers, which Tune
        # frees as trials end: they wait as the trial does. Elsewhere the bound holds.
        limit = None if _in_a_trial() else placement_timeout()
        started = wait_within([a.__ray_ready__.remote() for a in actors], limit, SAY_WAITING_S,
                              f"room for {n} analysis workers of ({cpus:g} CPU, {gpus_per_worker:g} GPU)")
        if len(started) < n:
            raise Unplaced(f"the cluster did not start {n} analysis workers of ({cpus:g} CPU, {gpus_per_worker:g} "
                           f"GPU) in {limit:.0f} s (busy, or no node that large); lower {ACTOR_FLAGS}, or free the "
                           "cluster and run again")
        yield [functools.partial(a.run.remote, models) for a in actors]
    finally:
        for a in actors:
            ray.kill(a)


def _in_a_trial() -> bool:
    """Whether this process runs a Ray Tune trial (one that has not imported Tune does not)."""
    if "ray.tune" not in sys.modules:
        return False
    from ray import tune

    try:
        with warnings.catch_warnings():  # Ray warns when asked outside a trial: that is the question
            warnings.simplefilter("ignore")
            return tune.get_context().get_trial_id() is not None
    except Exception:  # outside Tune, or a Tune without a context here
        return False


def _gather(actors: list[Callable[..., Any]], calls: list[Call], progress: Progress) -> list[Any]:
    """Each call on the next idle actor (`actor(task, args)` submits it: `_actors` gives them);
    results in call order. Results are taken as they finish, not in order (ActorPool.map's
    way), so the other actors go on while a killed one restarts and reruns its call."""
    import ray

    results: list[Any] = [None] * len(calls)
    todo = iter(range(len(calls)))
    running: dict[Any, tuple[int, Any]] = {}  # ObjectRef -> (call index, actor)

    def submit(actor) -> None:
        i = next(todo, None)
        if i is not None:
            task, args = calls[i]
            running[actor(task, args)] = (i, actor)

    for actor in actors:
        submit(actor)
    done = 0
    while running:
        [ref], _ = ray.wait(list(running), num_returns=1)
        i, actor = running.pop(ref)
        try:
            results[i] = ray.get(ref)
        except ray.exceptions.RayActorError as e:
            cause = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise WorkerLost(f"{progress.label} {i + 1}/{len(calls)} ({calls[i][0].__name__}) failed: its Ray worker "
                             f"died again after {RESTARTS} restarts (Ray: {cause}); no results were written, so "
                             "rerunning the command is safe (it starts over: nothing is resumed)") from None
        done += 1
        progress.update(done)
        submit(actor)
    progress.close()
    return results
