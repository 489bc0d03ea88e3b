"""The team path: a private redis-server as the queue, real worker processes, the store on SQLite and on a
private PostgreSQL. Two workers take jobs at once (each job runs once); a worker killed mid-job leaves it
interrupted after the heartbeat timeout and the other worker resumes it from its checkpoint; a job cancelled
from another process stops; a CPU worker never takes a GPU job; a worker that was paused past the timeout
never overwrites the job's new run.

Timings are short here (heartbeat 0.2 s, timeout 1.5 s: LLM_LAB_HEARTBEAT_S / LLM_LAB_WORKER_TIMEOUT_S); every
wait polls a condition with a deadline (`wait_for`), none sleeps against a timer."""
import os
import signal
import subprocess
import sys

import pytest

from llm_lab import jobs, store
from llm_lab.access import LOCAL
from llm_lab.errors import JobError
from tests.conftest import wait_for
from tests.servers import postgres_database, postgres_server, redis_server  # noqa: F401  fixtures

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COUNT = "llm_lab.jobs:count"  # the demo job: counts, checkpointing each step in its job folder


@pytest.fixture(params=["sqlite", "postgres"])
def team(request, redis_server, monkeypatch):  # noqa: F811
    """The team configuration on this test's LLM_LAB_HOME: Redis queue, short heartbeats, real workers;
    the store on SQLite, or on a fresh PostgreSQL database."""
    redis_server.flush()
    monkeypatch.setenv("LLM_LAB_QUEUE_URL", redis_server.url())
    monkeypatch.setenv("LLM_LAB_HEARTBEAT_S", "0.2")
    monkeypatch.setenv("LLM_LAB_WORKER_TIMEOUT_S", "1.5")
    monkeypatch.setenv("LLM_LAB_JOBS_INLINE", "0")
    workers: list[subprocess.Popen] = []
    if request.param == "postgres":
        pg = request.getfixturevalue("postgres_server")
        with postgres_database(pg) as url:
            monkeypatch.setenv("LLM_LAB_DATABASE_URL", url)
            store.reset_connections()
            yield workers
            _stop(workers)
            store.reset_connections()
    else:
        monkeypatch.delenv("LLM_LAB_DATABASE_URL", raising=False)
        yield workers
        _stop(workers)


def _stop(workers: list[subprocess.Popen]) -> None:
    for proc in workers:  # only the workers this test started, by their own pid
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
        proc.wait(timeout=30)


