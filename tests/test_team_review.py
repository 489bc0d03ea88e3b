"""Regression tests from a hostile review of issue 22's store and queue (PostgreSQL, Redis, team workers).

Each test pins one bug the review found, against the real engines (tests/servers.py): text ordered by the
server's locale instead of byte order as on SQLite; an unreachable database reported after 30 s as a full pool;
a failed wait for the write lock leaving the thread's connection inside an open transaction; a worker paused
past the timeout writing its stale progress, metrics and logs into the run that replaced it; Redis being down
shown as a traceback and leaving a job queued that no queue holds; a GPU worker starving CPU jobs behind a GPU
job too big for it; cancel and resume deciding on a status read before their transaction; `db check` passing a
database that a newer LLM Lab migrated with a component this one does not know; a pool inherited across fork;
a queued job that no live worker takes saying nothing; a team job's memory judged on the dashboard's machine;
no keepalives, so a vanished machine could hold the one write lock for Linux's two hours.
"""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from llm_lab import jobs, store
from llm_lab.access import LOCAL
from llm_lab.errors import JobError
from tests.conftest import wait_for
from tests.servers import postgres_database, postgres_server, redis_server  # noqa: F401  fixtures
from tests.test_workers import ROOT, start_worker, status, team  # noqa: F401  (team: the fixture)

COUNT = "llm_lab.jobs:count"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------- the store
@pytest.fixture
def icu_database(postgres_server, monkeypatch):  # noqa: F811
    """A database whose default collation is ICU's en-US: what a stock PostgreSQL (the docker image) gives."""
    name = "icu_" + os.urandom(6).hex()
    with postgres_server.admin() as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'")
    monkeypatch.setenv("LLM_LAB_DATABASE_URL", postgres_server.url(name))
    store.close_pools()
    try:
        yield
    finally:
        store.close_pools()
        postgres_server.drop_database(name)


@pytest.mark.parametrize("where", ["sqlite", "postgres-en-US"])
def test_text_orders_and_compares_by_bytes_on_both_engines(where, request, monkeypatch):
    """SQLite orders and compares TEXT byte by byte; PostgreSQL by the database's locale unless the column says
    otherwise ('alpha' < 'B' in en-US, 'B' < 'alpha' in bytes). Lists of names (users, workspaces, workers) and
    range conditions must come out the same on both."""
    if where == "sqlite":
        monkeypatch.delenv("LLM_LAB_DATABASE_URL", raising=False)
    else:
        request.getfixturevalue("icu_database")
    names = ["beta", "Zed", "_b", "alpha", "B", "a-c", "ab"]
    for name in names:
        store.execute("INSERT INTO settings VALUES (?, ?, ?, ?)", (name, "v", 1.0, None))
    assert [r["name"] for r in store.query("SELECT name FROM settings ORDER BY name")] == sorted(names)
    assert [r["name"] for r in store.query("SELECT name FROM settings WHERE name < ? ORDER BY name", ("a",))] == \
        sorted(n for n in names if n < "a")


def test_an_unreachable_database_fails_fast_and_says_so(monkeypatch, lab_home):
    """Nothing listens at the address: the first query fails within seconds, naming LLM_LAB_DATABASE_URL and
    the address without its password -- not after 30 s as "all 20 connections are in use"."""
    monkeypatch.setenv("LLM_LAB_DATABASE_URL", f"postgresql://lab:s3cret@127.0.0.1:{_free_port()}/lab")
    store.close_pools()
    started = time.monotonic()
    with pytest.raises(store.OperationalError) as caught:
        store.query("SELECT 1")
    took = time.monotonic() - started
    message = str(caught.value)
    assert took < 15, took
    assert "LLM_LAB_DATABASE_URL" in message and "127.0.0.1" in message and "Cannot reach" in message, message
    assert "s3cret" not in message and "in use" not in message, message
    store.close_pools()


