"""Background jobs: a huey queue (SQLite on a laptop, Redis for a team), workers, state in the store.

A job is a function `fn(ctx: JobContext, **params) -> dict | None` named by its
import path ("llm_lab.train:run"). `submit` records it as queued and puts
its id on the queue; the worker (`python -m llm_lab worker`, started on demand by
`ensure_worker`) runs one job at a time, so one GPU is never shared by two jobs.
Progress, metric curves and log lines go to the store, where any page, browser
session or CLI can read them; a refresh loses nothing. A worker that dies leaves
its running jobs marked `interrupted`; `resume` queues them again with
`ctx.resume` set, so the job can continue from its last checkpoint.

A team server runs the worker in a container of its own (docker-compose.yml) and sets
LLM_LAB_EXTERNAL_WORKER=1 on both containers: see `external_worker`.

The team path (LLM_LAB_QUEUE_URL=redis://host:6379/0): huey keeps its queue in Redis, and workers run on
any number of machines (`python -m llm_lab worker [--gpus 0,1] [--queue gpu|cpu]`), sharing the store
(PostgreSQL, LLM_LAB_DATABASE_URL) and LLM_LAB_HOME (a shared folder). Redis rather than huey's PostgreSQL
storage: huey's SQL storages poll a table (every worker issues a SELECT … FOR UPDATE-style dequeue on the
database that already carries every page and progress write, and that database's connection limit is
shared with the dashboard's pool), while Redis pops a list in O(1) with no locks and no vacuum, is huey's
primary and best-tested backend, and keeps queue traffic off the store. Redis holds only job ids: all state
is in the store, so losing Redis loses no job (resume re-queues it). Two queues, `gpu` and `cpu`: a job
declares its resources (`Resources`: whether it needs a GPU, an estimate of its GPU memory) and goes to the
queue that fits; a CPU worker takes only `cpu` jobs, a GPU worker `gpu` jobs first and `cpu` jobs when no
GPU job waits (`--queue gpu` for GPU jobs only), and a GPU job whose estimate exceeds the worker's GPU
memory is put back for a bigger worker. Claiming is one conditional UPDATE (queued → running), so a job runs
once even if its id was queued twice. Each worker has a row in the `workers` table and beats every
HEARTBEAT_S (LLM_LAB_HEARTBEAT_S); a worker silent for WORKER_TIMEOUT_S (LLM_LAB_WORKER_TIMEOUT_S) is
`lost` and its job `interrupted`, to be resumed by any worker from its last checkpoint (`resume`). Clocks
of the machines must agree to well within that timeout (NTP). Cancelling sets a flag in the store, which the
running worker reads at the job's next progress report, from whichever machine it was set. A worker that
finds its job taken from it (declared lost during a long pause, then resumed elsewhere) stops that job at
its next progress report and never overwrites the new run's state. The laptop path below is unchanged.

A worker's lifetime: one the dashboard starts (`own_workers` in the dashboard's process, then
`ensure_worker`) gets `--parent-pid` and stops when that process is gone: it checks every
PARENT_POLL_S seconds, and between jobs; a running job is asked to stop at its next progress
report and ends `interrupted` (resume it from its last checkpoint), or is marked so when it has
not stopped within STOP_GRACE_S. A worker started by hand (`python -m llm_lab worker`) or by the
CLI, and the external worker, run until they are stopped (Ctrl-C, `kill PID`, docker compose stop).
"""
import fcntl
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from . import access, audit, paths, settings, store
from .access import LOCAL, SYSTEM, Actor, scope
from .errors import JobCancelled, JobError, JobInterrupted, LabError, failure_message

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED, INTERRUPTED = (
    "queued", "running", "succeeded", "failed", "cancelled", "interrupted")
ACTIVE = (QUEUED, RUNNING)
RESUMABLE = (FAILED, CANCELLED, INTERRUPTED)

