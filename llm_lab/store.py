"""The store: metadata in SQLite (WAL mode, the embedded default) or PostgreSQL, files in plain folders.

`LLM_LAB_DATABASE_URL=postgresql://user:pass@host:port/db` puts every table on PostgreSQL; without it the store is
the SQLite file LLM_LAB_HOME/llm_lab.db, exactly as before.

RULES FOR SQL (every module's SQL runs unchanged on both engines through the thin layer below):
- Write `?` placeholders (never `%s`, never named `:x`); a literal `%` is fine (the layer escapes it).
- No `INSERT OR IGNORE` / `INSERT OR REPLACE`: write `INSERT ... ON CONFLICT (cols) DO NOTHING` /
  `ON CONFLICT (cols) DO UPDATE SET c=excluded.c` (SQLite >= 3.24 and PostgreSQL both take it).
- No `rowid`, no `last_insert_rowid()`/`cursor.lastrowid`: order by a real column, use `RETURNING id`.
- No PRAGMA, no `sqlite_master`, no json_* functions, no GLOB, no IFNULL (use COALESCE), no `||` on numbers.
- Column types in migrations: TEXT, REAL, INTEGER, BLOB, `INTEGER PRIMARY KEY AUTOINCREMENT` (the layer maps
  them to DOUBLE PRECISION, BIGINT, BYTEA, an identity column); booleans are stored as 0/1 (pass ints or bools).
- The layer quotes `user` (reserved in PostgreSQL; write `"user"` anyway), turns `a IS ?` into IS NOT DISTINCT
  FROM, drops `--` comments; `INTEGER PRIMARY KEY` numbers new rows on both. Write `WHERE 1=1`, not `WHERE 1`
  (PostgreSQL wants a boolean). Every GROUP BY names each non-aggregated column. LIKE is case-sensitive on
  PostgreSQL (use lower(x) LIKE lower(?) when case must not matter). TEXT columns get COLLATE "C" on
  PostgreSQL: ORDER BY and < compare bytes, as SQLite's BINARY does, whatever locale the server has. An error inside a transaction ends it on
  PostgreSQL: do not catch one and go on writing in the same transaction.
- Read-modify-write goes in `with store.transaction():` -- on PostgreSQL it takes one advisory lock, so write
  transactions queue exactly as SQLite's BEGIN IMMEDIATE makes them queue.
- Catch `store.DatabaseError` / `store.IntegrityError` / `store.OperationalError` (tuples holding the sqlite3 and
  psycopg classes), never sqlite3's: callers do not know which engine runs.
- Rows behave like sqlite3.Row on both: row["col"], row[0], dict(row).

Why psycopg 3 with a thin dialect layer, not SQLAlchemy Core: every module already speaks plain SQL through
`store.execute/query/transaction` and `access.scope`; SQLAlchemy would mean rewriting all of it (or passing text()
through, which is what this layer does anyway) and adds a large dependency for little. The differences that matter
are few and mechanical (placeholders, DDL types, one trigger form, how a write transaction starts), so one small
translation function, tested on both engines, keeps the SQL readable and identical. The PostgreSQL connection
wraps psycopg's in the sqlite3 shape the callers use (`execute(...).fetchone()/.rowcount`, `in_transaction`,
rows by name and index). psycopg_pool gives each process one pool; a thread borrows a connection on its first
query and gives it back when the thread ends (Streamlit runs each rerun in a new thread), so a busy dashboard
holds at most LLM_LAB_DB_POOL_SIZE connections. The client-side-binding cursor keeps SQLite's loose typing
(`? IS NULL`, ints compared to REAL) that server-side binding would refuse.

Same guarantees: a write transaction (`transaction()`) on PostgreSQL takes one transaction-level advisory lock
first, so write transactions run one at a time as BEGIN IMMEDIATE makes them on SQLite; a save that moves a
folder into place and commits its row inside one (data.py, train/export.py) therefore keeps its "whole or not at
all" reasoning unchanged, across every machine that shares the database.

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
import functools
import json
import os
import re
import shutil
import sqlite3
import tempfile
import threading
import time
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

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


def database_url() -> str | None:
    """LLM_LAB_DATABASE_URL when it names PostgreSQL; None means the SQLite file (db_path)."""
    url = os.environ.get("LLM_LAB_DATABASE_URL", "").strip()
    if not url:
        return None
    if not url.startswith(("postgresql://", "postgres://")):
        raise ValueError(f"LLM_LAB_DATABASE_URL={redact(url)!r}: only postgresql://user:password@host:port/database "
                         "is supported. Leave it unset for the embedded SQLite file under LLM_LAB_HOME.")
    return url


def redact(url: str) -> str:
    """The URL without its password, for messages and `db check`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def dialect() -> str:
    return "postgresql" if database_url() else "sqlite"


