"""Background jobs: a huey queue in SQLite, one worker process, state in the store.

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
import sqlite3
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


def _huey():
    from huey import SqliteHuey

    path = str(paths.home() / "queue.db")
    if path not in _hueys:
        huey = SqliteHuey(name="llm_lab", filename=path, results=False)
        _hueys[path] = (huey, huey.task(name="execute_job")(execute_job))
    return _hueys[path]


def _enqueue(job_id: str) -> None:
    if inline_mode():
        execute_job(job_id)
        return
    _, task = _huey()
    task(job_id)  # puts the call on the SQLite queue
    ensure_worker()


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


def submit(actor: Actor, fn: str, params: dict, title: str, ignore_in_identity: tuple = ()) -> str:
    """Queue a job in the actor's workspace and return its id. `fn` is "module:function".

    Refused when the user has max_active_jobs queued or running, or an identical job (same function and
    params, leaving out the keys in `ignore_in_identity`, such as a made-up name) is queued or running."""
    actor.require("run", "start jobs")
    _resolve(fn)  # fail now, in the caller, if the function does not exist
    job_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    reconcile()  # a running job whose worker died does not count
    with store.transaction() as conn:  # counted and inserted at once: two quick clicks cannot both pass
        _check_limits(actor, fn, params, actor.workspace, ignore_in_identity)
        scope(actor).insert("jobs", dict(id=job_id, fn=fn, title=title, params=store.to_json(params), status=QUEUED,
                                         created_at=store.now(), updated_at=store.now(),
                                         actor=store.to_json(actor.to_dict())), action="run", conn=conn)
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
        _check_limits(actor, job["fn"], job["params"], job["workspace"])
        _change(actor, job_id, dict(status=QUEUED, cancel_requested=0, error=None, finished_at=None,
                                    updated_at=store.now(), message="Queued to resume."), conn)
    audit.record(actor, "job.resume", job_id, {"what": what(job["fn"]), "title": job["title"], "was": job["status"],
                                               "created_by": job["created_by"]}, workspace=job["workspace"])
    _enqueue(job_id)
    return get(actor, job_id)


def metrics(actor: Actor, job_id: str) -> list[dict]:
    """Rows of {step, name, value, at} for the job's curves, in step order."""
    get(actor, job_id)  # the job must be visible to the actor; its curves are keyed by its id
    return store.query("SELECT step, name, value, at FROM job_metrics WHERE job_id=? ORDER BY step, at", (job_id,))


def logs(actor: Actor, job_id: str, last: int = 200) -> list[str]:
    get(actor, job_id)
    rows = store.query("SELECT line FROM job_logs WHERE job_id=? ORDER BY at DESC, rowid DESC LIMIT ?", (job_id, last))
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
    _last_write: float = field(default=0.0, repr=False)

    @property
    def workdir(self) -> Path:
        return paths.subdir("jobs", self.id)

    def cancelled(self) -> bool:
        row = scope(SYSTEM).one("jobs", "id=?", (self.id,), columns="cancel_requested")
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
        scope(SYSTEM).update("jobs", dict(done=done, total=total, message=message, stats=store.to_json(stats),
                                          updated_at=t), "id=?", (self.id,))
        self.check_cancelled()

    def metric(self, step: float, **values: float) -> None:
        t = time.time()
        with store.transaction() as conn:
            conn.executemany("INSERT INTO job_metrics VALUES (?,?,?,?,?)",
                             [(self.id, step, k, float(v), t) for k, v in values.items() if v is not None])

    def log(self, line: str) -> None:
        store.execute("INSERT INTO job_logs VALUES (?,?,?)", (self.id, time.time(), str(line)))


def execute_job(job_id: str) -> None:
    """Run one queued job to a final state. Called by the worker (or inline). A worker that is stopping puts
    the job back on the queue instead, for the next worker."""
    global _current_job, _stopping
    with _job_lock:
        if _parent and not _stopping and not _parent_alive(*_parent):  # checked between jobs too
            _stopping = _STOPPED_MESSAGE
        if _stopping:
            _huey()[1](job_id)
            return
        _current_job = job_id
        try:
            _execute_job(job_id)
        finally:
            _current_job = None


def _execute_job(job_id: str) -> None:
    with store.transaction() as conn:
        row = scope(SYSTEM).one("jobs", "id=?", (job_id,))
        if row is None or row["status"] != QUEUED:
            return  # cancelled while queued, or already picked up
        resumed = row["attempts"] > 0
        scope(SYSTEM).update("jobs", dict(status=RUNNING, started_at=row["started_at"] or store.now(),
                                          updated_at=store.now(), worker_pid=os.getpid(),
                                          attempts=row["attempts"] + 1, message="Starting…"),
                             "id=?", (job_id,), conn=conn)
    params = store.from_json(row["params"], {})
    ctx = JobContext(id=job_id, params=params, resume=resumed, actor=Actor.from_dict(store.from_json(row["actor"])))
    ctx.log(("Resuming" if resumed else "Starting") + f" {row['fn']} (pid {os.getpid()})")
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
    ctx.log(f"{status}: {message}")
    scope(SYSTEM).update("jobs", dict(status=status, error=error, message=message, finished_at=store.now(),
                                      result=store.to_json(result) if result is not None else None,
                                      updated_at=store.now()), "id=?", (job_id,))


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
    pid, left them. There, jobs run in the worker only (`--inline` is for a laptop)."""
    rows = scope(SYSTEM).select("jobs", "status=?", (RUNNING,), columns="id, worker_pid")
    if external_worker():
        dead = rows if rows and (worker_starting or not worker_alive()) else []
    else:
        dead = [row for row in rows if not _process_alive(row["worker_pid"])]
    try:
        for row in dead:
            scope(SYSTEM).update("jobs", dict(status=INTERRUPTED, finished_at=store.now(),
                                              message=_INTERRUPTED_MESSAGE), "id=? AND status=?", (row["id"], RUNNING))
    except (OSError, sqlite3.Error) as exc:
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
    if inline_mode() or external_worker():
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


# ---------------------------------------------------------------- a demo job (tests, smoke checks)
def count(ctx: JobContext, steps: int = 10, delay: float = 0.1, fail_at: int | None = None) -> dict:
    """Counts to `steps`, checkpointing each step in the job folder, so it can resume."""
    checkpoint = ctx.workdir / "checkpoint.txt"
    start = int(checkpoint.read_text()) if ctx.resume and checkpoint.exists() else 0
    for step in range(start, steps):
        if fail_at is not None and step == fail_at:
            raise LabError(f"Failed on purpose at step {step}.")
        time.sleep(delay)
        store.atomic_write_bytes(checkpoint, str(step + 1).encode())
        ctx.metric(step + 1, value=float(step + 1))
        ctx.progress(step + 1, steps, f"step {step + 1}/{steps}")
    return {"counted": steps, "started_at_step": start}