def test_a_failed_wait_for_the_write_lock_leaves_no_transaction_open(postgres_server, monkeypatch):  # noqa: F811
    """An operator's lock_timeout (or statement_timeout) ends a write transaction's wait for the advisory lock.
    That transaction must be rolled back: left open, every later `transaction()` of the thread would join it
    (without the lock) and nothing it wrote would ever commit."""
    with postgres_database(postgres_server) as url:
        monkeypatch.setenv("LLM_LAB_DATABASE_URL", url + "?options=-c%20lock_timeout%3D300")
        store.close_pools()
        try:
            store.query("SELECT 1 FROM settings")  # migrated before the lock is taken away
            import psycopg

            with psycopg.connect(url, autocommit=True) as holder:  # another machine's long save
                holder.execute("SELECT pg_advisory_lock(%s)", (store.WRITE_LOCK_KEY,))
                with pytest.raises(store.OperationalError):
                    with store.transaction() as conn:
                        conn.execute("INSERT INTO settings VALUES ('lost', '1', 1, NULL)")
                assert not store.connect().in_transaction
                holder.execute("SELECT pg_advisory_unlock(%s)", (store.WRITE_LOCK_KEY,))
                with store.transaction() as conn:
                    conn.execute("INSERT INTO settings VALUES ('kept', '1', 1, NULL)")
                seen = holder.execute("SELECT name FROM settings WHERE name IN ('lost', 'kept')").fetchall()
            assert seen == [("kept",)]  # committed: another connection sees it
        finally:
            store.close_pools()


def test_a_forked_child_uses_its_own_connections(backend):
    """A process forked after using the store (a DataLoader worker, multiprocessing) gets its own connection;
    the parent's keeps working after the child used and left the store."""
    store.execute("INSERT INTO settings VALUES ('before', '1', 1, NULL)")
    pid = os.fork()
    if pid == 0:  # the child: its own connection, then gone without cleaning up
        code = 1
        try:
            store.execute("INSERT INTO settings VALUES ('child', '1', 1, NULL)")
            code = 0
        finally:
            os._exit(code)
    _, code = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(code) == 0
    store.execute("INSERT INTO settings VALUES ('after', '1', 1, NULL)")
    assert [r["name"] for r in store.query("SELECT name FROM settings WHERE value='1' ORDER BY name")] == \
        ["after", "before", "child"]


def test_db_check_flags_a_component_only_a_newer_lab_knows(backend, capsys):
    from llm_lab import cli

    assert cli.main(["db", "migrate"]) == 0
    store.execute("INSERT INTO schema_versions VALUES (?, ?)", ("from_the_future", 2))
    capsys.readouterr()
    assert cli.main(["db", "check"]) == 1
    assert "newer LLM Lab (from_the_future)" in capsys.readouterr().out


# ---------------------------------------------------------------- jobs: status read inside the transaction
def _claimed_after_the_first_read(monkeypatch, job_id: str, before=None) -> None:
    """The first `jobs.get` (a command reading the job before its transaction) returns what it read, and then
    a worker claims the job (after `before`, e.g. another user's resume): two machines racing, placed
    deterministically between the read and the transaction."""
    real = jobs.get

    def get(actor, jid):
        job = real(actor, jid)
        monkeypatch.setattr(jobs, "get", real)
        if before:
            before()
        assert jobs._claim(job_id) is not None
        return job
    monkeypatch.setattr(jobs, "get", get)


def test_cancel_decides_on_the_status_inside_its_transaction(monkeypatch):
    monkeypatch.setenv("LLM_LAB_JOBS_INLINE", "0")
    monkeypatch.setattr(jobs, "ensure_worker", lambda: None)  # the claim below plays the worker
    job_id = jobs.submit(LOCAL, COUNT, {"steps": 3, "delay": 0}, "raced")
    _claimed_after_the_first_read(monkeypatch, job_id)
    jobs.cancel(LOCAL, job_id)
    row = store.query_one("SELECT status, cancel_requested FROM jobs WHERE id=?", (job_id,))
    assert row == {"status": "running", "cancel_requested": 1}  # asked to stop, not marked cancelled while it runs


