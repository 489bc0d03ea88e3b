"""Private PostgreSQL and Redis servers for tests: real engines, on free localhost ports, in temp folders.

Each server is a context manager that starts a fresh instance and, on exit, stops it and removes its folder;
`postgres_server` / `redis_server` are the session fixtures built on them (conftest imports them). Nothing
is shared with a server the machine may already run: the data lives in a temp folder, the port is a free one
and the unix socket sits in the temp folder too.

Binaries: Debian's `postgresql` (initdb, pg_ctl under /usr/lib/postgresql/N/bin) and `redis-server`. When they
are missing the fixtures skip with the apt line that installs them, except under CI (`CI` set), where a
missing engine fails: CI must test both backends.

initdb refuses to run as root; when the tests run as root (CI does), the cluster is created and run by the
`postgres` user (`runuser -u postgres --`), which owns the temp folder.
"""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Self

import pytest

APT_LINE = "apt-get install -y --no-install-recommends postgresql redis-server"
START_TIMEOUT_S = 60.0


def free_port() -> int:
    """A TCP port nobody listens on right now (the server binds it a moment later; startup retries on a clash)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _missing(what: str) -> None:
    message = f"{what} is not installed: install it with `{APT_LINE}` to run the PostgreSQL/Redis tests"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI must install it: .ci/run)")
    pytest.skip(message)


# ---------------------------------------------------------------- PostgreSQL
def postgres_bin() -> Path | None:
    """The folder holding initdb and pg_ctl (Debian keeps them out of PATH), newest version first."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                      key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    return Path(versions[-1]).parent if versions else None


def _as_postgres_user() -> list[str]:
    """The prefix that runs a PostgreSQL binary as a non-root user: initdb and postgres refuse root."""
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", "postgres", "--"]


class PostgresServer:
    """A private PostgreSQL cluster: `with PostgresServer() as pg: url = pg.create_database()`."""

    def __init__(self, user: str = "postgres"):
        self.bin = postgres_bin()
        self.user = user
        self.port = 0
        self.folder: Path | None = None

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def __enter__(self) -> Self:
        if self.bin is None:
            _missing("PostgreSQL (initdb, pg_ctl)")
        self.folder = Path(tempfile.mkdtemp(prefix="llm-lab-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        try:
            self._run("initdb", "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8",
                      "--locale=C", "--no-sync")
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([*_as_postgres_user(), str(self.bin / tool), *args], cwd=self.folder,
                              capture_output=True, text=True, check=check, timeout=START_TIMEOUT_S)

    def _start(self) -> None:
        # Tests only: durability is not what they check, and fsync off makes CREATE DATABASE and commits cheap.
        options = ("-c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                   f"-c max_connections=300 -k {self.folder}")
        for attempt in range(3):
            self.port = free_port()
            done = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"), "-w",
                             "-t", str(int(START_TIMEOUT_S)), "-o", f"-p {self.port} {options}", "start",
                             check=False)
            if done.returncode == 0:
                return
            log = (self.folder / "server.log").read_text(errors="replace") if (self.folder / "server.log").exists() else ""
            if "already in use" not in log or attempt == 2:  # a port taken between free_port and bind: try another
                raise RuntimeError(f"pg_ctl start failed: {done.stdout}{done.stderr}\n{log[-2000:]}")

    def __exit__(self, *exc) -> None:
        if self.folder is None:
            return
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = None

    def admin(self):
        """An autocommit psycopg connection to the `postgres` database (CREATE/DROP DATABASE run outside a
        transaction)."""
        import psycopg

        return psycopg.connect(self.url("postgres"), autocommit=True)

    def create_database(self, name: str | None = None, template: str | None = None) -> str:
        """Create an empty database (or a copy of `template`) and return its URL."""
        from psycopg import sql

        name = name or "t_" + uuid.uuid4().hex[:16]
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
        with self.admin() as conn:
            conn.execute(statement)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, closing whatever connections to it are still open (a pool left behind)."""
        from psycopg import sql

        with self.admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# ---------------------------------------------------------------- Redis
class RedisServer:
    """A private redis-server without persistence: `with RedisServer() as r: url = r.url()`."""

    def __init__(self):
        self.binary = shutil.which("redis-server")
        self.port = 0
        self.folder: Path | None = None
        self.process: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def __enter__(self) -> Self:
        if self.binary is None:
            _missing("redis-server")
        self.folder = Path(tempfile.mkdtemp(prefix="llm-lab-redis-"))
        try:
            for attempt in range(3):
                self.port = free_port()
                log = self.folder / "redis.log"
                self.process = subprocess.Popen(
                    [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
                     "--save", "", "--appendonly", "no", "--unixsocket", "", "--logfile", str(log)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
                if self._wait_ready():
                    return self
                self._stop_process()
                text = log.read_text(errors="replace") if log.exists() else ""
                if "in use" not in text or attempt == 2:
                    raise RuntimeError(f"redis-server did not start:\n{text[-2000:]}")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_ready(self) -> bool:
        """PING until PONG; False when the process exits first (a port clash)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return True
            except OSError:
                pass
            time.sleep(0.02)  # polling a starting server, not racing a timer
        return False

    def _stop_process(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def flush(self) -> None:
        """Empty every database (between tests sharing the session server)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(b"FLUSHALL\r\n")
            sock.recv(64)

    def __exit__(self, *exc) -> None:
        self._stop_process()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


# ---------------------------------------------------------------- fixtures (conftest imports these)
@pytest.fixture(scope="session")
def postgres_server():
    """One private PostgreSQL for the session; tests take a fresh database each (`pg.create_database()`)."""
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_server():
    """One private redis-server for the session; call `.flush()` or use distinct db numbers between tests."""
    with RedisServer() as server:
        yield server


@contextmanager
def postgres_database(server: PostgresServer, template: str | None = None):
    """A fresh database on `server` for one test, dropped afterwards; yields its URL."""
    name = "t_" + uuid.uuid4().hex[:16]
    url = server.create_database(name, template=template)
    try:
        yield url
    finally:
        server.drop_database(name)