def connect():
    """One connection per thread and database, migrated on first use: the SQLite file (db_path), or a
    connection borrowed from the process's PostgreSQL pool when LLM_LAB_DATABASE_URL is set."""
    url = database_url()
    conns = getattr(_local, "conns", None)
    if conns is None:
        conns = _local.conns = {}
    if url:
        conn = conns.get(url)
        if conn is None or conn.broken:
            if conn is not None:
                conn.close()
            conn = conns[url] = _PgConnection(url)
        _migrate(conn, url)
        return conn
    path = str(db_path())
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
    dialect = "sqlite"
    broken = False

    def begin(self) -> None:
        """Start a write transaction holding the write lock: writers queue instead of failing."""
        self.execute("BEGIN IMMEDIATE")


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


# ---------------------------------------------------------------- PostgreSQL: the thin dialect layer
try:  # psycopg is needed only with LLM_LAB_DATABASE_URL; the laptop install runs without it
    import psycopg
    import psycopg_pool
    from psycopg import ClientCursor
    from psycopg.adapt import Dumper, Loader
except ImportError:  # pragma: no cover - requirements.txt installs both
    psycopg = psycopg_pool = None

# One exception family for callers, whichever engine runs: `except store.IntegrityError` (tuples of classes).
if psycopg is not None:
    DatabaseError = (sqlite3.Error, psycopg.Error, psycopg_pool.PoolTimeout)
    IntegrityError = (sqlite3.IntegrityError, psycopg.IntegrityError)
    OperationalError = (sqlite3.OperationalError, psycopg.OperationalError, psycopg_pool.PoolTimeout)
else:  # pragma: no cover
    DatabaseError, IntegrityError, OperationalError = (sqlite3.Error,), (sqlite3.IntegrityError,), \
        (sqlite3.OperationalError,)

WRITE_LOCK_KEY = 0x4C4C4D4C  # "LLML": the advisory lock every write transaction holds (BEGIN IMMEDIATE's twin)
POOL_WAIT_S = 30.0
_pools: dict[str, tuple[int, object]] = {}  # url -> (pid, pool): a forked child builds its own
_pools_lock = threading.Lock()


def pool_size() -> int:
    text = os.environ.get("LLM_LAB_DB_POOL_SIZE", "").strip() or "20"
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"LLM_LAB_DB_POOL_SIZE={text!r}: give a whole number of connections, at least 1.")
    return int(text)


class Row(tuple):
    """A row read by name or position, and dict(row): what sqlite3.Row gives the callers."""

    def __new__(cls, values, index: dict):
        row = super().__new__(cls, values)
        row._index = index
        return row

    def __getitem__(self, key):
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self):
        return list(self._index)


def _row_factory(cursor):
    index = {column.name: i for i, column in enumerate(cursor.description or ())}
    return lambda values: Row(values, index)


if psycopg is not None:
    class _BoolAsInt(Dumper):
        """Booleans are stored as 0/1, as on SQLite (the columns are INTEGER)."""
        oid = psycopg.adapters.types["int8"].oid

        def dump(self, obj):
            return b"1" if obj else b"0"

        def quote(self, obj):
            return b"1" if obj else b"0"

    class _Number(Loader):
        """numeric (what SUM of integers gives) as int or float, like SQLite, not Decimal."""

        def load(self, data):
            text = bytes(data).decode()
            return float(text) if any(c in text for c in ".eEN") else int(text)


# A machine that vanishes (power, network) inside a write transaction would hold the one write lock until the
# server's TCP stack gives up on it (two hours by Linux's defaults): every machine's writes would wait that long.
# Keepalives on both ends find a dead peer in about a minute; the server then ends the session, rolling back.
KEEPALIVE = {"idle": 30, "interval": 10, "count": 3}


def _configure(conn) -> None:
    conn.adapters.register_dumper(bool, _BoolAsInt)
    conn.adapters.register_loader("numeric", _Number)
    for name, value in KEEPALIVE.items():  # the server's side (per session; ignored on a Unix socket)
        conn.execute(f"SET tcp_keepalives_{name} = {int(value)}")


