"""The store: WAL mode, migrations (once, appended ones on an existing database), concurrent writers, atomic files."""
import os
import subprocess
import sys
import textwrap
import threading

import pytest

from llm_lab import paths, store

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

COUNTER_SCHEMA = [
    "CREATE TABLE t_counter (name TEXT PRIMARY KEY, value INTEGER NOT NULL);"
    "INSERT INTO t_counter VALUES ('hits', 0);",
    "CREATE TABLE t_rows (writer TEXT NOT NULL, n INTEGER NOT NULL);",
]

WRITER = textwrap.dedent("""
    import sys
    from llm_lab import store
    store.register_schema("t_counter", {schema!r})
    writer, n = sys.argv[1], int(sys.argv[2])
    for i in range(n):
        with store.transaction() as conn:   # read-modify-write: a lost update would show in the total
            value = conn.execute("SELECT value FROM t_counter WHERE name='hits'").fetchone()[0]
            conn.execute("UPDATE t_counter SET value=? WHERE name='hits'", (value + 1,))
            conn.execute("INSERT INTO t_rows VALUES (?, ?)", (writer, i))
""").format(schema=COUNTER_SCHEMA)


@pytest.fixture
def schema(monkeypatch):
    """Register a test component for this test only."""
    def register(name, migrations):
        monkeypatch.setitem(store._SCHEMAS, name, migrations)
        store._migrated.clear()  # as a fresh process would
    yield register
    store._migrated.clear()


def test_wal_mode_and_home_folder(lab_home):
    assert store.db_path() == lab_home / "llm_lab.db"
    assert store.query_one("PRAGMA journal_mode")["journal_mode"] == "wal"
    assert paths.subdir("a", "b") == lab_home / "a" / "b" and (lab_home / "a" / "b").is_dir()


def test_home_moves_with_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LLM_LAB_HOME", str(tmp_path / "elsewhere"))
    store.reset_connections()
    store.execute("SELECT 1")
    assert (tmp_path / "elsewhere" / "llm_lab.db").exists()


def test_migrations_run_once(schema):
    schema("t_once", ["CREATE TABLE t_once (x INTEGER); INSERT INTO t_once VALUES (1);"])
    assert store.query("SELECT x FROM t_once") == [{"x": 1}]
    for _ in range(3):  # new connections and "new processes" must not apply it again
        store.reset_connections()
        store._migrated.clear()
        store.execute("SELECT 1")
    assert store.query("SELECT x FROM t_once") == [{"x": 1}]
    assert store.query_one("SELECT version FROM schema_versions WHERE component='t_once'")["version"] == 1


def test_appended_migration_upgrades_an_existing_database_without_losing_rows(schema):
    first = ["CREATE TABLE t_notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);"]
    schema("t_notes", first)
    with store.transaction() as conn:
        conn.executemany("INSERT INTO t_notes (body) VALUES (?)", [(f"note {i}",) for i in range(100)])
    store.reset_connections()
    # a later release appends a migration: a new column with a default, and an index
    schema("t_notes", first + ["ALTER TABLE t_notes ADD COLUMN tag TEXT DEFAULT 'old';"
                               "CREATE INDEX t_notes_tag ON t_notes(tag);"])
    rows = store.query("SELECT id, body, tag FROM t_notes ORDER BY id")
    assert len(rows) == 100 and rows[0] == {"id": 1, "body": "note 0", "tag": "old"}
    assert store.query_one("SELECT version FROM schema_versions WHERE component='t_notes'")["version"] == 2
    store.execute("INSERT INTO t_notes (body, tag) VALUES ('new', 'fresh')")
    assert store.query_one("SELECT COUNT(*) AS n FROM t_notes")["n"] == 101