def test_resume_never_requeues_a_job_that_runs_meanwhile(monkeypatch):
    monkeypatch.setenv("LLM_LAB_JOBS_INLINE", "0")
    monkeypatch.setattr(jobs, "ensure_worker", lambda: None)
    job_id = jobs.submit(LOCAL, COUNT, {"steps": 3, "delay": 0}, "resumed twice")
    store.execute("UPDATE jobs SET status='interrupted' WHERE id=?", (job_id,))
    # another user resumed it and a worker took it, between this resume's read and its transaction
    _claimed_after_the_first_read(
        monkeypatch, job_id, before=lambda: store.execute("UPDATE jobs SET status='queued' WHERE id=?", (job_id,)))
    with pytest.raises(JobError, match="is running; only"):
        jobs.resume(LOCAL, job_id)
    assert store.query_one("SELECT status FROM jobs WHERE id=?", (job_id,))["status"] == "running"


# ---------------------------------------------------------------- team workers
def test_a_paused_worker_that_continues_writes_nothing_into_the_resumed_run(team):  # noqa: F811
    """Worker A is frozen (SIGSTOP) mid-job past the timeout; B resumes the job from its checkpoint and is slow
    to report. When A continues it must stop without touching the job: no progress, no metric, no log line, no
    checkpoint of its own over B's."""
    a = start_worker(team)
    job_id = jobs.submit(LOCAL, COUNT, {"steps": 400, "delay": 0.05}, "paused")
    wait_for(lambda: jobs.get(LOCAL, job_id)["done"] >= 3)
    a["proc"].send_signal(signal.SIGSTOP)
    wait_for(lambda: status(job_id) == "interrupted", timeout=60)
    b = start_worker(team)
    store.execute("UPDATE jobs SET params=? WHERE id=?", ('{"steps": 400, "delay": 600}', job_id))  # B: slow
    jobs.resume(LOCAL, job_id)
    wait_for(lambda: jobs.get(LOCAL, job_id)["worker_id"] == b["id"] and
             any(line.startswith("Resuming") for line in jobs.logs(LOCAL, job_id)))
    checkpoint = jobs.paths.home() / "jobs" / job_id / "checkpoint.txt"
    before = (jobs.get(LOCAL, job_id)["message"], len(jobs.metrics(LOCAL, job_id)), jobs.logs(LOCAL, job_id),
              checkpoint.read_text())
    a["proc"].send_signal(signal.SIGCONT)
    wait_for(lambda: store.query_one("SELECT status, current_job FROM workers WHERE id=?", (a["id"],))
             == {"status": "alive", "current_job": None}, timeout=60)
    job = jobs.get(LOCAL, job_id)
    after = (job["message"], len(jobs.metrics(LOCAL, job_id)), jobs.logs(LOCAL, job_id), checkpoint.read_text())
    assert (job["status"], job["worker_id"]) == ("running", b["id"])
    assert after == before
    jobs.cancel(LOCAL, job_id)