def _pool(url: str):
    """The process's pool for `url` (a child made by fork must not share its parent's sockets: it gets its own)."""
    if psycopg is None:
        raise RuntimeError("LLM_LAB_DATABASE_URL names PostgreSQL but psycopg is not installed: "
                           "pip install 'psycopg[binary]' psycopg-pool (requirements.txt).")
    with _pools_lock:
        pid, pool = _pools.get(url, (None, None))
        if pool is None or pid != os.getpid():
            _raise_if_unreachable(url)  # at once and plainly, not as a pool timeout 30 s later
            pool = psycopg_pool.ConnectionPool(
                url, min_size=1, max_size=pool_size(), timeout=POOL_WAIT_S, open=True, name="llm-lab",
                configure=_configure, check=psycopg_pool.ConnectionPool.check_connection,
                kwargs={"autocommit": True, "row_factory": _row_factory, "cursor_factory": ClientCursor,
                        "keepalives": 1, **{f"keepalives_{k}": v for k, v in KEEPALIVE.items()}})  # the client's
            _pools[url] = (os.getpid(), pool)
        return pool


CONNECT_TIMEOUT_S = 10


def _raise_if_unreachable(url: str) -> None:
    """Open one connection to `url` outside the pool; raise OperationalError saying which server (password left
    out) and why, when it cannot be opened (nothing listening, wrong password, no such database)."""
    try:
        psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True).close()
    except psycopg.OperationalError as exc:
        reason = " ".join(str(exc).split())
        raise psycopg.OperationalError(
            f"Cannot reach the PostgreSQL database LLM_LAB_DATABASE_URL={redact(url)}: {reason}. Check that the "
            "server runs and that the address, user, password and database name are right (`python -m llm_lab "
            "db check`).") from None


class _PgConnection:
    """A pooled psycopg connection in the shape the callers know from sqlite3 (autocommit, like SQLite with
    isolation_level=None; `transaction` begins and commits explicitly)."""
    dialect = "postgresql"
    _lab_read_only = False

    def __init__(self, url: str):
        self.url, self.raw, self.pid = url, None, os.getpid()
        self.pool = _pool(url)
        try:
            self.raw = self.pool.getconn()
        except psycopg_pool.PoolTimeout as exc:
            _raise_if_unreachable(url)  # a server that went away since the pool opened, not a full pool
            raise psycopg_pool.PoolTimeout(
                f"All {self.pool.max_size} database connections of this process are in use (waited "
                f"{POOL_WAIT_S:.0f} s): raise LLM_LAB_DB_POOL_SIZE, or the PostgreSQL server's max_connections "
                "if it is the limit.") from exc

    @property
    def broken(self) -> bool:
        return self.raw is None or self.raw.closed or self.pid != os.getpid()

    @property
    def in_transaction(self) -> bool:
        return self.raw is not None and \
            self.raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def begin(self) -> None:
        self.execute("BEGIN")
        try:
            self.execute("SELECT pg_advisory_xact_lock(?)", (WRITE_LOCK_KEY,))
        except BaseException:  # lock_timeout, statement_timeout, Ctrl-C: never leave the thread inside BEGIN
            if not self.broken:
                self.raw.rollback()
            raise

    def execute(self, sql: str, params=()):
        return self.raw.execute(translate(sql), tuple(params))

    def executemany(self, sql: str, seq_of_params):
        cursor = self.raw.cursor()
        cursor.executemany(translate(sql), [tuple(p) for p in seq_of_params])
        return cursor

    def close(self) -> None:
        """Give the connection back to the pool (rolled back if a transaction was left open)."""
        raw, self.raw = self.raw, None
        if raw is None:
            return
        # a pool closed at exit, a dead server: nothing to give it back to
        with suppress(Exception):
            if self.pid == os.getpid():
                self.pool.putconn(raw)

    def __del__(self):  # a thread's connections go back to the pool when the thread ends
        self.close()


_SQLITE_TYPES = [  # DDL: SQLite's column types -> PostgreSQL's (REAL is float4 there: timestamps need float8)
    # INTEGER PRIMARY KEY is SQLite's rowid: numbered when not given, as an identity column numbers it
    (re.compile(r"\bINTEGER PRIMARY KEY( AUTOINCREMENT)?\b"), "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bBLOB\b"), "BYTEA"),
    # SQLite orders and compares TEXT byte by byte (BINARY); PostgreSQL by the database's locale ('alpha' < 'B'
    # in en-US), which a stock server sets: the C collation keeps names in lists and range conditions the same
    (re.compile(r"\bTEXT\b"), 'TEXT COLLATE "C"'),
]
_TRIGGER = re.compile(  # SQLite's refusing trigger -> a PL/pgSQL function and a trigger calling it
    r"\s*CREATE TRIGGER (\w+) (BEFORE|AFTER) (UPDATE|DELETE|INSERT) ON (\w+)\s+BEGIN\s+SELECT RAISE\(ABORT,\s*"
    r"'([^']*)'\);\s*END\s*;?\s*$", re.DOTALL | re.IGNORECASE)