def test_failed_migration_rolls_back_and_keeps_the_version(schema):
    schema("t_bad", ["CREATE TABLE t_bad (x INTEGER);"])
    store.execute("INSERT INTO t_bad VALUES (5)")
    schema("t_bad", ["CREATE TABLE t_bad (x INTEGER);", "CREATE TABLE t_bad2 (y INTEGER); THIS IS NOT SQL;"])
    with pytest.raises(Exception):
        store.execute("SELECT 1")
    store._migrated.clear()
    schema("t_bad", ["CREATE TABLE t_bad (x INTEGER);"])
    assert store.query("SELECT x FROM t_bad") == [{"x": 5}]
    assert store.query("SELECT name FROM sqlite_master WHERE name='t_bad2'") == []
    assert store.query_one("SELECT version FROM schema_versions WHERE component='t_bad'")["version"] == 1


def test_transaction_rolls_back_on_error(schema):
    schema("t_counter", COUNTER_SCHEMA)
    with pytest.raises(RuntimeError):
        with store.transaction() as conn:
            conn.execute("UPDATE t_counter SET value=99")
            raise RuntimeError("boom")
    assert store.query_one("SELECT value FROM t_counter")["value"] == 0


def test_concurrent_writers_threads_and_processes_lose_nothing(schema, lab_home):
    schema("t_counter", COUNTER_SCHEMA)
    store.execute("SELECT 1")  # create the tables before the writers start
    per_writer, n_threads, n_procs = 150, 4, 3
    env = dict(os.environ, LLM_LAB_HOME=str(lab_home), PYTHONPATH=ROOT)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, f"proc{i}", str(per_writer)], env=env, cwd=ROOT,
                              stderr=subprocess.PIPE) for i in range(n_procs)]
    errors = []

    def thread_writer(name):
        try:
            for i in range(per_writer):
                with store.transaction() as conn:
                    value = conn.execute("SELECT value FROM t_counter WHERE name='hits'").fetchone()[0]
                    conn.execute("UPDATE t_counter SET value=? WHERE name='hits'", (value + 1,))
                    conn.execute("INSERT INTO t_rows VALUES (?, ?)", (name, i))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            store.reset_connections()

    threads = [threading.Thread(target=thread_writer, args=(f"thread{i}",)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    assert not errors, errors
    total = per_writer * (n_threads + n_procs)
    assert store.query_one("SELECT value FROM t_counter")["value"] == total
    assert store.query_one("SELECT COUNT(*) AS n FROM t_rows")["n"] == total
    per = store.query("SELECT writer, COUNT(DISTINCT n) AS n FROM t_rows GROUP BY writer")
    assert sorted(r["n"] for r in per) == [per_writer] * (n_threads + n_procs)
    assert store.query_one("PRAGMA integrity_check")["integrity_check"] == "ok"


# ---------------------------------------------------------------- atomic files
def test_atomic_dir_appears_whole(tmp_path):
    final = tmp_path / "out" / "model"
    with store.atomic_dir(final) as tmp:
        (tmp / "a.txt").write_text("a")
        assert not final.exists()  # nothing visible while writing
        (tmp / "b.txt").write_text("b")
    assert sorted(p.name for p in final.iterdir()) == ["a.txt", "b.txt"]
    assert [p.name for p in final.parent.iterdir()] == ["model"]


def test_atomic_dir_leaves_nothing_on_failure_and_keeps_the_old_folder(tmp_path):
    final = tmp_path / "model"
    with pytest.raises(ValueError):
        with store.atomic_dir(final) as tmp:
            (tmp / "half.bin").write_bytes(b"x" * 1000)
            raise ValueError("crash while writing")
    assert list(tmp_path.iterdir()) == []
    with store.atomic_dir(final) as tmp:
        (tmp / "v1.txt").write_text("1")
    with pytest.raises(KeyboardInterrupt):
        with store.atomic_dir(final) as tmp:
            (tmp / "v2.txt").write_text("2")
            raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    assert [p.name for p in final.iterdir()] == ["v1.txt"]
    with store.atomic_dir(final) as tmp:  # a successful rewrite replaces it whole
        (tmp / "v3.txt").write_text("3")
    assert [p.name for p in final.iterdir()] == ["v3.txt"]


def test_atomic_write_bytes(tmp_path, monkeypatch):
    target = tmp_path / "sub" / "file.json"
    store.atomic_write_bytes(target, b"first")
    assert target.read_bytes() == b"first"

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        store.atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"first"
    assert [p.name for p in target.parent.iterdir()] == ["file.json"]  # no temporary file left


# ---------------------------------------------------------------- reads do not write
def test_a_read_only_command_takes_no_write_lock(lab_home):
    """Migrations already applied: connecting only reads, so a list works while another process holds the
    write lock (and on a full disk). It used to open a write transaction per component at every start."""
    import sqlite3
    import time

    from llm_lab import data, jobs
    from llm_lab.access import LOCAL

    data.list_datasets(LOCAL)  # the store is created and migrated, the demos imported
    store.reset_connections()
    store._migrated.clear()  # as a fresh process would
    other = sqlite3.connect(str(store.db_path()), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
    try:
        conn = store.connect()
        conn.execute("PRAGMA busy_timeout=1000")  # a write would wait 1 s, then fail "database is locked"
        started = time.monotonic()
        assert jobs.list_jobs(LOCAL) == []
        assert "demo-docs" in [d.name for d in data.list_datasets(LOCAL)]
        assert time.monotonic() - started < 1.0
    finally:
        other.execute("ROLLBACK")
        other.close()


# ---------------------------------------------------------------- staging folders of killed saves
HOLDER = textwrap.dedent("""
    import os, signal, sys
    from llm_lab import store
    with store.staged_dir(sys.argv[1], sys.argv[2]) as tmp:
        (tmp / "half.bin").write_bytes(b"x" * 1000)
        print(tmp, flush=True)
        if sys.argv[3] == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        sys.stdin.read()  # holds it until the test closes stdin
""")


def test_staging_folders_of_killed_saves_are_swept_and_live_ones_kept(tmp_path):
    parent = tmp_path / "datasets"
    live = subprocess.Popen([sys.executable, "-c", HOLDER, str(parent), "live", "hold"], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    live_dir = live.stdout.readline().strip()
    killed = subprocess.run([sys.executable, "-c", HOLDER, str(parent), "killed", "kill"], cwd=ROOT,
                            capture_output=True, text=True)
    killed_dir = killed.stdout.strip()
    assert killed.returncode == -9 and os.path.basename(killed_dir).startswith(".killed.partial-")
    assert os.path.isdir(killed_dir) and os.path.isdir(live_dir)

    assert store.sweep_partials(parent) == []  # both younger than PARTIAL_GRACE_S: left alone
    assert [p.name for p in store.sweep_partials(parent, grace_s=0)] == [os.path.basename(killed_dir)]
    assert not os.path.exists(killed_dir) and os.path.isdir(live_dir)  # a live save holds its folder

    live.kill()
    live.wait()
    assert os.path.isdir(live_dir)  # killed too: nothing removed it
    assert [p.name for p in store.sweep_partials(parent, grace_s=0)] == [os.path.basename(live_dir)]
    assert list(parent.iterdir()) == []



def test_connections_opening_a_fresh_database_together_all_get_in(tmp_path):
    """torchrun's ranks open a new LLM_LAB_HOME together. Two connections switching a fresh database to WAL at
    once deadlock, and SQLite answers one "database is locked" at once, without waiting (CI saw it on torchrun;
    with the bare PRAGMA about a quarter of these trials failed)."""
    for trial in range(100):
        path = str(tmp_path / f"fresh{trial}.db")
        barrier, errors = threading.Barrier(6), []

        def opener():
            barrier.wait()
            try:
                store._open(path).close()
            except Exception as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=opener) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, f"trial {trial}: {errors}"
