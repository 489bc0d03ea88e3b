"""Data-parallel benchmarks: under `accelerate launch` or torchrun, each process runs the model on its share of
a task's examples and every process ends up with all the per-example outputs, so the metrics (computed by the
unchanged task code) are the ones one process computes. Only the main process writes: results, partial
outputs, the run record, the printed leaderboard and files.

    accelerate launch --num_processes 2 -m llm_lab.bench --suite demo-classifier --model minilm
    torchrun --nproc_per_node 2 -m llm_lab.bench --suite demo-classifier --model minilm

How the work is split: a task asks `state.partial.missing(n)` which examples still need the model, runs the
model on them and then reads `state.partial.outputs`. Under a distributed launch the runner hands it a
`ShardedPartial`: `missing` returns this process's share, and the first read of `outputs` afterwards gathers
every process's outputs. The share is made of whole blocks of `block()` (16) examples still to run, dealt in turn
(block b to process b mod N): the generation task generates its examples in chunks of 16 with one seed per
chunk, so a sampled generation draws the same text for each example only when every chunk holds the examples
one process would put in it (interleaving single examples gave other samples, and other metrics, under the
same result key). Fewer than 2 x 16 examples left: the main process runs them all.

The object collectives go through a gloo group, so CPU processes and CUDA processes (each on its own GPU,
`device()`) work alike.

Keeping the processes in step: a collective that one process never reaches waits forever, so every step that
may fail on one process only (loading a model, running out of memory) is run through `agreed`: the processes
exchange how it went, and when one failed every process raises (its own error, or a LabError naming the
process that failed), so all of them move on to the next task together. A speed task runs on the main process
alone (N processes timing themselves on one machine at once measure contention), the others take its result.
"""
from __future__ import annotations

import os

from ..errors import JobCancelled, LabError
from . import cache

_GLOO = None  # the gloo group for object collectives when the default group is NCCL


def launched() -> bool:
    """True when a launcher (torchrun, accelerate launch) started several processes for this run."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init() -> bool:
    """Join the launcher's process group (gloo) when launched with several processes; True when distributed.

    accelerate launch and torchrun set RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT; the group is created
    from them. A group created already (by accelerate or a test) is used as it is."""
    import torch.distributed as dist

    if launched() and dist.is_available() and not dist.is_initialized():
        dist.init_process_group(backend="gloo", timeout=timeout())
    return active()


TIMEOUT_ENV = "LLM_LAB_DATA_PARALLEL_TIMEOUT_S"


def timeout():
    """How long a process waits for the others at a collective (LLM_LAB_DATA_PARALLEL_TIMEOUT_S, default 24 h).

    An lm_eval or speed task runs on the main process alone while the others wait at the next collective: with
    torch's default of 30 minutes, an lm-eval task longer than that ended the waiting processes with a timeout,
    and the main one failed when it came back to them. The processes fail together through `agreed`, so a long
    limit only matters for a process that hangs (stopped by the launcher, or Ctrl-C)."""
    from datetime import timedelta

    text = os.environ.get(TIMEOUT_ENV, "").strip() or str(24 * 3600)
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise LabError(f"{TIMEOUT_ENV}={text!r}: give the seconds a process may wait for the others, e.g. 86400.")
    return timedelta(seconds=seconds)


def active() -> bool:
    """True when this process is one of several in an initialised process group."""
    try:
        import torch.distributed as dist
    except ImportError:
        return False
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if active() else 0


def world() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def device(requested: str | None) -> str | None:
    """The device for this process: with CUDA and no explicit GPU asked for, the process's own GPU
    (LOCAL_RANK), so N processes on one machine use N GPUs; otherwise what was asked for."""
    import torch

    if active() and torch.cuda.is_available() and requested in (None, "auto", "cuda"):
        return f"cuda:{int(os.environ.get('LOCAL_RANK', rank())) % torch.cuda.device_count()}"
    return requested


def _group():
    """The group object collectives use: the default one when it is gloo, else a gloo group over all ranks."""
    global _GLOO
    import torch.distributed as dist

    if dist.get_backend() == "gloo":
        return None
    if _GLOO is None:
        _GLOO = dist.new_group(backend="gloo")
    return _GLOO


def all_gather(obj) -> list:
    """Every process's `obj`, in rank order (one process: [obj])."""
    if not active():
        return [obj]
    import torch.distributed as dist

    out = [None] * world()
    dist.all_gather_object(out, obj, group=_group())
    return out


def from_main(fn):
    """`fn()` run on the main process only; every process gets its value (or raises with it, via `agreed`)."""
    if not active():
        return fn()
    import torch.distributed as dist

    value = agreed(fn) if is_main() else agreed(lambda: None)
    box = [value]
    dist.broadcast_object_list(box, src=0, group=_group())
    return box[0]


# what a process that failed tells the others: a stop (cancel, Ctrl-C) stops them all; an error fails the task
_STOP = (JobCancelled, KeyboardInterrupt)