_NULL_SAFE = [  # SQLite's `a IS ?` compares values (NULL-safe =); PostgreSQL's IS takes only NULL/TRUE/FALSE
    (re.compile(r"\bIS\s+NOT\s+%s", re.IGNORECASE), "IS DISTINCT FROM %s"),
    (re.compile(r"\bIS\s+%s", re.IGNORECASE), "IS NOT DISTINCT FROM %s"),
]
# `user` is an ordinary name in SQLite and a reserved word (CURRENT_USER) in PostgreSQL: always the column here
_USER = re.compile(r"(?<![\w$])user(?![\w$])", re.IGNORECASE)
_DDL = re.compile(r"\s*(CREATE TABLE|ALTER TABLE)\b", re.IGNORECASE)


@functools.lru_cache(maxsize=4096)
def translate(sql: str) -> str:
    """SQLite-flavoured SQL (the store's rules, above) -> PostgreSQL's: `?` -> %s, literal % -> %%, DDL types,
    the trigger form, `IS ?`, the name `user`. Strings and quoted names are left alone; `--` comments are
    dropped (an apostrophe in one must not open a string)."""
    trigger = _TRIGGER.match(sql)
    if trigger:
        name, when, event, table, message = trigger.groups()
        return (f"CREATE FUNCTION {name}_fn() RETURNS trigger LANGUAGE plpgsql AS $fn$ BEGIN "
                f"RAISE EXCEPTION USING ERRCODE = 'integrity_constraint_violation', MESSAGE = '{message}'; "
                f"END $fn$; CREATE TRIGGER {name} {when} {event} ON {table} FOR EACH ROW EXECUTE FUNCTION {name}_fn()")
    out, quote = [], None
    ddl = bool(_DDL.match(sql))
    chunk = []
    comment = False
    for i, char in enumerate(sql):
        if comment:
            if char == "\n":
                comment = False
                chunk.append(char)
            continue
        if quote is None and char == "-" and sql[i + 1:i + 2] == "-":
            comment = True
            continue
        if quote:
            chunk.append("%%" if char == "%" else char)
            if char == quote:
                out.append("".join(chunk))
                chunk, quote = [], None
            continue
        if char in "'\"":
            out.append(_plain(("".join(chunk)), ddl))
            chunk, quote = [char], char
        elif char == "?":
            chunk.append("%s")
        elif char == "%":
            chunk.append("%%")
        else:
            chunk.append(char)
    out.append("".join(chunk) if quote else _plain("".join(chunk), ddl))
    return "".join(out)


def _plain(text: str, ddl: bool) -> str:
    """SQL outside quotes: column types are mapped in CREATE/ALTER TABLE only."""
    if ddl:
        for pattern, replacement in _SQLITE_TYPES:
            text = pattern.sub(replacement, text)
    for pattern, replacement in _NULL_SAFE:
        text = pattern.sub(replacement, text)
    return _USER.sub('"user"', text)


def is_unique_violation(exc: BaseException) -> bool:
    """Whether `exc` is a duplicate key (a UNIQUE or PRIMARY KEY constraint), on either engine."""
    if psycopg is not None and isinstance(exc, psycopg.errors.UniqueViolation):
        return True
    return isinstance(exc, sqlite3.IntegrityError) and "UNIQUE constraint failed" in str(exc)


def insert_sql(table: str, columns, on_conflict: str = "", keys=()) -> str:
    """INSERT with `?` marks; on_conflict "ignore" (keep the row there) or "replace" (overwrite it: `keys` are
    the primary key's columns). Portable: ON CONFLICT works on SQLite >= 3.24 and PostgreSQL."""
    columns = list(columns)
    sql = f"INSERT INTO {table} ({','.join(columns)}) VALUES ({','.join('?' * len(columns))})"
    if on_conflict == "ignore":
        return sql + " ON CONFLICT DO NOTHING"
    if on_conflict == "replace":
        sets = ",".join(f"{c}=excluded.{c}" for c in columns if c not in keys)
        return sql + f" ON CONFLICT ({','.join(keys)}) DO " + (f"UPDATE SET {sets}" if sets else "NOTHING")
    return sql


@functools.lru_cache(maxsize=256)
def _primary_key(dialect_name: str, where: str, table: str) -> tuple[str, ...]:
    conn = connect()
    if dialect_name == "postgresql":
        rows = conn.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid=i.indrelid AND a.attnum=ANY(i.indkey) "
            "WHERE i.indrelid=to_regclass(?) AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)",
            (table,)).fetchall()
        return tuple(r[0] for r in rows)
    rows = [r for r in conn.execute(f"PRAGMA table_info({table})").fetchall() if r["pk"]]
    return tuple(r["name"] for r in sorted(rows, key=lambda r: r["pk"]))


