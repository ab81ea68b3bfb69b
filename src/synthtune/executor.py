"""Where the data-parallel parts of a stage run: in this process, or on a Ray cluster.

A stage cuts its records into shards (``shards``: fixed-size slices, the same whatever the
executor) and hands the executor one function per shard. ``map`` runs a plain function;
``map_workers`` builds a worker once per process from a factory (a model loaded once per Ray
actor, or once here) and feeds it shards. Both return the results in shard order, so the
stage merges them exactly as it would have merged its own loop: the same records, scores,
decisions and splits on every executor. Cross-shard work (clustering duplicates, percentile
thresholds) stays in the stage, on the driver.

``LocalExecutor`` is a loop (no Ray needed). ``RayExecutor`` (``synthtune[ray]``) runs every
part on a pool of Ray actors, one per CPU (``max_restarts`` / ``max_task_retries``: a killed
actor is restarted, rebuilds its model and takes its unfinished part again). A part is
computed from its inputs only, so a retry returns what the first try would have: nothing is
lost or counted twice.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from synthtune.errors import SynthtuneError

T = TypeVar("T")
R = TypeVar("R")

SHARD_SIZE = 512  # records per shard: a few seconds of perplexity scoring on one CPU
EXECUTORS = ("local", "ray")


class ExecutorError(SynthtuneError):
    """The executor cannot start (Ray missing or unreachable)."""

    exit_code = 2


def shards(items: Sequence[T], size: int = SHARD_SIZE) -> list[list[T]]:
    """``items`` in consecutive slices of ``size`` (the last one shorter)."""
    if size < 1:
        raise ValueError("shard size must be at least 1")
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def flatten(parts: Sequence[Sequence[R]]) -> list[R]:
    """Per-shard result lists joined back into one, in order."""
    return [item for part in parts for item in part]


Progress = Callable[[int], None]


class Executor(Protocol):
    name: str
    workers: int
    shard_size: int

    def shards(self, items: Sequence[T]) -> list[list[T]]:
        """``items`` cut into this executor's shards."""
        ...

    def map(
        self,
        fn: Callable[..., R],
        parts: Sequence[Any],
        *,
        shared: Any = None,
        advance: Progress | None = None,
    ) -> list[R]:
        """``[fn(part) for part in parts]`` (``fn(part, shared)`` when ``shared`` is given:
        sent once, not per part); ``advance(len(part))`` as each part finishes."""
        ...

    def map_workers(
        self,
        factory: Callable[[], Callable[[Any], R]],
        parts: Sequence[Any],
        *,
        advance: Progress | None = None,
    ) -> list[R]:
        """``[worker(part) for part in parts]`` with ``worker = factory()`` built once per
        process that runs parts."""
        ...

    def close(self) -> None: ...


def _size(part: Any) -> int:
    try:
        return len(part)
    except TypeError:
        return 1


class LocalExecutor:
    """Every part in this process, one after the other."""

    name = "local"
    workers = 1

    def __init__(self, shard_size: int = SHARD_SIZE) -> None:
        self.shard_size = shard_size

    def shards(self, items: Sequence[T]) -> list[list[T]]:
        return shards(items, self.shard_size)

    def map(
        self,
        fn: Callable[..., R],
        parts: Sequence[Any],
        *,
        shared: Any = None,
        advance: Progress | None = None,
    ) -> list[R]:
        out = []
        for part in parts:
            out.append(fn(part) if shared is None else fn(part, shared))
            if advance is not None:
                advance(_size(part))
        return out

    def map_workers(
        self,
        factory: Callable[[], Callable[[Any], R]],
        parts: Sequence[Any],
        *,
        advance: Progress | None = None,
    ) -> list[R]:
        # no parts: no worker built (a model never loaded for nothing)
        return self.map(factory(), parts, advance=advance) if parts else []

    def close(self) -> None:
        pass


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ExecutorError(
            "--executor ray needs Ray: pip install 'synthtune[ray]' (or use --executor local)"
        ) from exc
    return ray


