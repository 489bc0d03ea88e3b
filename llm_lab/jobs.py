"""Background jobs: a huey queue in SQLite, one worker process, state in the store.

A job is a function `fn(ctx: JobContext, **params) -> dict | None` named by its
import path ("llm_lab.train:run"). `submit` records it as queued and puts
its id on the queue; the worker (`python -m llm_lab worker`, started on demand by
`ensure_worker`) runs one job at a time, so one GPU is never shared by two jobs.
Progress, metric curves and log lines go to the store, where any page, browser
session or CLI can read them; a refresh loses nothing. A worker that dies leaves
its running jobs marked `interrupted`; `resume` queues them again with
`ctx.resume` set, so the job can continue from its last checkpoint.
"""
import fcntl
import importlib
import os
import subprocess
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from . import paths, store
from .errors import JobCancelled, JobError, LabError, failure_message

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
])


def inline_mode() -> bool:
    """LLM_LAB_JOBS_INLINE=1 runs jobs synchronously in the caller (tests, scripts)."""
    return os.environ.get("LLM_LAB_JOBS_INLINE") == "1"


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
def submit(kind: str, params: dict, title: str) -> str:
    """Queue a job and return its id. `kind` is "module:function"."""
    _resolve(kind)  # fail now, in the caller, if the kind does not exist
    job_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    store.execute(
        "INSERT INTO jobs (id, kind, title, params, status, created_at, updated_at) VALUES (?,?,?,?,?,?,?)",
        (job_id, kind, title, store.to_json(params), QUEUED, store.now(), store.now()),
    )
    _enqueue(job_id)
    return job_id


def get(job_id: str) -> dict:
    reconcile()
    row = store.query_one("SELECT * FROM jobs WHERE id=?", (job_id,))
    if row is None:
        raise JobError(f"No job with id {job_id!r}. `python -m llm_lab jobs list` shows the jobs there are.")
    return _decode(row)


def list_jobs(kind_prefix: str = "", limit: int = 200) -> list[dict]:
    reconcile()
    rows = store.query(
        "SELECT * FROM jobs WHERE kind LIKE ? ORDER BY created_at DESC LIMIT ?", (kind_prefix + "%", limit))
    return [_decode(r) for r in rows]


def cancel(job_id: str) -> dict:
    job = get(job_id)
    with store.transaction() as conn:
        if job["status"] == QUEUED:
            conn.execute("UPDATE jobs SET status=?, finished_at=?, message=? WHERE id=?",
                         (CANCELLED, store.now(), "Cancelled before it started.", job_id))
        elif job["status"] == RUNNING:
            conn.execute("UPDATE jobs SET cancel_requested=1, message=? WHERE id=?",
                         ("Cancelling…", job_id))
        else:
            raise JobError(f"Job {job_id} is {job['status']}; only queued or running jobs can be cancelled.")
    return get(job_id)


def resume(job_id: str) -> dict:
    job = get(job_id)
    if job["status"] not in RESUMABLE:
        raise JobError(f"Job {job_id} is {job['status']}; only {', '.join(RESUMABLE)} jobs can be resumed.")
    store.execute(
        "UPDATE jobs SET status=?, cancel_requested=0, error=NULL, finished_at=NULL, updated_at=?, "
        "message='Queued to resume.' WHERE id=?", (QUEUED, store.now(), job_id))
    _enqueue(job_id)
    return get(job_id)


def metrics(job_id: str) -> list[dict]:
    """Rows of {step, name, value, at} for the job's curves, in step order."""
    return store.query("SELECT step, name, value, at FROM job_metrics WHERE job_id=? ORDER BY step, at", (job_id,))


def drop_metrics_after(job_id: str, step: float) -> None:
    """Forget the job's curve points after `step` (a resumed run recomputes them from its checkpoint)."""
    store.execute("DELETE FROM job_metrics WHERE job_id=? AND step>?", (job_id, step))


def logs(job_id: str, last: int = 200) -> list[str]:
    rows = store.query("SELECT line FROM job_logs WHERE job_id=? ORDER BY at DESC, rowid DESC LIMIT ?", (job_id, last))
    return [r["line"] for r in reversed(rows)]


def wait(job_id: str, timeout: float = 600, poll: float = 0.2) -> dict:
    """Block until the job leaves queued/running (for the CLI and tests)."""
    deadline = time.time() + timeout
    while True:
        job = get(job_id)
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


def _resolve(kind: str):
    module_name, _, func_name = kind.partition(":")
    try:
        return getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as exc:
        raise JobError(f"Unknown job kind {kind!r}: {exc}") from exc