def _outcome(exc: BaseException | None) -> tuple | None:
    if exc is None:
        return None
    kind = "stop" if isinstance(exc, _STOP) else "error"
    return kind, f"{type(exc).__name__}: {exc}" if not isinstance(exc, LabError) else str(exc)


def raise_if_failed(outcomes: list, own: BaseException | None) -> None:
    """After an exchange of outcomes: this process's own exception if it had one, else a LabError (or
    JobCancelled for a stop) naming the first process that failed."""
    if own is not None:
        raise own
    for r, found in enumerate(outcomes):
        if found is not None:
            kind, message = found
            if kind == "stop":
                raise JobCancelled(f"Process {r} of {len(outcomes)} stopped: {message}")
            raise LabError(f"Process {r} of {len(outcomes)} failed: {message}")


def agreed(fn, same=None):
    """`fn()` on every process; when it fails on any, it fails on all (so they stay in step).

    `same(value)` (optional) is what every process must agree on (a result key: the same weights, data and
    settings); processes that disagree are an error on all of them."""
    if not active():
        return fn()
    value, own = None, None
    try:
        value = fn()
    except BaseException as exc:  # noqa: BLE001 - every failure is told to the other processes, then re-raised
        own = exc
    check = same(value) if same and own is None else None
    outcomes = all_gather((_outcome(own), check))
    raise_if_failed([o for o, _ in outcomes], own)
    if same and len({c for _, c in outcomes}) > 1:
        raise LabError("The processes of this data-parallel run disagree on what they compute (result keys "
                       f"{', '.join(sorted({str(c) for _, c in outcomes}))}): the model's weights, the dataset "
                       "or the settings differ between them. Give every process the same LLM_LAB_HOME (a shared "
                       "folder) and the same command line.")
    return value


def partial(key: str):
    """The partial outputs of a task: a ShardedPartial when distributed, else `cache.Partial`."""
    return ShardedPartial(key) if active() else cache.Partial(key)


def block() -> int:
    """The generation task's chunk: one process generates these examples together, with one seed (imported
    here, when a share is dealt, not when the module loads: the task module imports the metrics)."""
    from .tasks.generation import CHUNK

    return CHUNK


def share(todo: list[int], process: int, processes: int, size: int | None = None) -> list[int]:
    """Process `process`'s share of `todo`: blocks `process`, `process + processes`, ... of `size` (`block()`)
    examples, in order, so each block is the chunk a single process would run together (the last may be short)."""
    size = size or block()
    blocks = [todo[start:start + size] for start in range(0, len(todo), size)]
    return [i for b in blocks[process::processes] for i in b]


class ShardedPartial(cache.Partial):
    """`cache.Partial` for one process of several: `missing(n)` gives this process its share of the examples
    still to run, and the first read of `outputs` afterwards gathers every process's outputs.

    Only the main process reads and writes the partial file; it sends what it resumed to the others. A process
    that fails between `missing` and the gather still takes part in it (`run`), telling the others it failed."""

    def __init__(self, key: str, flush_every: float = 2.0):
        self._pending = False
        if is_main():
            super().__init__(key, flush_every)
            resumed = self._outputs
        else:
            self.path, self.flush_every, self._last, self._outputs = None, flush_every, 0.0, {}
            resumed = None
        box = [resumed]
        import torch.distributed as dist

        dist.broadcast_object_list(box, src=0, group=_group())
        self._outputs = dict(box[0])
        self.resumed = len(self._outputs)

    @property
    def outputs(self) -> dict:
        if self._pending:
            self._gather(None)
        return self._outputs

    @outputs.setter
    def outputs(self, value: dict) -> None:
        self._outputs = value

    def add(self, positions, values) -> None:
        for p, v in zip(positions, values):
            self._outputs[int(p)] = v
        if is_main() and self.flush_every is not None:
            import time

            if time.time() - self._last >= self.flush_every:
                self.flush()

    def flush(self) -> None:
        if is_main():
            super().flush()

    def missing(self, n: int) -> list[int]:
        todo = [i for i in range(n) if i not in self._outputs]
        self._pending = True
        return share(todo, rank(), world())

    def _gather(self, failure: BaseException | None) -> None:
        self._pending = False
        gathered = all_gather((_outcome(failure), None if failure else self._outputs))
        raise_if_failed([o for o, _ in gathered], failure)
        for outputs in gathered:
            self._outputs.update(outputs[1])

    def run(self, fn):
        """`fn()` (the task); a failure before the gather still joins it, so no process waits forever."""
        try:
            return fn()
        except BaseException as exc:
            if self._pending:
                self._gather(exc)
            raise


def run_guarded(partial_outputs, fn):
    """Run a task's `fn` with its partial outputs: through `ShardedPartial.run` when distributed."""
    return partial_outputs.run(fn) if isinstance(partial_outputs, ShardedPartial) else fn()