class _Actor:
    """A Ray actor's body: runs plain functions on parts, and keeps the workers its factories
    build (a loaded model) for as long as it lives. Importing ``preload`` modules when it
    starts overlaps their import time (torch: seconds) with the driver's own work."""

    def __init__(self, preload: tuple[str, ...]) -> None:
        import importlib

        for module in preload:
            importlib.import_module(module)
        self.built: dict[Any, Callable[[Any], Any]] = {}

    def call(self, fn: Callable[..., Any], part: Any, shared: Any = None) -> Any:
        return fn(part) if shared is None else fn(part, shared)

    def work(self, factory: Callable[[], Callable[[Any], Any]], part: Any) -> Any:
        try:
            worker = self.built.get(factory)
        except TypeError:  # an unhashable factory: built for this part only
            return factory()(part)
        if worker is None:
            worker = self.built[factory] = factory()
        return worker(part)


class RayExecutor:
    """Parts on a pool of long-lived Ray actors, one CPU each, on the cluster at ``address``
    (``RAY_ADDRESS`` when None; with neither, a local Ray on this machine's CPUs, or
    ``num_cpus``).

    Why one actor pool for everything rather than Ray tasks for plain functions (measured
    with ``bench/executors.py``): task workers are separate processes that Ray starts, kills
    when idle and starts again, each paying synthtune's imports (1-2 s on 2 cores), and
    actors holding a model also hold the CPUs the tasks wait for. Actors started once, with
    their imports under way while the driver works, pay that once per run. A killed actor
    is restarted (``max_restarts=-1``) and its unfinished part runs again, up to
    ``part_retries`` times; a part that kills its worker more often fails the stage with
    Ray's error rather than looping."""

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        workers: int | None = None,
        num_cpus: int | None = None,
        part_retries: int = 3,
        shard_size: int = SHARD_SIZE,
        preload: tuple[str, ...] = ("numpy", "torch", "transformers"),
    ) -> None:
        self.shard_size = shard_size
        ray = import_ray()
        self.ray = ray
        self.started = False
        if not ray.is_initialized():
            address = address or os.environ.get("RAY_ADDRESS") or None
            try:
                ray.init(
                    address=address,
                    num_cpus=None if address else num_cpus,
                    include_dashboard=False,
                    log_to_driver=False,
                    configure_logging=False,
                )
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ExecutorError(f"cannot reach the Ray cluster at {address}: {exc}") from exc
            self.started = True
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = max(1, min(workers or cpus, cpus))
        actor = ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=part_retries)(_Actor)
        self.pool = [actor.remote(preload) for _ in range(self.workers)]

    def shards(self, items: Sequence[T]) -> list[list[T]]:
        return shards(items, self.shard_size)

    def map(
        self,
        fn: Callable[..., R],
        parts: Sequence[Any],
        *,
        shared: Any = None,
        advance: Progress | None = None,
    ) -> list[R]:
        shared_ref = None if shared is None else self.ray.put(shared)
        return self._dispatch(lambda a, part: a.call.remote(fn, part, shared_ref), parts, advance)

    def map_workers(
        self,
        factory: Callable[[], Callable[[Any], R]],
        parts: Sequence[Any],
        *,
        advance: Progress | None = None,
    ) -> list[R]:
        return self._dispatch(lambda a, part: a.work.remote(factory, part), parts, advance)

    def _dispatch(
        self, submit: Callable[[Any, Any], Any], parts: Sequence[Any], advance: Progress | None
    ) -> list[Any]:
        """Each part to an actor, two in flight per actor (one computing, one on its way),
        the next to whichever actor finishes first; results in part order."""
        ray = self.ray
        results: list[Any] = [None] * len(parts)
        pending: dict[Any, tuple[int, Any]] = {}
        queue = list(enumerate(parts))
        queue.reverse()
        for _ in range(2):
            for a in self.pool:
                if queue:
                    index, part = queue.pop()
                    pending[submit(a, part)] = (index, a)
        while pending:
            [done], _ = ray.wait(list(pending), num_returns=1)
            index, a = pending.pop(done)
            results[index] = ray.get(done)
            if advance is not None:
                advance(_size(parts[index]))
            if queue:
                next_index, part = queue.pop()
                pending[submit(a, part)] = (next_index, a)
        return results

    def close(self) -> None:
        for a in self.pool:
            self.ray.kill(a)
        self.pool = []
        if self.started and self.ray.is_initialized():
            self.ray.shutdown()
        self.started = False


def make_executor(name: str, address: str | None = None) -> Executor:
    """``local`` or ``ray``; an unknown name or a missing Ray is an ``ExecutorError``."""
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address)
    raise ExecutorError(f"unknown executor {name!r}; choose one of: {', '.join(EXECUTORS)}")
