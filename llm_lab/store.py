"""The embedded store: SQLite in WAL mode for metadata, plain folders for files.

Each component declares its own schema as a list of migrations under a name
(`register_schema`); the store applies the ones a database has not seen yet, in
order, inside a transaction. Existing data is migrated, never recreated.
"""
import json
import os
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


def connect() -> sqlite3.Connection:
    """One connection per thread and database file, migrated on first use."""
    path = str(db_path())
    conns = getattr(_local, "conns", None)
    if conns is None:
        conns = _local.conns = {}
    conn = conns.get(path)
    if conn is None:
        conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
        conns[path] = conn
    _migrate(conn, path)
    return conn


def _migrate(conn: sqlite3.Connection, path: str) -> None:
    key = path + "|" + ",".join(f"{c}:{len(m)}" for c, m in sorted(_SCHEMAS.items()))
    if key in _migrated:
        return
    with _migrate_lock:
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
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


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


@contextmanager
def atomic_dir(final: Path):
    """Yield a temporary folder; on success it is renamed to `final`, on failure removed.

    Readers never see a half-written folder: it appears whole or not at all.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.partial-"))
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def reset_connections() -> None:
    """Close this thread's connections (tests switch LLM_LAB_HOME between cases)."""
    for conn in getattr(_local, "conns", {}).values():
        conn.close()
    _local.conns = {}