def primary_key(table: str) -> tuple[str, ...]:
    """The primary key's columns of `table` (read from the database's catalog, cached per database)."""
    return _primary_key(dialect(), database_url() or str(db_path()), table)


def close_pools() -> None:
    """Close this process's PostgreSQL pools (tests drop their database after; a server at exit)."""
    reset_connections()
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pid, pool in pools:
        if pid == os.getpid():
            pool.close()
    _migrated.clear()
    _primary_key.cache_clear()


def _pending(conn) -> bool:
    """Whether some registered migration has not run on this database (read only: no lock, no write)."""
    if not _has_versions_table(conn):
        return True
    done = {r[0]: r[1] for r in conn.execute("SELECT component, version FROM schema_versions")}
    return any(len(migrations) > done.get(component, 0) for component, migrations in _SCHEMAS.items())


def _has_versions_table(conn) -> bool:
    if conn.dialect == "postgresql":
        return conn.execute("SELECT to_regclass('schema_versions') IS NOT NULL").fetchone()[0]
    return bool(conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_versions'").fetchone())


def versions(conn=None) -> dict[str, int]:
    """The migrations each component has had on this database (without migrating it)."""
    conn = conn or raw_connection()
    if not _has_versions_table(conn):
        return {}
    return {r[0]: r[1] for r in conn.execute("SELECT component, version FROM schema_versions")}


def _migrate(conn, key_base: str) -> None:
    key = key_base + "|" + ",".join(f"{c}:{len(m)}" for c, m in sorted(_SCHEMAS.items()))
    if key in _migrated:
        return
    with _migrate_lock:
        if not _pending(conn):  # the usual case: nothing to write, so nothing is locked or written
            _migrated.add(key)
            return
        migrate(conn)
        _migrated.add(key)


def migrate(conn) -> list[str]:
    """Apply every registered migration this database lacks, one component per transaction (two processes
    migrating at once queue on the write lock; the second finds nothing left). Returns "component: a -> b" lines."""
    applied = []
    with transaction(conn):  # on PostgreSQL, CREATE TABLE IF NOT EXISTS races itself without the lock
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
                applied.append(f"{component}: {done} -> {len(migrations)}")
    return applied


def registered() -> dict[str, int]:
    """Each component this process declared and how many migrations it has."""
    return {component: len(migrations) for component, migrations in _SCHEMAS.items()}


def server_version(conn) -> str:
    if conn.dialect == "postgresql":
        return conn.execute("SHOW server_version").fetchone()[0]
    return "SQLite " + sqlite3.sqlite_version


def raw_connection():
    """This thread's connection without migrating (db check reads versions first)."""
    url = database_url()
    conns = getattr(_local, "conns", None)
    if conns is None:
        conns = _local.conns = {}
    if url:
        if conns.get(url) is None or conns[url].broken:
            conns[url] = _PgConnection(url)
        return conns[url]
    path = str(db_path())
    if conns.get(path) is None:
        conns[path] = _open(path)
    return conns[path]


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
def transaction(conn=None):
    """A write transaction: BEGIN IMMEDIATE on SQLite, BEGIN plus the one advisory lock on PostgreSQL, so
    concurrent writers queue instead of failing, on both."""
    conn = conn or connect()
    if conn.in_transaction:
        yield conn
        return
    conn.begin()
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction and not conn.broken:  # a failed COMMIT (disk full) leaves it open: never let
            conn.execute("ROLLBACK")                    # later writes join it (a dropped connection has none)
        raise


def execute(sql: str, params=()):
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
    `connect` opened because the disk was full. On PostgreSQL: the server's disk_full (53100)."""
    if isinstance(exc, OSError) and getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        return True
    if "No space left on device" in str(exc):
        return True
    if psycopg is not None and isinstance(exc, psycopg.Error):
        return getattr(exc, "sqlstate", None) == "53100"  # disk_full, on the database server's disk
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
            "outside LLM Lab), or point LLM_LAB_HOME at a bigger disk, then try again."
            + (" With LLM_LAB_DATABASE_URL set, the PostgreSQL server's own disk may be the full one: check it on "
               "the database host." if os.environ.get("LLM_LAB_DATABASE_URL") else ""))


def reset_connections() -> None:
    """Close this thread's connections (tests switch LLM_LAB_HOME between cases)."""
    for conn in getattr(_local, "conns", {}).values():
        conn.close()
    _local.conns = {}