def start_worker(workers: list, *args: str) -> dict:
    """Start `python -m llm_lab worker ARGS` and wait until it has registered; returns its workers row."""
    proc = subprocess.Popen([sys.executable, "-m", "llm_lab", "worker", *args], cwd=ROOT, env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    workers.append(proc)
    row = wait_for(lambda: store.query_one("SELECT * FROM workers WHERE pid=? AND status=?", (proc.pid, "alive"))
                   or (proc.poll() is not None and pytest.fail(f"worker exited: {proc.stdout.read()}")), timeout=120)
    return dict(row, proc=proc)


def status(job_id: str) -> str:
    return jobs.get(LOCAL, job_id)["status"]


def test_two_workers_take_jobs_at_once_and_each_runs_once(team):
    a, b = start_worker(team), start_worker(team)
    # delays differ a little: identical jobs would be refused as duplicates of one another
    ids = [jobs.submit(LOCAL, COUNT, {"steps": 4, "delay": 0.1 + i / 1000}, f"job {i}") for i in range(6)]
    jobs._enqueue(ids[0])  # the same id queued twice: the store's claim still runs it once
    try:
        done = wait_for(lambda: all(status(i) == "succeeded" for i in ids) and [jobs.get(LOCAL, i) for i in ids],
                        timeout=60)
    except AssertionError:
        raise AssertionError([(status(i), jobs.get(LOCAL, i)["message"]) for i in ids] + [
            p.stdout.read() if p.poll() is not None else "alive" for p in team])
    assert [j["attempts"] for j in done] == [1] * 6
    assert [j["result"] for j in done] == [{"counted": 4, "started_at_step": 0}] * 6
    for job in done:  # one run each: one "Starting" line, curves 1..4 once
        assert sum(line.startswith("Starting") for line in jobs.logs(LOCAL, job["id"])) == 1
        assert [m["value"] for m in jobs.metrics(LOCAL, job["id"])] == [1, 2, 3, 4]
    by = {j["worker_id"] for j in done}
    assert by == {a["id"], b["id"]}  # both took jobs
    spans = {w: [(j["started_at"], j["finished_at"]) for j in done if j["worker_id"] == w] for w in by}
    assert any(s1 < f2 and s2 < f1 for s1, f1 in spans[a["id"]] for s2, f2 in spans[b["id"]])  # at once
    overview = jobs.workers_overview(LOCAL)
    assert overview["team"] and {w["id"] for w in overview["workers"]} == {a["id"], b["id"]}
    assert all(w["status"] == "alive" and w["current_job"] is None for w in overview["workers"])


def test_a_killed_worker_leaves_its_job_interrupted_and_the_other_resumes_it_from_its_checkpoint(team):
    a = start_worker(team)
    job_id = jobs.submit(LOCAL, COUNT, {"steps": 400, "delay": 0.05}, "long")
    wait_for(lambda: jobs.get(LOCAL, job_id)["done"] >= 5)
    assert jobs.get(LOCAL, job_id)["worker_id"] == a["id"]
    running = jobs.workers_overview(LOCAL)["workers"]
    assert [(w["id"], w["current_job"], w["job_title"]) for w in running] == [(a["id"], job_id, "long")]
    b = start_worker(team)
    a["proc"].kill()  # SIGKILL: no goodbye, no final write; only its silence tells
    a["proc"].wait()
    job = wait_for(lambda: (j := jobs.get(LOCAL, job_id))["status"] == "interrupted" and j, timeout=60)
    assert "stopped beating its heart" in job["message"]
    assert store.query_one("SELECT status FROM workers WHERE id=?", (a["id"],))["status"] == "lost"
    reached = int((jobs.paths.home() / "jobs" / job_id / "checkpoint.txt").read_text())
    assert 5 <= reached < 400
    store.execute("UPDATE jobs SET params=? WHERE id=?", (f'{{"steps": {reached + 5}, "delay": 0}}', job_id))
    jobs.resume(LOCAL, job_id)
    job = wait_for(lambda: (j := jobs.get(LOCAL, job_id))["status"] == "succeeded" and j, timeout=60)
    assert job["worker_id"] == b["id"] and job["attempts"] == 2
    assert job["result"] == {"counted": reached + 5, "started_at_step": reached}
    assert [m["value"] for m in jobs.metrics(LOCAL, job_id)][-5:] == [reached + k for k in range(1, 6)]


def test_a_job_cancelled_from_another_process_stops(team):
    start_worker(team)
    job_id = jobs.submit(LOCAL, COUNT, {"steps": 400, "delay": 0.05}, "to cancel")
    wait_for(lambda: jobs.get(LOCAL, job_id)["done"] >= 3)
    other = subprocess.run([sys.executable, "-m", "llm_lab", "jobs", "cancel", job_id], cwd=ROOT,
                           env=dict(os.environ), capture_output=True, text=True, timeout=120, check=False)
    assert other.returncode == 0, other.stdout + other.stderr
    job = wait_for(lambda: (j := jobs.get(LOCAL, job_id))["status"] == "cancelled" and j, timeout=60)
    assert job["done"] < 400 and job["message"] == "Cancelled by the user."


def test_a_cpu_worker_never_takes_a_gpu_job(team):
    gpu_job = jobs.submit(LOCAL, COUNT, {"steps": 1, "delay": 0}, "needs a GPU",
                          resources=jobs.Resources(gpu=True, gpu_memory_gb=2.0))
    cpu_job = jobs.submit(LOCAL, COUNT, {"steps": 3, "delay": 0}, "CPU is fine",
                          resources=jobs.Resources(gpu=False))
    start_worker(team)
    wait_for(lambda: status(cpu_job) == "succeeded")  # it came after the GPU job, yet ran: the GPU job was not taken
    job = jobs.get(LOCAL, gpu_job)
    assert (job["status"], job["queue"], job["needs_gpu"], job["gpu_memory_gb"]) == ("queued", "gpu", 1, 2.0)
    overview = jobs.workers_overview(LOCAL)
    assert overview["pending"] == {"gpu": 1, "cpu": 0}
    assert [q["id"] for q in overview["queue"]] == [gpu_job]
    # "either" goes to the CPU queue while no GPU worker is up
    either = jobs.submit(LOCAL, COUNT, {"steps": 2, "delay": 0}, "either", resources=jobs.Resources(gpu=None))
    assert wait_for(lambda: status(either) == "succeeded") and jobs.get(LOCAL, either)["queue"] == "cpu"


def test_a_worker_paused_past_the_timeout_does_not_overwrite_the_resumed_run(team):
    a = start_worker(team)
    job_id = jobs.submit(LOCAL, COUNT, {"steps": 400, "delay": 0.05}, "paused")
    wait_for(lambda: jobs.get(LOCAL, job_id)["done"] >= 3)
    a["proc"].send_signal(signal.SIGSTOP)  # a long GC pause, a frozen VM: silent, not dead
    wait_for(lambda: status(job_id) == "interrupted", timeout=60)
    b = start_worker(team)
    store.execute("UPDATE jobs SET params=? WHERE id=?", ('{"steps": 400, "delay": 0.05}', job_id))
    jobs.resume(LOCAL, job_id)
    wait_for(lambda: jobs.get(LOCAL, job_id)["worker_id"] == b["id"] and status(job_id) == "running")
    a["proc"].send_signal(signal.SIGCONT)  # it wakes up, finds the job taken, stops it and beats again
    wait_for(lambda: store.query_one("SELECT status, current_job FROM workers WHERE id=?", (a["id"],))
             == {"status": "alive", "current_job": None}, timeout=60)
    job = jobs.get(LOCAL, job_id)
    assert (job["status"], job["worker_id"]) == ("running", b["id"])  # B's run, untouched
    jobs.cancel(LOCAL, job_id)
    wait_for(lambda: status(job_id) == "cancelled")


def test_worker_options_and_settings_are_checked(team, monkeypatch):
    def worker(*args):
        return subprocess.run([sys.executable, "-m", "llm_lab", "worker", *args], cwd=ROOT, env=dict(os.environ),
                              capture_output=True, text=True, timeout=120, check=False)
    out = worker("--queue", "gpu")
    assert out.returncode != 0 and "--queue gpu needs GPUs" in out.stdout + out.stderr
    out = worker("--gpus", "zero")
    assert out.returncode != 0 and "GPU indices separated by commas" in out.stdout + out.stderr
    monkeypatch.setenv("LLM_LAB_WORKER_TIMEOUT_S", "0.3")
    with pytest.raises(JobError, match="at least three heartbeats"):
        jobs.worker_timeout_s()
    monkeypatch.setenv("LLM_LAB_QUEUE_URL", "http://localhost:6379")
    with pytest.raises(JobError, match="not a Redis address"):
        jobs.submit(LOCAL, COUNT, {"steps": 1}, "bad queue")
