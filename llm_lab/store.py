"""The embedded store: SQLite in WAL mode for metadata, plain folders for files.

Each component declares its own schema as a list of migrations under a name
(`register_schema`); the store applies the ones a database has not seen yet, in
order, inside a transaction. Existing data is migrated, never recreated. A database
that has them all is only read: a read-only command writes nothing.

A full disk: SQLite in WAL mode needs room for its side files (`-shm`, `-wal`) to open a
database that no other process has open. When there is none, `connect` opens the file
read-only instead (every change is in the main file then), so listing still works; a change
then fails, and `is_storage_full` / `storage_full_message` turn that into one clear message.
"""
import errno
import fcntl
import json
import os
import re
import shutil
import sqlite3
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from . import paths

_SCHEMAS: dict[str, list[str]] = {}
_local = threading.local()
_migrate_lock = threading.Lock()
_migrated: set[str] = set()


def register_schema(component: str, migrations: list[str]) -> None:
    """Declare a component's tables. Append new migrations; never edit old ones."""
    _SCHEMAS[component] = migrations


def db_path() -> Path:
    return paths.home() / "llm_lab.db"


RETRY_FULL_S = 5.0  # how often a read-only connection (opened on a full disk) tries to open normally again
_read_only: dict[str, float] = {}  # database path -> when this process last opened it read-only (disk full)


def connect() -> sqlite3.Connection:
    """One connection per thread and database file, migrated on first use."""
    path = str(db_path())
    conns = getattr(_local, "conns", None)
    if conns is None:
        conns = _local.conns = {}
    conn = conns.get(path)
    if conn is not None and getattr(conn, "_lab_read_only", False) and not conn.in_transaction \
            and time.time() - _read_only.get(path, 0) > RETRY_FULL_S:
        conn = None  # the disk may have room again
    if conn is None:
        conn = _open(path)
        old = conns.get(path)
        if old is not None:
            old.close()
        conns[path] = conn
    _migrate(conn, path)
    return conn


class _Connection(sqlite3.Connection):
    _lab_read_only = False


WAL_WAIT_S = 30.0


def _wal(conn: sqlite3.Connection) -> None:
    """Put the database in WAL mode, waiting while another process does the same.

    Switching a new database to WAL takes an exclusive lock, and SQLite answers "database is locked" at once,
    without its busy handler, when two processes (torchrun's ranks, a worker and the dashboard) open a fresh
    database together. Once one has switched it, the mode is stored in the file and the others only read it."""
    deadline = time.monotonic() + WAL_WAIT_S
    delay = 0.01
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


def _open(path: str) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False, factory=_Connection)
        conn.row_factory = sqlite3.Row
        _wal(conn)
    except sqlite3.OperationalError as exc:
        # Opening a WAL database nobody has open creates its -shm and -wal files: on a full disk that fails
        # ("disk I/O error"), although reading needs no room. With no WAL content every committed change is in
        # the main file, so it is read as it is (immutable: no locks, no side files) and changes are refused.
        wal = Path(path + "-wal")
        if not (is_storage_full(exc) and Path(path).exists() and (not wal.exists() or wal.stat().st_size == 0)):
            raise
        uri = "file:" + Path(path).resolve().as_posix().replace("?", "%3f").replace("#", "%23") + "?immutable=1"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, factory=_Connection)
        conn.row_factory = sqlite3.Row
        conn._lab_read_only = True
        _read_only[path] = time.time()
        return conn
    _read_only.pop(path, None)
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def _pending(conn: sqlite3.Connection) -> bool:
    """Whether some registered migration has not run on this database (read only: no lock, no write)."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_versions'").fetchone():
        return True
    done = {r[0]: r[1] for r in conn.execute("SELECT component, version FROM schema_versions")}
    return any(len(migrations) > done.get(component, 0) for component, migrations in _SCHEMAS.items())


def _migrate(conn: sqlite3.Connection, path: str) -> None:
    key = path + "|" + ",".join(f"{c}:{len(m)}" for c, m in sorted(_SCHEMAS.items()))
    if key in _migrated:
        return
    with _migrate_lock:
        if not _pending(conn):  # the usual case: nothing to write, so nothing is locked or written
            _migrated.add(key)
            return
        conn.execute("CREATE TABLE IF NOT EXISTS schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
        for component, migrations in sorted(_SCHEMAS.items()):
            with transaction(conn):
                row = conn.execute("SELECT version FROM schema_versions WHERE component=?", (component,)).fetchone()
                done = row["version"] if row else 0
                for sql in migrations[done:]:
                    for statement in statements(sql):
                        conn.execute(statement)
                if len(migrations) > done:
                    conn.execute(
                        "INSERT INTO schema_versions VALUES (?, ?) ON CONFLICT(component) DO UPDATE SET version=excluded.version",
                        (component, len(migrations)),
                    )
        _migrated.add(key)


def statements(sql: str) -> list[str]:
    """Split a migration into statements; a trigger's BEGIN ... END holds semicolons of its own."""
    out, pending = [], ""
    for part in sql.split(";"):
        pending += part + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n\t;"):
                out.append(pending)
            pending = ""
    if pending.strip(" \n\t;"):
        out.append(pending)
    return out