# ---------------------------------------------------------------- inside a job
@dataclass
class JobContext:
    id: str
    params: dict
    resume: bool = False
    _last_write: float = field(default=0.0, repr=False)

    @property
    def workdir(self) -> Path:
        return paths.subdir("jobs", self.id)

    def cancelled(self) -> bool:
        row = store.query_one("SELECT cancel_requested FROM jobs WHERE id=?", (self.id,))
        return bool(row and row["cancel_requested"])

    def check_cancelled(self) -> None:
        if self.cancelled():
            raise JobCancelled()

    def progress(self, done: float, total: float, message: str = "", force: bool = False, **stats) -> None:
        """Record progress (at most 5 writes a second) and raise JobCancelled if asked to stop."""
        t = time.time()
        if not force and done < total and t - self._last_write < 0.2:
            return
        self._last_write = t
        store.execute(
            "UPDATE jobs SET done=?, total=?, message=?, stats=?, updated_at=? WHERE id=?",
            (done, total, message, store.to_json(stats), t, self.id))
        self.check_cancelled()

    def metric(self, step: float, **values: float) -> None:
        t = time.time()
        with store.transaction() as conn:
            conn.executemany("INSERT INTO job_metrics VALUES (?,?,?,?,?)",
                             [(self.id, step, k, float(v), t) for k, v in values.items() if v is not None])

    def log(self, line: str) -> None:
        store.execute("INSERT INTO job_logs VALUES (?,?,?)", (self.id, time.time(), str(line)))


def execute_job(job_id: str) -> None:
    """Run one queued job to a final state. Called by the worker (or inline)."""
    with store.transaction() as conn:
        row = conn.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None or row["status"] != QUEUED:
            return  # cancelled while queued, or already picked up
        resumed = row["attempts"] > 0
        conn.execute(
            "UPDATE jobs SET status=?, started_at=COALESCE(started_at, ?), updated_at=?, worker_pid=?, "
            "attempts=attempts+1, message=? WHERE id=?",
            (RUNNING, store.now(), store.now(), os.getpid(), "Starting…", job_id))
    params = store.from_json(row["params"], {})
    ctx = JobContext(id=job_id, params=params, resume=resumed)
    ctx.log(("Resuming" if resumed else "Starting") + f" {row['kind']} (pid {os.getpid()})")
    status, error, result = SUCCEEDED, None, None
    try:
        result = _resolve(row["kind"])(ctx, **params)
        message = "Done."
    except JobCancelled:
        status, message = CANCELLED, "Cancelled by the user."
    except LabError as exc:
        status, error, message = FAILED, str(exc), str(exc)
    except Exception as exc:  # the job's own bug or the machine: keep the traceback in the log
        status, error = FAILED, _explain(exc)
        message = error
        ctx.log(traceback.format_exc())
    ctx.log(f"{status}: {message}")
    store.execute(
        "UPDATE jobs SET status=?, error=?, result=?, message=?, finished_at=?, updated_at=? WHERE id=?",
        (status, error, store.to_json(result) if result is not None else None, message,
         store.now(), store.now(), job_id))


def _explain(exc: Exception) -> str:
    return failure_message(exc, disk_folder=paths.home(), unexpected="Unexpected error, see the job log. ")


# ---------------------------------------------------------------- the worker
def _lock_path() -> Path:
    return paths.home() / "worker.lock"


def worker_alive() -> bool:
    """True when some process holds the worker lock (the lock dies with its process)."""
    with open(_lock_path(), "a+") as handle:
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


def reconcile() -> None:
    """Running jobs whose process is gone (killed worker, closed CLI) become interrupted.

    Checked per job (its recorded pid), not per worker lock: a job run inline by a CLI or a
    script in another process is alive although no worker holds the lock."""
    for row in store.query("SELECT id, worker_pid FROM jobs WHERE status=?", (RUNNING,)):
        if not _process_alive(row["worker_pid"]):
            store.execute("UPDATE jobs SET status=?, finished_at=?, message=? WHERE id=? AND status=?",
                          (INTERRUPTED, store.now(), _INTERRUPTED_MESSAGE, row["id"], RUNNING))


def _pid_path() -> Path:
    return paths.home() / "worker.pid"


def _serving_worker() -> bool:
    """A live worker holds the lock. (A worker killed a moment ago may leave the lock held a little longer
    by a forked child of it; that does not count: its pid file names a dead process.)"""
    if not worker_alive():
        return False
    try:
        return _process_alive(int(_pid_path().read_text()))
    except (OSError, ValueError):
        return True  # the lock is held by a worker that has not written its pid yet


def ensure_worker() -> bool:
    """Start a worker process unless one is running. Returns True when one was started."""
    if inline_mode() or _serving_worker():
        return False
    log = open(paths.subdir("logs") / "worker.log", "ab")
    subprocess.Popen([sys.executable, "-m", "llm_lab", "worker"], stdout=log, stderr=subprocess.STDOUT,
                     stdin=subprocess.DEVNULL, start_new_session=True, cwd=str(Path(__file__).parent.parent))
    for _ in range(100):  # wait until it holds the lock, so a second caller does not start another
        if worker_alive():
            break
        time.sleep(0.05)
    return True


def run_worker() -> int:
    """The worker's main loop: hold the lock, mark orphans interrupted, consume the queue."""
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
    reconcile()
    print(f"LLM Lab worker {os.getpid()} serving {paths.home()}", flush=True)
    consumer = _huey()[0].create_consumer(workers=1, worker_type="thread", periodic=False,
                                       initial_delay=0.1, max_delay=0.5, check_worker_health=False)
    consumer.run()
    return 0


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