store.register_schema("jobs", [
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY, kind TEXT NOT NULL, title TEXT NOT NULL, params TEXT NOT NULL,
        status TEXT NOT NULL, created_at REAL NOT NULL, started_at REAL, finished_at REAL,
        updated_at REAL, done REAL DEFAULT 0, total REAL DEFAULT 0, message TEXT DEFAULT '',
        stats TEXT DEFAULT '{}', error TEXT, result TEXT, cancel_requested INTEGER DEFAULT 0,
        worker_pid INTEGER, attempts INTEGER DEFAULT 0);
    CREATE INDEX jobs_status ON jobs(status);
    CREATE TABLE job_metrics (job_id TEXT NOT NULL, step REAL NOT NULL, name TEXT NOT NULL,
        value REAL NOT NULL, at REAL NOT NULL);
    CREATE INDEX job_metrics_job ON job_metrics(job_id, name, step);
    CREATE TABLE job_logs (job_id TEXT NOT NULL, at REAL NOT NULL, line TEXT NOT NULL);
    CREATE INDEX job_logs_job ON job_logs(job_id, at);
    """,
    # "kind" meant three things in LLM Lab; for a job it is the function that runs it
    "ALTER TABLE jobs RENAME COLUMN kind TO fn",
    access.owned_columns("jobs") + ";ALTER TABLE jobs ADD COLUMN actor TEXT",
    # the team path: what a job needs, the queue it went to and the worker that runs it; the workers and their
    # heartbeats (types as store.py's rules say: REAL becomes DOUBLE PRECISION on PostgreSQL)
    """
    ALTER TABLE jobs ADD COLUMN needs_gpu INTEGER;
    ALTER TABLE jobs ADD COLUMN gpu_memory_gb REAL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN queue TEXT;
    ALTER TABLE jobs ADD COLUMN worker_id TEXT;
    CREATE TABLE workers (id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, queue TEXT NOT NULL,
        gpus TEXT NOT NULL DEFAULT '', gpu_memory_gb REAL DEFAULT 0, started REAL NOT NULL,
        last_seen REAL NOT NULL, current_job TEXT, status TEXT NOT NULL DEFAULT 'alive');
    """,
])


def inline_mode() -> bool:
    """LLM_LAB_JOBS_INLINE=1 runs jobs synchronously in the caller (tests, scripts)."""
    return os.environ.get("LLM_LAB_JOBS_INLINE") == "1"


def external_worker() -> bool:
    """LLM_LAB_EXTERNAL_WORKER=1: the operator runs the worker (its own container sharing LLM_LAB_HOME), so the
    dashboard never starts one. Process ids in the store are then another container's (another pid namespace)
    and mean nothing here: whether the worker lives is read from its lock alone, which every container sharing
    the volume on one host sees (flock belongs to the file, not to the process namespace)."""
    return os.environ.get("LLM_LAB_EXTERNAL_WORKER") == "1"


# ---------------------------------------------------------------- the queue
_hueys: dict[str, object] = {}
QUEUES = ("gpu", "cpu")
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def queue_url() -> str | None:
    """LLM_LAB_QUEUE_URL (redis://host:port/db): the team's queue. Unset: huey on SQLite in LLM_LAB_HOME."""
    url = os.environ.get("LLM_LAB_QUEUE_URL", "").strip()
    if url and not url.startswith(REDIS_SCHEMES):
        raise JobError(f"LLM_LAB_QUEUE_URL={url!r} is not a Redis address: use redis://host:6379/0 (rediss:// "
                       "with TLS), or leave it unset for the laptop queue in LLM_LAB_HOME.")
    return url or None


def team_mode() -> bool:
    """Jobs go through Redis to workers on any machine, watched by heartbeats (see the module docstring)."""
    return queue_url() is not None


def _env_seconds(name: str, default: float) -> float:
    text = os.environ.get(name, "")
    try:
        value = float(text) if text else default
    except ValueError:
        value = -1
    if value <= 0:
        raise JobError(f"{name}={text!r}: give a number of seconds above 0 (default {default:g}).")
    return value


def heartbeat_s() -> float:
    """How often a team worker writes its heartbeat (LLM_LAB_HEARTBEAT_S, default 5 s)."""
    return _env_seconds("LLM_LAB_HEARTBEAT_S", 5.0)


def worker_timeout_s() -> float:
    """How long a team worker may stay silent before it counts as lost (LLM_LAB_WORKER_TIMEOUT_S, default 30 s;
    at least three heartbeats, so one slow write does not kill a job)."""
    timeout = _env_seconds("LLM_LAB_WORKER_TIMEOUT_S", 30.0)
    if timeout < 3 * heartbeat_s():
        raise JobError(f"LLM_LAB_WORKER_TIMEOUT_S={timeout:g} must be at least three heartbeats "
                       f"(3 × LLM_LAB_HEARTBEAT_S = {3 * heartbeat_s():g} s).")
    return timeout


def _huey(queue: str = "cpu"):
    """(huey, task) for `queue`: on Redis one list per queue; on a laptop the one SQLite queue."""
    url = queue_url()
    key = f"{url}|{queue}" if url else str(paths.home() / "queue.db")
    if key not in _hueys:
        if url:
            from huey import RedisHuey

            huey = RedisHuey(name=f"llm_lab-{queue}", url=url, results=False)
        else:
            from huey import SqliteHuey

            huey = SqliteHuey(name="llm_lab", filename=key, results=False)
        _hueys[key] = (huey, huey.task(name="execute_job")(execute_job))
    return _hueys[key]


def _queue_errors() -> tuple:
    """The exceptions that mean Redis cannot be reached (redis is installed with huey's Redis storage)."""
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError
    except ImportError:  # pragma: no cover
        return ()
    return RedisConnectionError, RedisTimeoutError


def _queue_down(exc: BaseException) -> JobError:
    reason = " ".join(str(exc).split())
    return JobError(f"The job queue LLM_LAB_QUEUE_URL={store.redact(queue_url() or '')} cannot be reached "
                    f"({reason}). Start Redis there, or correct LLM_LAB_QUEUE_URL.")


def _push(queue: str, job_id: str) -> None:
    """Put `job_id` on `queue` (Redis); a Redis that cannot be reached is a JobError naming LLM_LAB_QUEUE_URL."""
    try:
        _huey(queue)[1](job_id)
    except _queue_errors() as exc:
        raise _queue_down(exc) from None


def _enqueue(job_id: str) -> None:
    if inline_mode():
        execute_job(job_id)
        return
    if team_mode():
        try:
            _requeue(job_id)  # on the Redis list of the queue recorded with the job
        except JobError as exc:  # the row says queued, but no queue holds it: say so, and let it be resumed
            message = f"{exc} Resume the job once the queue is back."
            scope(SYSTEM).update("jobs", dict(status=FAILED, error=message, message=message,
                                              finished_at=store.now(), updated_at=store.now()),
                                 "id=? AND status=?", (job_id, QUEUED))
            raise JobError(message) from None
    else:
        _huey()[1](job_id)  # puts the call on the SQLite queue
    ensure_worker()


# ---------------------------------------------------------------- what a job needs
@dataclass(frozen=True)
class Resources:
    """What a job declares when it is submitted. `gpu`: True needs a GPU, False runs on a CPU, None runs on
    either (a GPU when a GPU worker is up). `gpu_memory_gb`: the estimate a GPU worker's memory must hold."""
    gpu: bool | None = None
    gpu_memory_gb: float = 0.0

    @staticmethod
    def for_device(device: str | None, gpu_memory_gb: float = 0.0) -> "Resources":
        """From a job's device setting: "cpu" → CPU, "cuda…" → GPU, "auto"/None → either."""
        device = (device or "auto").lower()
        gpu = False if device == "cpu" else True if device.startswith("cuda") else None
        return Resources(gpu=gpu, gpu_memory_gb=round(max(0.0, gpu_memory_gb), 2))


INFERENCE_OVERHEAD = 1.2   # weights × this: activations, KV cache and allocator slack of an evaluation pass
CUDA_CONTEXT_GB = 0.5      # what CUDA itself takes on each GPU


def weights_gb(actor: Actor, model: str) -> float:
    """GB of a registered model's weight files (0 when unknown: a Hub model not downloaded, an endpoint)."""
    from . import registry

    try:
        entry = registry.resolve(actor, model, prepare=False)
    except LabError:
        return 0.0
    return sum(size for _, size, _ in registry.weights_stamp(entry.location)) / 2**30


def inference_memory_gb(actor: Actor, models: list[str], at_once: int = 1) -> float:
    """Estimate for evaluating `models`, `at_once` of them loaded together (the largest ones)."""
    sizes = sorted((weights_gb(actor, m) for m in models), reverse=True)[:at_once]
    return sum(sizes) * INFERENCE_OVERHEAD + CUDA_CONTEXT_GB if sizes else 0.0


def runs_elsewhere() -> bool:
    """Whether a job submitted from this process runs on another machine: the team path, and this process is
    not itself a worker running the job (there, the job's own device is the one to judge)."""
    return team_mode() and _worker is None


def worker_device(setting: str | None) -> str:
    """On the team path, the device a job with this device setting will run on: the workers', not the submitting
    machine's (a dashboard without a GPU submits for workers with GPUs). "cuda…" stays itself, "cpu" is the CPU,
    "auto" is "cuda" while a GPU worker is up (where `_route` sends it), else "cpu"."""
    setting = (setting or "auto").lower()
    if setting.startswith("cuda") or setting == "cpu":
        return setting
    return "cuda" if _live_workers("gpu") else "cpu"


def worker_memory_bytes(device: str) -> int | None:
    """On the team path, the memory a job on `device` can have: the largest GPU among the live GPU workers for
    "cuda" (None when none is up: the job then waits in its queue, and `_fits` says for what), None for the CPU
    (a worker's RAM is not recorded). What a refusal before queueing must be judged against, instead of the
    memory of the machine that submits (the dashboard)."""
    if not str(device).startswith("cuda"):
        return None
    sizes = [w["gpu_memory_gb"] for w in _live_workers("gpu") if w["gpus"]]
    return int(max(sizes) * 2**30) if sizes else None


def fleet() -> tuple:
    """What a plan made for the workers depends on (the live GPU workers and their memory); () when jobs run here.
    Part of the key of any cached plan, so a worker starting or leaving gives a new one."""
    if not runs_elsewhere():
        return ()
    return tuple(sorted((str(w["gpus"]), float(w["gpu_memory_gb"] or 0)) for w in _live_workers("gpu")))


def _route(resources: Resources) -> str:
    """The queue a job goes to: `gpu` when it needs one, or may use one and a GPU worker is up."""
    if resources.gpu:
        return "gpu"
    if resources.gpu is None and team_mode():
        return "gpu" if _live_workers("gpu") else "cpu"
    return "cpu"


# ---------------------------------------------------------------- public API
# What a job does, for people (the audit log), by the package its function lives in.
WHAT = {"train": "train", "bench": "benchmark", "compare": "compare", "explain": "explain", "compress": "compress"}


def what(fn: str) -> str:
    """'train', 'benchmark', 'compare', 'explain' (or the module's last name) for a job function."""
    parts = fn.partition(":")[0].split(".")
    return next((WHAT[p] for p in parts[1:] if p in WHAT), parts[-1])


def _identity(params: dict, ignore: tuple = ()) -> str:
    return store.to_json({k: v for k, v in store.from_json(store.to_json(params), {}).items() if k not in ignore})


def _check_limits(actor: Actor, fn: str, params: dict, workspace: str, ignore: tuple = ()) -> None:
    """Refuse a job identical to one of the user's queued or running jobs in `workspace`, and a job past the
    user's quota (setting max_active_jobs, counted over every workspace: they share one queue and one worker).
    Call it inside the transaction that queues the job, after `reconcile()`."""
    active = scope(SYSTEM).select("jobs", f"created_by=? AND status IN ({','.join('?' * len(ACTIVE))})",
                                  (actor.user, *ACTIVE), order="created_at",
                                  columns="id, fn, title, params, status, workspace")
    mine = _identity(params, ignore)
    for row in active:
        if (row["fn"] == fn and row["workspace"] == workspace
                and _identity(store.from_json(row["params"], {}), ignore) == mine):
            raise JobError(f"The same job is {row['status']} already: {row['id']} ({row['title']}). Follow that "
                           f"one, or cancel it first (`python -m llm_lab jobs cancel {row['id']}`).")
    if not settings.hosted() and settings.source("max_active_jobs") == "default":
        return  # a laptop's one user queues what they like, unless they set a quota themselves
    limit = int(settings.get("max_active_jobs"))
    if len(active) >= limit:
        listed = ", ".join(f"{r['id']} ({r['status']})" for r in active[:5]) + (" …" if len(active) > 5 else "")
        raise JobError(f"{actor.user} has {len(active)} job(s) queued or running ({listed}); one user may have at "
                       f"most {limit} at a time (setting max_active_jobs). Wait for one to finish, or cancel one.")


def submit(actor: Actor, fn: str, params: dict, title: str, ignore_in_identity: tuple = (),
           resources: Resources | None = None) -> str:
    """Queue a job in the actor's workspace and return its id. `fn` is "module:function"; `resources` says
    whether it needs a GPU and how much GPU memory (the team's workers claim only jobs that fit).

    Refused when the user has max_active_jobs queued or running, or an identical job (same function and
    params, leaving out the keys in `ignore_in_identity`, such as a made-up name) is queued or running."""
    actor.require("run", "start jobs")
    _resolve(fn)  # fail now, in the caller, if the function does not exist
    job_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    resources = resources or Resources()
    reconcile()  # a running job whose worker died does not count
    queue = _route(resources)
    with store.transaction() as conn:  # counted and inserted at once: two quick clicks cannot both pass
        _check_limits(actor, fn, params, actor.workspace, ignore_in_identity)
        scope(actor).insert("jobs", dict(id=job_id, fn=fn, title=title, params=store.to_json(params), status=QUEUED,
                                         created_at=store.now(), updated_at=store.now(),
                                         actor=store.to_json(actor.to_dict()),
                                         needs_gpu=None if resources.gpu is None else int(resources.gpu),
                                         gpu_memory_gb=resources.gpu_memory_gb, queue=queue),
                            action="run", conn=conn)
    audit.record(actor, "job.submit", job_id, {"what": what(fn), "fn": fn, "title": title})
    _enqueue(job_id)
    return job_id


def get(actor: Actor, job_id: str) -> dict:
    reconcile()
    row = scope(actor).one("jobs", "id=?", (job_id,))
    if row is None:
        raise JobError(f"No job with id {job_id!r}. `python -m llm_lab jobs list` shows the jobs there are.")
    return _decode(row)


def list_jobs(actor: Actor, fn_prefix: str = "", limit: int = 200) -> list[dict]:
    reconcile()
    rows = scope(actor).select("jobs", "fn LIKE ?", (fn_prefix + "%",), order="created_at DESC", limit=limit)
    return [_decode(r) for r in rows]


def _change(actor: Actor, job_id: str, values: dict, conn) -> None:
    if not scope(actor).update("jobs", values, "id=?", (job_id,), action="run", conn=conn):
        raise access.PermissionDenied(f"{actor.user} may not change job {job_id}: only the user who started it "
                                      "or an admin can.")


def cancel(actor: Actor, job_id: str) -> dict:
    job = get(actor, job_id)
    with store.transaction() as conn:
        job["status"] = _status_now(job_id)  # a worker may have claimed it since the read above
        if job["status"] == QUEUED:
            _change(actor, job_id, dict(status=CANCELLED, finished_at=store.now(),
                                        message="Cancelled before it started."), conn)
        elif job["status"] == RUNNING:
            _change(actor, job_id, dict(cancel_requested=1, message="Cancelling…"), conn)
        else:
            raise JobError(f"Job {job_id} is {job['status']}; only queued or running jobs can be cancelled.")
    audit.record(actor, "job.cancel", job_id, {"what": what(job["fn"]), "title": job["title"], "was": job["status"],
                                               "created_by": job["created_by"]}, workspace=job["workspace"])
    return get(actor, job_id)


def resume(actor: Actor, job_id: str) -> dict:
    job = get(actor, job_id)
    if job["status"] not in RESUMABLE:
        raise JobError(f"Job {job_id} is {job['status']}; only {', '.join(RESUMABLE)} jobs can be resumed.")
    reconcile()
    with store.transaction() as conn:  # resuming makes the job active again: the same limits as submitting
        now = _status_now(job_id)  # another resume (and a worker) may have taken it since the read above
        if now not in RESUMABLE:
            raise JobError(f"Job {job_id} is {now}; only {', '.join(RESUMABLE)} jobs can be resumed.")
        _check_limits(actor, job["fn"], job["params"], job["workspace"])
        queue = _route(Resources(gpu=None if job["needs_gpu"] is None else bool(job["needs_gpu"]),
                                 gpu_memory_gb=job["gpu_memory_gb"] or 0.0))
        _change(actor, job_id, dict(status=QUEUED, cancel_requested=0, error=None, finished_at=None, queue=queue,
                                    updated_at=store.now(), message="Queued to resume."), conn)
    audit.record(actor, "job.resume", job_id, {"what": what(job["fn"]), "title": job["title"], "was": job["status"],
                                               "created_by": job["created_by"]}, workspace=job["workspace"])
    _enqueue(job_id)
    return get(actor, job_id)


def _status_now(job_id: str) -> str:
    """The job's status as stored now (inside a write transaction: no claim can come between it and the write)."""
    return scope(SYSTEM).one("jobs", "id=?", (job_id,), columns="status")["status"]


def metrics(actor: Actor, job_id: str) -> list[dict]:
    """Rows of {step, name, value, at} for the job's curves, in step order."""
    get(actor, job_id)  # the job must be visible to the actor; its curves are keyed by its id
    return store.query("SELECT step, name, value, at FROM job_metrics WHERE job_id=? ORDER BY step, at", (job_id,))


def logs(actor: Actor, job_id: str, last: int = 200) -> list[str]:
    get(actor, job_id)
    # `at` is strictly increasing per writer (JobContext.log), so it orders lines without SQLite's rowid
    rows = store.query("SELECT line FROM job_logs WHERE job_id=? ORDER BY at DESC LIMIT ?", (job_id, last))
    return [r["line"] for r in reversed(rows)]


def drop_metrics_after(job_id: str, step: float) -> None:
    """Inside a job: forget its curve points after `step` (a resumed run recomputes them from its checkpoint)."""
    store.execute("DELETE FROM job_metrics WHERE job_id=? AND step>?", (job_id, step))


def wait(actor: Actor, job_id: str, timeout: float = 600, poll: float = 0.2) -> dict:
    """Block until the job leaves queued/running (for the CLI and tests)."""
    deadline = time.time() + timeout
    while True:
        job = get(actor, job_id)
        if job["status"] not in ACTIVE:
            return job
        if time.time() > deadline:
            raise TimeoutError(f"Job {job_id} still {job['status']} after {timeout:.0f}s")
        time.sleep(poll)


def _decode(row: dict) -> dict:
    row["params"] = store.from_json(row["params"], {})
    row["stats"] = store.from_json(row["stats"], {})
    row["result"] = store.from_json(row["result"])
    row["fraction"] = min(1.0, row["done"] / row["total"]) if row["total"] else 0.0
    return row


# Job functions that moved: a job queued (or stored) under the old name still runs, and still finds its results.
RENAMED = {"llm_lab.bench.job:run": "llm_lab.bench.jobs:run"}


def _resolve(fn: str):
    fn = RENAMED.get(fn, fn)
    module_name, _, func_name = fn.partition(":")
    if not module_name.startswith("llm_lab.") or func_name.startswith("_"):
        # a job names one of LLM Lab's own job functions; anything else would be server-side code of the caller's choosing
        raise JobError(f"Unknown job kind {fn!r}: jobs run LLM Lab's own functions (llm_lab.…:function).")
    try:
        return getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as exc:
        raise JobError(f"Unknown job kind {fn!r}: {exc}") from exc


# ---------------------------------------------------------------- inside a job
@dataclass
class JobContext:
    id: str
    params: dict
    resume: bool = False
    actor: Actor = LOCAL            # who submitted the job: the job acts with their rights
    worker_id: str | None = None    # the team worker running it (None on a laptop)
    _last_write: float = field(default=0.0, repr=False)
    _last_log_at: float = field(default=0.0, repr=False)

    @property
    def workdir(self) -> Path:
        return paths.subdir("jobs", self.id)

    def cancelled(self) -> bool:
        row = scope(SYSTEM).one("jobs", "id=?", (self.id,), columns="cancel_requested, status, worker_id")
        if row and self.worker_id and (row["status"] != RUNNING or row["worker_id"] != self.worker_id):
            # this worker was declared lost (a long pause) and the job is no longer its own: stop, write nothing
            raise JobInterrupted(_TAKEN_MESSAGE)
        return bool(row and row["cancel_requested"])

    def check_cancelled(self) -> None:
        if _stopping:  # the worker is stopping: the job ends interrupted, to be resumed
            raise JobInterrupted(_stopping)
        if self.cancelled():
            raise JobCancelled()

    def progress(self, done: float, total: float, message: str = "", force: bool = False, **stats) -> None:
        """Record progress (at most 5 writes a second) and raise JobCancelled if asked to stop."""
        t = time.time()
        if not force and done < total and t - self._last_write < 0.2:
            return
        self._last_write = t
        where, args = self._mine()
        written = scope(SYSTEM).update("jobs", dict(done=done, total=total, message=message,
                                                    stats=store.to_json(stats), updated_at=t), where, args)
        if not written and self.worker_id:  # taken from this worker: its stale progress was not written
            raise JobInterrupted(_TAKEN_MESSAGE)
        self.check_cancelled()

    def _mine(self) -> tuple[str, tuple]:
        """The condition that the job is still this run's: on the team path, running on this worker (a worker
        that was declared lost while paused must not write into the run that replaced it)."""
        if self.worker_id:
            return "id=? AND status=? AND worker_id=?", (self.id, RUNNING, self.worker_id)
        return "id=?", (self.id,)

    def _insert_if_mine(self, conn, table: str, columns: str, rows: list[tuple]) -> None:
        """INSERT rows into `table`, as one statement per row that writes nothing once the job is not ours."""
        where, args = self._mine()
        marks = ",".join("?" * len(columns.split(",")))
        conn.executemany(f"INSERT INTO {table} ({columns}) SELECT {marks} WHERE EXISTS "
                         f"(SELECT 1 FROM jobs WHERE {where})", [(*row, *args) for row in rows])

    def metric(self, step: float, **values: float) -> None:
        t = time.time()
        with store.transaction() as conn:
            self._insert_if_mine(conn, "job_metrics", "job_id, step, name, value, at",
                                 [(self.id, step, k, float(v), t) for k, v in values.items() if v is not None])

    def log(self, line: str) -> None:
        at = self._last_log_at = max(time.time(), self._last_log_at + 1e-6)  # strictly increasing: it orders them
        self._insert_if_mine(store.connect(), "job_logs", "job_id, at, line", [(self.id, at, str(line))])


def execute_job(job_id: str) -> None:
    """Run one queued job to a final state. Called by the worker (or inline). A worker that is stopping puts
    the job back on the queue instead, for the next worker."""
    global _stopping
    with _job_lock:
        if _parent and not _stopping and not _parent_alive(*_parent):  # checked between jobs too
            _stopping = _STOPPED_MESSAGE
        if _stopping:
            _requeue(job_id)
            return
        if team_mode() and _worker is None:  # run inline (a script, `--inline`): beat like a worker meanwhile
            with _inline_worker():
                _run_claimed(job_id)
            return
        _run_claimed(job_id)


def _run_claimed(job_id: str) -> None:
    global _current_job
    _current_job = job_id
    try:
        _execute_job(job_id)
    finally:
        _current_job = None


def _requeue(job_id: str) -> None:
    row = scope(SYSTEM).one("jobs", "id=?", (job_id,), columns="queue")
    queue = (row and row["queue"]) or "cpu"
    if team_mode():
        _push(queue, job_id)
    else:
        _huey(queue)[1](job_id)


def _claim(job_id: str) -> dict | None:
    """Take a queued job for this process: one conditional UPDATE, so of two workers holding the same id
    (queued twice) only one runs it. None when it is not queued (cancelled, run already) or does not fit."""
    row = scope(SYSTEM).one("jobs", "id=?", (job_id,))
    if row is None or row["status"] != QUEUED:
        return None  # cancelled while queued, or already picked up
    if _worker is not None and not _fits(row):
        return None
    worker_id = _worker["id"] if _worker else None
    values = {"status": RUNNING, "started_at": row["started_at"] or store.now(), "updated_at": store.now(),
              "worker_pid": os.getpid(), "worker_id": worker_id, "attempts": row["attempts"] + 1,
              "message": "Starting…"}
    with store.transaction() as conn:
        if not scope(SYSTEM).update("jobs", values, "id=? AND status=?", (job_id, QUEUED), conn=conn):
            return None  # another worker claimed it between the read and this write
        if worker_id:
            store.execute("UPDATE workers SET current_job=? WHERE id=?", (job_id, worker_id))
    return row


def _execute_job(job_id: str) -> None:
    global _current_job
    row = _claim(job_id)
    if row is None:
        return
    resumed = row["attempts"] > 0
    params = store.from_json(row["params"], {})
    worker_id = _worker["id"] if _worker else None
    ctx = JobContext(id=job_id, params=params, resume=resumed, actor=Actor.from_dict(store.from_json(row["actor"])),
                     worker_id=worker_id)
    where = f"worker {worker_id}" if worker_id else f"pid {os.getpid()}"
    ctx.log(("Resuming" if resumed else "Starting") + f" {row['fn']} ({where})")
    status, error, result = SUCCEEDED, None, None
    try:
        result = _resolve(row["fn"])(ctx, **params)
        message = "Done."
    except JobInterrupted as exc:
        status, message = INTERRUPTED, str(exc)
    except JobCancelled:
        status, message = CANCELLED, "Cancelled by the user."
    except LabError as exc:
        status, error, message = FAILED, str(exc), str(exc)
    except Exception as exc:  # the job's own bug or the machine: keep the traceback in the log
        status, error = FAILED, _explain(exc)
        message = error
        ctx.log(traceback.format_exc())
    final = {"status": status, "error": error, "message": message, "finished_at": store.now(),
             "result": store.to_json(result) if result is not None else None, "updated_at": store.now()}
    if worker_id:  # only while it is still ours: a worker declared lost never overwrites the job's new run
        _current_job = None  # first: a heartbeat that re-registers this worker copies it into its row
        store.execute("UPDATE workers SET current_job=NULL WHERE id=?", (worker_id,))
        if message == _TAKEN_MESSAGE:
            return
        ctx.log(f"{status}: {message}")
        scope(SYSTEM).update("jobs", final, "id=? AND status=? AND worker_id=?", (job_id, RUNNING, worker_id))
        return
    ctx.log(f"{status}: {message}")
    scope(SYSTEM).update("jobs", final, "id=?", (job_id,))


def _explain(exc: Exception) -> str:
    return failure_message(exc, disk_folder=paths.home(), unexpected="Unexpected error, see the job log. ")


# ---------------------------------------------------------------- the worker
def _lock_path() -> Path:
    return paths.home() / "worker.lock"


def worker_alive() -> bool:
    """True when some process holds the worker lock (the lock dies with its process)."""
    try:
        handle = open(_lock_path(), "rb")  # read only: asking never creates the file (a full disk, a list)
    except FileNotFoundError:
        return False  # no worker ever ran here
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def _process_alive(pid) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    try:  # a killed worker started by this process stays a zombie until reaped: that is dead too
        return Path(f"/proc/{int(pid)}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:  # no /proc (macOS)
        return True


_INTERRUPTED_MESSAGE = "The worker stopped while this job ran. Resume it to continue from its last checkpoint."


def reconcile(worker_starting: bool = False) -> None:
    """Running jobs whose process is gone (killed worker, closed CLI) become interrupted.

    Checked per job (its recorded pid), not per worker lock: a job run inline by a CLI or a
    script in another process is alive although no worker holds the lock.

    With an external worker the recorded pid is another container's: a running job lives while the worker
    holds its lock, and a worker that starts (`worker_starting`, the lock now its own) marks every running job
    interrupted, since it has run none yet: its previous life, e.g. a container restarted with the same small
    pid, left them. There, jobs run in the worker only (`--inline` is for a laptop).

    On the team path (LLM_LAB_QUEUE_URL) the heartbeats decide instead: see `_reconcile_team`."""
    if team_mode():
        return _reconcile_team()
    rows = scope(SYSTEM).select("jobs", "status=?", (RUNNING,), columns="id, worker_pid")
    if external_worker():
        dead = rows if rows and (worker_starting or not worker_alive()) else []
    else:
        dead = [row for row in rows if not _process_alive(row["worker_pid"])]
    try:
        for row in dead:
            scope(SYSTEM).update("jobs", dict(status=INTERRUPTED, finished_at=store.now(),
                                              message=_INTERRUPTED_MESSAGE), "id=? AND status=?", (row["id"], RUNNING))
    except (OSError, *store.DatabaseError) as exc:
        if not store.is_storage_full(exc):
            raise  # a full disk: a list still shows them (as running); a later read marks them


def _pid_path() -> Path:
    return paths.home() / "worker.pid"


def _serving_worker() -> bool:
    """A live worker holds the lock. (A worker killed a moment ago may leave the lock held a little longer
    by a forked child of it; that does not count: its pid file names a dead process.)"""
    if not worker_alive():
        return False
    if external_worker():
        return True  # its pid file names a pid of another container
    try:
        return _process_alive(int(_pid_path().read_text()))
    except (OSError, ValueError):
        return True  # the lock is held by a worker that has not written its pid yet


def own_workers() -> None:
    """Called by the dashboard's server process: a worker it starts from now on stops when this process ends
    (`--parent-pid`), so stopping the dashboard does not leave a worker behind. Jobs left queued by an earlier
    run get a worker now. Not with an external worker, which is the operator's to start and stop."""
    global _owner_pid
    if _owner_pid == os.getpid():
        return
    _owner_pid = os.getpid()
    if inline_mode() or external_worker() or team_mode():
        return
    try:
        if scope(SYSTEM).one("jobs", "status=?", (QUEUED,), columns="id"):
            ensure_worker()
    except Exception as exc:  # the dashboard starts anyway; the next submitted job starts a worker
        print(f"LLM Lab: could not start the worker for the queued jobs: {exc}", file=sys.stderr, flush=True)


def worker_info() -> dict:
    """What the pages say about the worker: {"alive", "external", "pid", "parent_pid"} (parent_pid: the
    process it stops with, None when it runs until it is stopped)."""
    external = external_worker()
    alive = worker_alive() if external else _serving_worker()
    info = {"alive": alive, "external": external, "pid": None, "parent_pid": None}
    if alive:
        try:
            recorded = json.loads(_info_path().read_text())
            info.update(pid=recorded.get("pid"), parent_pid=recorded.get("parent_pid"))
        except (OSError, ValueError):
            pass
    return info


def ensure_worker() -> bool:
    """Start a worker process unless one is running. Returns True when one was started. Started from the
    dashboard's process (`own_workers`), the worker stops when that process ends."""
    if inline_mode():
        return False
    if team_mode():  # the team's workers run on their own machines; a job waits in Redis until one takes it
        if not _live_workers():
            print("LLM_LAB_QUEUE_URL is set but no worker has beaten its heart lately: jobs stay queued until "
                  "`python -m llm_lab worker` runs on some machine.", file=sys.stderr, flush=True)
        return False
    if external_worker():  # the operator's worker container consumes the queue; jobs wait there until it runs
        if not worker_alive():
            print("LLM_LAB_EXTERNAL_WORKER=1 but no worker holds", _lock_path(), "- jobs stay queued until "
                  "`python -m llm_lab worker` runs (docker compose: the worker service).", file=sys.stderr, flush=True)
        return False
    if _serving_worker():
        return False
    log = open(paths.subdir("logs") / "worker.log", "ab")
    owner = ["--parent-pid", str(_owner_pid)] if _owner_pid == os.getpid() else []
    subprocess.Popen([sys.executable, "-m", "llm_lab", "worker", *owner], stdout=log, stderr=subprocess.STDOUT,
                     stdin=subprocess.DEVNULL, start_new_session=True, cwd=str(Path(__file__).parent.parent))
    for _ in range(100):  # wait until it holds the lock, so a second caller does not start another
        if worker_alive():
            break
        time.sleep(0.05)
    return True


def run_worker(parent_pid: int | None = None) -> int:
    """The worker's main loop: hold the lock, mark orphans interrupted, consume the queue. With `parent_pid`
    (the dashboard that started it) it stops when that process is gone; an external worker never does."""
    global _parent
    if parent_pid and external_worker():
        print("LLM_LAB_EXTERNAL_WORKER=1: this worker runs until it is stopped (--parent-pid ignored)", flush=True)
        parent_pid = None
    parent_start = _start_time(parent_pid) if parent_pid else None
    if parent_pid and not _parent_alive(parent_pid, parent_start):
        print(f"The process {parent_pid} this worker was to serve has ended; not starting.", flush=True)
        return 0
    handle = open(_lock_path(), "a+")
    deadline = time.time() + 60
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if _serving_worker() or time.time() > deadline:  # a live worker, or a lock that is never let go
                print("Another LLM Lab worker is already running for", paths.home())
                return 0
            time.sleep(0.2)  # the lock of a killed worker, still held by a child of it: wait for it
    store.atomic_write_bytes(_pid_path(), str(os.getpid()).encode())
    store.atomic_write_bytes(_info_path(), json.dumps({"pid": os.getpid(), "parent_pid": parent_pid,
                                                       "started_at": time.time()}).encode())
    reconcile(worker_starting=True)
    if parent_pid:
        _parent = (parent_pid, parent_start)
        print(f"LLM Lab worker {os.getpid()} serving {paths.home()} until process {parent_pid} (the dashboard) "
              "ends", flush=True)
        threading.Thread(target=_watch_parent, args=(parent_pid, parent_start), name="parent-watch",
                         daemon=True).start()
    else:
        print(f"LLM Lab worker {os.getpid()} serving {paths.home()}", flush=True)
    consumer = _huey()[0].create_consumer(workers=1, worker_type="thread", periodic=False,
                                       initial_delay=0.1, max_delay=0.5, check_worker_health=False)
    consumer.run()
    return 0


PARENT_POLL_S = 1.0   # how often a worker started by the dashboard checks that the dashboard still runs
STOP_GRACE_S = 30.0   # how long a running job has to reach its next progress report once the dashboard is gone
_STOPPED_MESSAGE = ("The dashboard that started the worker stopped, so this job was interrupted. Resume it to "
                    "continue from its last checkpoint.")
_owner_pid: int | None = None      # the dashboard's process, once it called own_workers()
_stopping: str | None = None       # set when this worker stops: why (the message its running job ends with)
_current_job: str | None = None    # the job this process runs now
_parent: tuple | None = None       # (pid, start time) of the dashboard this worker stops with
_job_lock = threading.RLock()      # held while a job runs; a stopping worker takes it so none starts


def _info_path() -> Path:
    return paths.home() / "worker.json"


def _start_time(pid) -> str | None:
    """When the process started (field 22 of /proc/PID/stat), so a pid used again is not taken for it."""
    try:
        return Path(f"/proc/{int(pid)}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError, ValueError):
        return None


def _parent_alive(pid: int, started: str | None) -> bool:
    return _process_alive(pid) and (started is None or _start_time(pid) in (None, started))


def _watch_parent(pid: int, started: str | None, poll_s: float | None = None,
                  grace_s: float | None = None) -> None:
    """The heartbeat of a worker the dashboard started: when the dashboard is gone, stop taking jobs, let the
    running one stop at its next progress report (it ends interrupted), then exit."""
    global _stopping
    while _parent_alive(pid, started):
        time.sleep(PARENT_POLL_S if poll_s is None else poll_s)
    _stopping = _STOPPED_MESSAGE
    print(f"The dashboard (process {pid}) is gone: worker {os.getpid()} stops", flush=True)
    if not _job_lock.acquire(timeout=STOP_GRACE_S if grace_s is None else grace_s):
        job_id = _current_job  # it did not reach a progress report in time: it ends with this process
        if job_id:
            scope(SYSTEM).update("jobs", dict(status=INTERRUPTED, finished_at=store.now(), updated_at=store.now(),
                                              message=_STOPPED_MESSAGE), "id=? AND status=?", (job_id, RUNNING))
    sys.stdout.flush()
    os._exit(0)


# ---------------------------------------------------------------- the team's workers (LLM_LAB_QUEUE_URL)
POLL_S = 0.05          # how often an idle team worker looks at its queues (a Redis RPOP: cheap)
LOST_KEPT_S = 3600.0   # how long a lost worker stays listed on the Admin page
_worker: dict | None = None        # this process's row in `workers`, while it serves as a team worker
_put_back = False                  # set by _fits when the job just taken went back on its queue
_TAKEN_MESSAGE = ("This worker was silent longer than the heartbeat timeout and its job was taken from it "
                  "(interrupted, or resumed elsewhere); it stopped the job without writing.")
_LOST_MESSAGE = ("The worker running this job stopped beating its heart ({host}, silent {silent:.0f} s > "
                 "{timeout:.0f} s). Resume it to continue from its last checkpoint on any worker.")


def _live_workers(queue: str | None = None) -> list[dict]:
    """Workers that beat within the timeout; with `queue`, those that take that queue's jobs."""
    rows = store.query("SELECT * FROM workers WHERE status=? AND last_seen>=?",
                       ("alive", store.now() - worker_timeout_s()))
    return [w for w in rows if queue is None or queue in _serves(w["queue"], bool(w["gpus"]))]


def _serves(queue: str, has_gpus: bool) -> tuple:
    """The queues a worker takes, in order: --queue gpu|cpu alone, or (no --queue) gpu then cpu on a GPU box."""
    if queue in QUEUES:
        return (queue,)
    return ("gpu", "cpu") if has_gpus else ("cpu",)


def _fits(row: dict) -> bool:
    """Whether this worker can run the queued job `row`; if not, the job goes back on its queue with a message
    that says what it waits for."""
    global _put_back
    need = float(row["gpu_memory_gb"] or 0)
    if not row["needs_gpu"] and row["queue"] != "gpu":
        return True
    if _worker["gpus"] and need <= _worker["gpu_memory_gb"]:
        return True
    bigger = [w for w in _live_workers("gpu") if w["gpu_memory_gb"] >= need]
    wait = (f"Waiting for a GPU worker with at least {need:.1f} GB of GPU memory"
            + ("." if bigger else f": none of the live workers has that much (largest "
               f"{max([w['gpu_memory_gb'] for w in _live_workers('gpu')] or [0]):.1f} GB). Start one with a "
               "bigger GPU, or lower the job's batch size or model."))
    scope(SYSTEM).update("jobs", {"message": wait, "updated_at": store.now()}, "id=? AND status=?",
                         (row["id"], QUEUED))
    _push(row["queue"] or "gpu", row["id"])
    _put_back = True  # the worker looks at its other queues before this one again (_serve_once)
    time.sleep(POLL_S * 10)  # let a fitting worker pop it rather than taking it straight back
    return False


def _reconcile_team() -> None:
    """Workers silent past the timeout become `lost`, and the running jobs of lost or unknown workers
    `interrupted` (resumable from their last checkpoint on any worker). Every reader and every heartbeat runs
    it; the conditional UPDATEs make concurrent runs harmless."""
    timeout, t = worker_timeout_s(), store.now()
    store.execute("UPDATE workers SET status=? WHERE status=? AND last_seen<?", ("lost", "alive", t - timeout))
    store.execute("DELETE FROM workers WHERE status=? AND last_seen<?", ("lost", t - LOST_KEPT_S))
    live_rows = _live_workers()
    live = {w["id"] for w in live_rows}
    _note_unserved_queues(live_rows)
    rows = scope(SYSTEM).select("jobs", "status=?", (RUNNING,), columns="id, worker_id")
    for row in rows:
        if row["worker_id"] in live:
            continue
        worker = store.query_one("SELECT host, last_seen FROM workers WHERE id=?", (row["worker_id"],)) or {}
        message = _LOST_MESSAGE.format(host=worker.get("host", "unknown host"), timeout=timeout,
                                       silent=t - worker.get("last_seen", t - timeout))
        scope(SYSTEM).update("jobs", {"status": INTERRUPTED, "finished_at": t, "updated_at": t, "message": message},
                             "id=? AND status=? AND worker_id=?", (row["id"], RUNNING, row["worker_id"]))


NO_WORKER_MESSAGE = {
    "gpu": "No live worker takes GPU jobs now: this job waits until one starts (`python -m llm_lab worker "
           "--gpus 0` on a machine with a GPU).",
    "cpu": "No live worker takes CPU jobs now: this job waits until one starts (`python -m llm_lab worker`).",
}


def _note_unserved_queues(live_rows: list[dict]) -> None:
    """Queued jobs of a queue that no live worker takes say so, rather than waiting without a word (written
    only when the message changes; the worker that claims the job replaces it)."""
    serving = {q for w in live_rows if w["queue"] != "inline" for q in _serves(w["queue"], bool(w["gpus"]))}
    for queue, message in NO_WORKER_MESSAGE.items():
        if queue not in serving:
            scope(SYSTEM).update("jobs", {"message": message}, "status=? AND queue=? AND message<>?",
                                 (QUEUED, queue, message))


def _gpu_memory_gb(gpus: str) -> float:
    """The smallest total memory of the visible GPUs (a job runs on one unless it is data-parallel)."""
    if not gpus:
        return 0.0
    import torch

    if not torch.cuda.is_available():
        raise JobError(f"--gpus {gpus}: no GPU is visible to this process (torch.cuda.is_available() is False). "
                       "Leave --gpus out for a CPU worker, or check the driver and CUDA_VISIBLE_DEVICES.")
    return min(torch.cuda.get_device_properties(i).total_memory for i in range(torch.cuda.device_count())) / 2**30


def _register(queue: str, gpus: str) -> dict:
    global _worker
    host = socket.gethostname()
    t = store.now()
    _worker = {"id": f"{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}", "host": host, "pid": os.getpid(),
               "queue": queue, "gpus": gpus, "gpu_memory_gb": round(_gpu_memory_gb(gpus), 2), "started": t,
               "last_seen": t, "current_job": None, "status": "alive"}
    _upsert_worker()
    return _worker


def _upsert_worker() -> None:
    """Write this worker's row, again as alive if it had been declared lost (a long pause it survived)."""
    w = _worker
    # current_job: the job this process runs, only while the store still gives it to this worker (a worker back
    # from a long pause runs a job taken from it until its next progress report: it is not shown running it)
    store.execute("INSERT INTO workers (id, host, pid, queue, gpus, gpu_memory_gb, started, last_seen, current_job, "
                  "status) VALUES (?,?,?,?,?,?,?,?,(SELECT id FROM jobs WHERE id=? AND status=? AND worker_id=?),?) "
                  "ON CONFLICT (id) DO UPDATE SET last_seen=excluded.last_seen, status=excluded.status, "
                  "current_job=excluded.current_job",
                  (w["id"], w["host"], w["pid"], w["queue"], w["gpus"], w["gpu_memory_gb"], w["started"],
                   store.now(), _current_job, RUNNING, w["id"], "alive"))


def _beat(stop: threading.Event) -> None:
    """The heartbeat: refresh last_seen, then sweep lost workers (any worker may find another one lost)."""
    while not stop.wait(heartbeat_s()):
        try:
            updated = store.execute("UPDATE workers SET last_seen=? WHERE id=? AND status=?",
                                    (store.now(), _worker["id"], "alive")).rowcount
            if not updated:  # declared lost while paused: its job is gone (JobContext.cancelled stops it)
                _upsert_worker()
            _reconcile_team()
        except Exception as exc:  # noqa: BLE001  a database hiccup: keep beating; the timeout allows a few misses
            print(f"heartbeat of {_worker['id']} failed: {exc}", file=sys.stderr, flush=True)


class _inline_worker:
    """A process running a job itself on the team path (a script, the CLI's --inline) registers and beats like a
    worker for the job's length, so the job is watched by heartbeats too."""

    def __enter__(self):
        _register("inline", "")
        self.stop = threading.Event()
        threading.Thread(target=_beat, args=(self.stop,), name="heartbeat", daemon=True).start()

    def __exit__(self, *exc):
        global _worker
        self.stop.set()
        store.execute("DELETE FROM workers WHERE id=?", (_worker["id"],))
        _worker = None


def run_team_worker(queue: str | None = None, gpus: str = "") -> int:
    """A worker on the team path: register, beat, take jobs from the queues it serves until SIGTERM/SIGINT
    (a running job then ends interrupted at its next progress report, to be resumed on any worker)."""
    queue_url()  # a bad address fails before anything is registered
    if queue == "gpu" and not gpus:
        raise JobError("--queue gpu needs GPUs: give them with --gpus 0,1 (their indices, as nvidia-smi lists them).")
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus  # before CUDA starts: the jobs see only these
        os.environ["LLM_LAB_WORKER_GPUS"] = gpus  # a training job on 2+ GPUs launches one process each (train/launch.py)
    serves = _serves(queue or "any", bool(gpus))
    hueys = [_huey(q)[0] for q in serves]
    try:
        hueys[0].storage.conn.ping()  # before registering: a worker that cannot take jobs is not listed
    except _queue_errors() as exc:
        raise _queue_down(exc) from None
    worker = _register(queue or "any", gpus)

    def stop(signum, _frame):
        global _stopping
        _stopping = f"The worker {worker['id']} was stopped (signal {signum}). Resume the job to continue from " \
                    "its last checkpoint on any worker."
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    beating = threading.Event()
    threading.Thread(target=_beat, args=(beating,), name="heartbeat", daemon=True).start()
    _reconcile_team()
    print(f"LLM Lab worker {worker['id']} taking {'+'.join(serves)} jobs from {queue_url()}"
          + (f" on GPUs {gpus} ({worker['gpu_memory_gb']:.1f} GB each)" if gpus else ""), flush=True)
    try:
        down = None
        while not _stopping:
            try:
                served = _serve_once(hueys)
                down = None
            except _queue_errors() as exc:  # Redis restarting: say it once, keep beating, try again
                if down is None:
                    print(f"LLM Lab worker {worker['id']}: {_queue_down(exc)} Retrying.", file=sys.stderr, flush=True)
                down, served = exc, False
            if not served:
                time.sleep(POLL_S if down is None else 1.0)
    finally:
        beating.set()
        store.execute("DELETE FROM workers WHERE id=?", (worker["id"],))
    print(f"LLM Lab worker {worker['id']} stopped", flush=True)
    return 0


def _serve_once(hueys: list) -> bool:
    """Take the first task waiting in the worker's queues (in order) and run it; False when none ran. A job that
    does not fit this worker goes back on its queue (`_fits`): the next queue is looked at then, so a GPU job too
    big for this GPU never keeps the worker from the CPU jobs behind it."""
    global _put_back
    for huey in hueys:
        task = huey.dequeue()
        if task is None:
            continue
        _put_back = False
        hueys[0].execute(task)  # any of them runs it: the task is the same execute_job
        if not _put_back:
            return True
    return False


def workers_overview(actor: Actor) -> dict:
    """What the Admin page shows (admins only): the workers, the job each runs, and the queue.

    {"team": bool, "workers": [...], "queue": [...], "pending": {queue: ids waiting in Redis/SQLite}}."""
    actor.require("admin", "see the workers")
    reconcile()
    t = store.now()
    titles = {r["id"]: r["title"] for r in scope(SYSTEM).select("jobs", "status IN (?,?)", ACTIVE,
                                                                 columns="id, title")}
    if team_mode():
        workers = [dict(w, seen_s_ago=round(t - w["last_seen"], 1), job_title=titles.get(w["current_job"]))
                   for w in store.query("SELECT * FROM workers ORDER BY host, started")]
        try:
            pending = {q: _huey(q)[0].pending_count() for q in QUEUES}
        except _queue_errors() as exc:
            raise _queue_down(exc) from None
    else:
        info = worker_info()
        running = scope(SYSTEM).one("jobs", "status=?", (RUNNING,), columns="id")
        workers = [{"id": f"local-{info['pid']}", "host": socket.gethostname(), "pid": info["pid"], "queue": "any",
                    "gpus": "", "status": "alive", "current_job": running and running["id"],
                    "job_title": running and titles.get(running["id"])}] if info["alive"] else []
        pending = {"local": _huey()[0].pending_count()}
    queue = [dict(r, waiting_s=round(t - r["created_at"], 1)) for r in scope(SYSTEM).select(
        "jobs", "status=?", (QUEUED,), order="created_at",
        columns="id, title, fn, created_by, workspace, needs_gpu, gpu_memory_gb, queue, created_at, message")]
    return {"team": team_mode(), "workers": workers, "queue": queue, "pending": pending}


# ---------------------------------------------------------------- a demo job (tests, smoke checks)
def count(ctx: JobContext, steps: int = 10, delay: float = 0.1, fail_at: int | None = None) -> dict:
    """Counts to `steps`, checkpointing each step in the job folder, so it can resume."""
    checkpoint = ctx.workdir / "checkpoint.txt"
    start = int(checkpoint.read_text()) if ctx.resume and checkpoint.exists() else 0
    for step in range(start, steps):
        if fail_at is not None and step == fail_at:
            raise LabError(f"Failed on purpose at step {step}.")
        time.sleep(delay)
        ctx.check_cancelled()  # before its checkpoint: a run taken from this worker writes no file over the new one's
        store.atomic_write_bytes(checkpoint, str(step + 1).encode())
        ctx.metric(step + 1, value=float(step + 1))
        ctx.progress(step + 1, steps, f"step {step + 1}/{steps}")
    return {"counted": steps, "started_at_step": start}


def burn(ctx: JobContext, n: int = 2_000_000, seed: int = 0) -> dict:
    """A CPU-bound job of a fixed size (benchmarks/workers.py): `n` steps of integer arithmetic in pure Python
    (one core, like a single-threaded evaluation loop), reporting progress ten times."""
    value, chunk = seed, max(1, n // 10)
    for start in range(0, n, chunk):
        for i in range(start, min(n, start + chunk)):
            value = (value * 1103515245 + i) % 2147483648
        ctx.progress(min(n, start + chunk), n, "burning")
    return {"value": value, "n": n}