@contextmanager
def transaction(conn: sqlite3.Connection | None = None):
    """BEGIN IMMEDIATE ... COMMIT, so concurrent writers queue instead of failing."""
    conn = conn or connect()
    if conn.in_transaction:
        yield conn
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # a failed COMMIT (disk full) leaves it open: never let later writes join it
            conn.execute("ROLLBACK")
        raise


def execute(sql: str, params=()) -> sqlite3.Cursor:
    return connect().execute(sql, params)


def query(sql: str, params=()) -> list[dict]:
    return [dict(row) for row in connect().execute(sql, params).fetchall()]


def query_one(sql: str, params=()) -> dict | None:
    row = connect().execute(sql, params).fetchone()
    return dict(row) if row else None


def to_json(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def from_json(text: str | None, default=None):
    return json.loads(text) if text else default


def now() -> float:
    return time.time()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, fsync, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


PARTIAL_GRACE_S = 60.0  # a staging folder younger than this is never swept (its writer may not hold it yet)
_PARTIAL = re.compile(r"\..+\.partial-[^/]+")


def sweep_partials(parent: Path, grace_s: float | None = None) -> list[Path]:
    """Remove the staging folders (`.NAME.partial-*`) in `parent` that saves killed midway left behind.

    A save holds an exclusive lock (flock) on its staging folder while it writes; the lock dies with its
    process, so a folder nobody holds and older than `grace_s` (PARTIAL_GRACE_S) is a killed save's. flock
    belongs to the file, so a save of another container sharing the volume holds its folder too."""
    grace = PARTIAL_GRACE_S if grace_s is None else grace_s
    removed = []
    try:
        entries = list(Path(parent).iterdir())
    except OSError:
        return removed
    for entry in entries:
        if not _PARTIAL.fullmatch(entry.name) or entry.is_symlink() or not entry.is_dir():
            continue
        try:
            if time.time() - entry.stat().st_mtime < grace:
                continue
            fd = os.open(entry, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a live save holds it
            os.close(fd)
            continue
        try:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
        finally:
            os.close(fd)
    return removed


@contextmanager
def staged_dir(parent: Path, name: str):
    """Yield a new staging folder `parent/.NAME.partial-*`, locked while the block runs, to write a folder in;
    the caller moves it into place (os.replace) when it is complete. Whatever is still there when the block
    ends (a failure) is removed; what a killed process leaves, the next save in `parent` sweeps away."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    sweep_partials(parent)
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{name}.partial-"))
    fd = os.open(tmp, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield tmp
    finally:
        try:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        finally:
            os.close(fd)


@contextmanager
def atomic_dir(final: Path):
    """Yield a temporary folder; on success it is renamed to `final`, on failure removed.

    Readers never see a half-written folder: it appears whole or not at all.
    """
    final = Path(final)
    with staged_dir(final.parent, final.name) as tmp:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)


# ---------------------------------------------------------------- a full disk
LOW_SPACE_BYTES = 64 * 2**20  # "disk I/O error" with less free than this is taken for a full disk


def free_bytes(folder: Path | None = None) -> int | None:
    try:
        return shutil.disk_usage(folder or _existing(paths.home_path())).free
    except OSError:
        return None


def _existing(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def is_storage_full(exc: BaseException) -> bool:
    """Whether `exc` says the disk holding LLM_LAB_HOME is full: ENOSPC/EDQUOT, SQLite's "database or disk is
    full", a "disk I/O error" while almost no space is left, or a change refused by the read-only connection
    `connect` opened because the disk was full."""
    if isinstance(exc, OSError) and getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        return True
    if "No space left on device" in str(exc):
        return True
    if isinstance(exc, sqlite3.Error):
        name, text = getattr(exc, "sqlite_errorname", "") or "", str(exc)
        if name == "SQLITE_FULL" or "database or disk is full" in text:
            return True
        if name.startswith("SQLITE_IOERR") or "disk I/O error" in text:
            free = free_bytes()
            return free is not None and free < LOW_SPACE_BYTES
        if name.startswith("SQLITE_READONLY") or "readonly database" in text:
            return str(db_path_quiet()) in _read_only
    return False


def db_path_quiet() -> Path:
    """db_path() without creating LLM_LAB_HOME (which may be what fails)."""
    return paths.home_path() / "llm_lab.db"


def storage_full_message(what: str = "") -> str:
    """The one message for a full disk: where LLM_LAB_HOME is, how much is free, what to do."""
    home = paths.home_path()
    free = free_bytes()
    left = f"{free / 2**20:.1f} MB free" if free is not None and free >= 2**20 else \
        f"{free / 2**10:.0f} KB free" if free is not None else "free space unknown"
    return (f"{what + ': ' if what else ''}the disk holding LLM_LAB_HOME ({home}) is full ({left}). Free space "
            f"on it (old job folders under {home / 'jobs'}, datasets or models you no longer need, or files "
            "outside LLM Lab), or point LLM_LAB_HOME at a bigger disk, then try again.")


def reset_connections() -> None:
    """Close this thread's connections (tests switch LLM_LAB_HOME between cases)."""
    for conn in getattr(_local, "conns", {}).values():
        conn.close()
    _local.conns = {}