def test_redis_down_is_a_clear_message_and_leaves_no_job_stranded(monkeypatch, lab_home):
    """With nothing at LLM_LAB_QUEUE_URL: submitting says the queue cannot be reached (naming the variable) and
    leaves the job failed, so it can be resumed once Redis is back, not queued forever in no queue; a worker
    started then exits 1 with the same message and no traceback."""
    url = f"redis://127.0.0.1:{_free_port()}/0"
    monkeypatch.setenv("LLM_LAB_QUEUE_URL", url)
    monkeypatch.setenv("LLM_LAB_JOBS_INLINE", "0")
    monkeypatch.delenv("LLM_LAB_DATABASE_URL", raising=False)
    with pytest.raises(JobError, match="LLM_LAB_QUEUE_URL") as caught:
        jobs.submit(LOCAL, COUNT, {"steps": 1}, "no queue")
    assert url in str(caught.value) and "Resume" in str(caught.value)
    (job,) = jobs.list_jobs(LOCAL)
    assert job["status"] == "failed" and "LLM_LAB_QUEUE_URL" in job["message"]
    out = subprocess.run([sys.executable, "-m", "llm_lab", "worker"], cwd=ROOT, env=dict(os.environ),
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "LLM_LAB_QUEUE_URL" in out.stderr and "Traceback" not in out.stdout + out.stderr, out.stderr
    assert not store.query("SELECT id FROM workers")  # it did not stay listed as a worker


def test_a_gpu_worker_takes_cpu_jobs_while_a_gpu_job_too_big_for_it_waits(redis_server, monkeypatch):  # noqa: F811
    """A GPU worker (no --queue) takes GPU jobs first: one it cannot hold goes back to its queue, and the worker
    must then look at the CPU queue too, not pop the same GPU job again and again. (No GPU here: the worker's
    GPU memory is given, the rest is the real queue and store.)"""
    redis_server.flush()
    monkeypatch.setenv("LLM_LAB_QUEUE_URL", redis_server.url())
    monkeypatch.setenv("LLM_LAB_JOBS_INLINE", "0")
    monkeypatch.delenv("LLM_LAB_DATABASE_URL", raising=False)
    monkeypatch.setattr(jobs, "_gpu_memory_gb", lambda gpus: 8.0)
    monkeypatch.setattr(jobs, "_worker", None)
    big = jobs.submit(LOCAL, COUNT, {"steps": 2, "delay": 0}, "too big", resources=jobs.Resources(True, 40.0))
    small = jobs.submit(LOCAL, COUNT, {"steps": 1, "delay": 0}, "cpu", resources=jobs.Resources(False))
    worker = jobs._register("any", "0")
    hueys = [jobs._huey(q)[0] for q in jobs._serves(worker["queue"], True)]
    try:
        for _ in range(4):
            jobs._serve_once(hueys)
        assert status(small) == "succeeded"
        job = jobs.get(LOCAL, big)
        assert job["status"] == "queued" and "at least 40.0 GB" in job["message"]
    finally:
        store.execute("DELETE FROM workers WHERE id=?", (worker["id"],))


def test_memory_for_a_team_job_is_judged_against_the_workers(redis_server, monkeypatch):  # noqa: F811
    """The dashboard that submits a training run may have no GPU at all: what the run may use is the live GPU
    workers' memory (the largest), not the dashboard's; unknown (no refusal, the job waits) while none is up."""
    redis_server.flush()
    monkeypatch.setenv("LLM_LAB_QUEUE_URL", redis_server.url())
    monkeypatch.delenv("LLM_LAB_DATABASE_URL", raising=False)
    assert jobs.runs_elsewhere()
    assert (jobs.worker_device("auto"), jobs.worker_memory_bytes("cuda")) == ("cpu", None)
    monkeypatch.setattr(jobs, "_worker", None)
    rows = []
    for gb in (24.0, 80.0):
        monkeypatch.setattr(jobs, "_gpu_memory_gb", lambda gpus, gb=gb: gb)  # no GPU here: the worker's is given
        rows.append(jobs._register("gpu", "0"))
    try:
        assert jobs.worker_device("auto") == "cuda" and jobs.worker_device("cpu") == "cpu"
        assert jobs.worker_memory_bytes("cuda") == 80 * 2**30 and jobs.worker_memory_bytes("cpu") is None
        assert not jobs.runs_elsewhere()  # this process is a worker now (the last registered): its own device
    finally:
        for row in rows:
            store.execute("DELETE FROM workers WHERE id=?", (row["id"],))


def test_a_queued_job_that_no_live_worker_takes_says_so(redis_server, monkeypatch):  # noqa: F811
    """No worker serves the job's queue (none at all, or only CPU workers for a GPU job): the job says what it
    waits for and how to start such a worker, instead of waiting without a word."""
    redis_server.flush()
    monkeypatch.setenv("LLM_LAB_QUEUE_URL", redis_server.url())
    monkeypatch.setenv("LLM_LAB_JOBS_INLINE", "0")
    monkeypatch.delenv("LLM_LAB_DATABASE_URL", raising=False)
    gpu_job = jobs.submit(LOCAL, COUNT, {"steps": 1}, "gpu", resources=jobs.Resources(gpu=True, gpu_memory_gb=1))
    cpu_job = jobs.submit(LOCAL, COUNT, {"steps": 2}, "cpu", resources=jobs.Resources(gpu=False))
    assert "No live worker takes GPU jobs" in jobs.get(LOCAL, gpu_job)["message"]
    assert "No live worker takes CPU jobs" in jobs.get(LOCAL, cpu_job)["message"]
    monkeypatch.setattr(jobs, "_worker", None)
    worker = jobs._register("any", "")  # a CPU worker comes up (registered; it takes nothing in this test)
    try:
        jobs.submit(LOCAL, COUNT, {"steps": 3}, "cpu 2", resources=jobs.Resources(gpu=False))
        assert "No live worker takes GPU jobs" in jobs.get(LOCAL, gpu_job)["message"]
        assert [j["message"] for j in jobs.list_jobs(LOCAL) if j["title"] == "cpu 2"] == [""]
    finally:
        store.execute("DELETE FROM workers WHERE id=?", (worker["id"],))


def test_a_vanished_machine_cannot_hold_the_write_lock_for_hours(postgres_server, monkeypatch):  # noqa: F811
    """Every pooled session has TCP keepalives on both ends (a minute, not Linux's two hours): a machine that
    dies inside a write transaction is found dead and its session ended, releasing the one write lock."""
    with postgres_database(postgres_server) as url:
        monkeypatch.setenv("LLM_LAB_DATABASE_URL", url)
        store.close_pools()
        try:
            shown = {k: store.query_one(f"SHOW tcp_keepalives_{k}")[f"tcp_keepalives_{k}"] for k in store.KEEPALIVE}
            assert shown == {k: str(v) for k, v in store.KEEPALIVE.items()}
            assert store.connect().raw.info.get_parameters()["keepalives_idle"] == str(store.KEEPALIVE["idle"])
        finally:
            store.close_pools()


def test_a_dashboard_without_a_gpu_plans_a_training_run_for_the_gpu_workers(redis_server, monkeypatch):  # noqa: F811
    """A `cuda` run planned on a dashboard that has no GPU: judged against the live GPU workers' memory (a big run
    refused by their size, a small one accepted), with the time said unknown, not a crash probing a GPU that is
    not here; with no GPU worker up there is nothing to refuse against, and the plan says so."""
    import torch

    from llm_lab import train
    from llm_lab.train import TrainConfig

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the test is about a dashboard without one")
    redis_server.flush()
    monkeypatch.setenv("LLM_LAB_QUEUE_URL", redis_server.url())
    monkeypatch.delenv("LLM_LAB_DATABASE_URL", raising=False)
    big = TrainConfig(task="pretrain", preset="1M", batch_size=512, max_steps=5, device="cuda")
    small = TrainConfig(task="pretrain", preset="1M", batch_size=2, max_steps=5, device="cuda")
    alone = train.estimate(LOCAL, big)  # no worker up yet
    assert alone["device"] == "cuda" and alone["refusal"] is None and alone["seconds"] is None
    assert "time unknown" in alone["time_basis"]
    need_gb = alone["memory_mb"]["total"] / 1024
    assert 1 < need_gb < 70, need_gb  # between the two workers' sizes below
    monkeypatch.setattr(jobs, "_worker", None)
    monkeypatch.setattr(jobs, "_gpu_memory_gb", lambda gpus: 1.0)  # no GPU here: the worker's size is given
    worker = jobs._register("gpu", "0")
    monkeypatch.setattr(jobs, "_worker", None)  # this process stays the dashboard, not the worker
    try:
        assert jobs.fleet() == (("0", 1.0),)
        refused = train.estimate(LOCAL, big)
        assert refused["device_memory_mb"] == pytest.approx(1024) and "cannot start" in refused["refusal"]
        assert train.estimate(LOCAL, small)["refusal"] is None
        assert "time unknown" in train.resources.describe(refused)
    finally:
        store.execute("DELETE FROM workers WHERE id=?", (worker["id"],))
