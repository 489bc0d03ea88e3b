"""Job lifecycle: inline runs, and a real worker process that is cancelled, killed and resumed."""
import os
import signal
import subprocess
import sys

import pytest

from llm_lab.access import LOCAL
from llm_lab import jobs
from llm_lab.errors import JobError
from tests.conftest import wait_for


def test_inline_job_runs_to_success_and_records_curves():
    job_id = jobs.submit(LOCAL, "llm_lab.jobs:count", {"steps": 5, "delay": 0}, "count to 5")
    job = jobs.get(LOCAL, job_id)
    assert job["status"] == "succeeded"
    assert job["result"] == {"counted": 5, "started_at_step": 0}
    assert [m["value"] for m in jobs.metrics(LOCAL, job_id)] == [1, 2, 3, 4, 5]
    assert job["fraction"] == 1.0
    assert any("succeeded" in line for line in jobs.logs(LOCAL, job_id))


def test_failure_keeps_the_user_message():
    job_id = jobs.submit(LOCAL, "llm_lab.jobs:count", {"steps": 5, "delay": 0, "fail_at": 2}, "fails")
    job = jobs.get(LOCAL, job_id)
    assert job["status"] == "failed"
    assert job["error"] == "Failed on purpose at step 2."


def test_unknown_kind_is_refused_before_queueing():
    with pytest.raises(JobError, match="Unknown job kind"):
        jobs.submit(LOCAL, "llm_lab.nope:run", {}, "bad")
    for outside in ("os:system", "subprocess:run", "llm_lab.jobs:_resolve"):  # nothing but LLM Lab's own jobs
        with pytest.raises(JobError, match="LLM Lab's own functions"):
            jobs.submit(LOCAL, outside, {"args": "touch /tmp/pwned"}, "bad")
    assert jobs.list_jobs(LOCAL) == []


def test_resume_continues_from_checkpoint():
    job_id = jobs.submit(LOCAL, "llm_lab.jobs:count", {"steps": 6, "delay": 0, "fail_at": 3}, "resumable")
    assert jobs.get(LOCAL, job_id)["status"] == "failed"
    jobs.store.execute("UPDATE jobs SET params=? WHERE id=?", ('{"steps": 6, "delay": 0}', job_id))
    job = jobs.resume(LOCAL, job_id)
    assert job["status"] == "succeeded"
    assert job["result"] == {"counted": 6, "started_at_step": 3}


def test_real_worker_cancel_interrupt_and_resume(monkeypatch):
    monkeypatch.setenv("LLM_LAB_JOBS_INLINE", "0")
    first = jobs.submit(LOCAL, "llm_lab.jobs:count", {"steps": 200, "delay": 0.05}, "long")
    queued = jobs.submit(LOCAL, "llm_lab.jobs:count", {"steps": 3, "delay": 0}, "waits in the queue")
    assert jobs.worker_alive()
    wait_for(lambda: jobs.get(LOCAL, first)["done"] >= 3)
    assert jobs.get(LOCAL, queued)["status"] == "queued"  # one job at a time
    jobs.cancel(LOCAL, first)
    assert wait_for(lambda: jobs.get(LOCAL, first)["status"] == "cancelled")
    assert wait_for(lambda: jobs.get(LOCAL, queued)["status"] == "succeeded")

    third = jobs.submit(LOCAL, "llm_lab.jobs:count", {"steps": 200, "delay": 0.05}, "killed midway")
    wait_for(lambda: jobs.get(LOCAL, third)["done"] >= 5)
    os.kill(jobs.get(LOCAL, third)["worker_pid"], signal.SIGKILL)
    assert wait_for(lambda: jobs.get(LOCAL, third)["status"] == "interrupted")
    reached = int((jobs.paths.home() / "jobs" / third / "checkpoint.txt").read_text())
    jobs.store.execute("UPDATE jobs SET params=? WHERE id=?", ('{"steps": %d, "delay": 0}' % (reached + 5), third))
    jobs.resume(LOCAL, third)  # starts a new worker
    job = wait_for(lambda: (j := jobs.get(LOCAL, third))["status"] == "succeeded" and j)
    assert job["result"]["started_at_step"] == reached
    os.kill(job["worker_pid"], signal.SIGTERM)  # the worker this test started, not another test's


def test_reconcile_leaves_a_live_inline_job_alone_and_marks_a_dead_one():
    alive = jobs.submit(LOCAL, "llm_lab.jobs:count", {"steps": 1, "delay": 0}, "alive")
    dead = jobs.submit(LOCAL, "llm_lab.jobs:count", {"steps": 1, "delay": 0}, "dead")
    jobs.store.execute("UPDATE jobs SET status='running', worker_pid=? WHERE id=?", (os.getpid(), alive))
    jobs.store.execute("UPDATE jobs SET status='running', worker_pid=? WHERE id=?", (2**22 + 12345, dead))
    jobs.reconcile()
    assert jobs.get(LOCAL, alive)["status"] == "running"
    assert jobs.get(LOCAL, dead)["status"] == "interrupted"


# ---------------------------------------------------------------- a worker's lifetime
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _stand_in_dashboard():
    """A short-lived process the test controls, standing in for the dashboard: it ends when its stdin closes."""
    return subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)


def _worker(*args, **env):
    return subprocess.Popen([sys.executable, "-m", "llm_lab", "worker", *map(str, args)], cwd=ROOT,
                            env=dict(os.environ, **env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_a_worker_started_for_a_dashboard_stops_when_it_ends_and_its_job_is_interrupted(monkeypatch):
    monkeypatch.setenv("LLM_LAB_JOBS_INLINE", "0")
    monkeypatch.setattr(jobs, "_owner_pid", None, raising=False)  # this process is no dashboard
    dashboard = _stand_in_dashboard()
    worker = _worker("--parent-pid", dashboard.pid)
    try:
        assert wait_for(lambda: jobs.worker_info()["parent_pid"] == dashboard.pid, timeout=60)
        assert jobs.worker_info()["pid"] == worker.pid
        running = jobs.submit(LOCAL, "llm_lab.jobs:count", {"steps": 2000, "delay": 0.05}, "long")
        queued = jobs.submit(LOCAL, "llm_lab.jobs:count", {"steps": 3, "delay": 0}, "waits in the queue")
        wait_for(lambda: jobs.get(LOCAL, running)["done"] >= 3)

        dashboard.stdin.close()
        dashboard.wait()
        assert wait_for(lambda: worker.poll() is not None, timeout=60) is not None
        assert worker.returncode == 0
        job = jobs.get(LOCAL, running)
        assert job["status"] == "interrupted"
        assert job["message"].startswith("The dashboard that started the worker stopped")
        assert 3 <= job["done"] < 2000
        reached = int((jobs.paths.home() / "jobs" / running / "checkpoint.txt").read_text())
        assert jobs.get(LOCAL, queued)["status"] == "queued"  # left on the queue for the next worker
        assert "is gone: worker" in worker.stdout.read()

        # the next worker (by hand, tied to nothing) runs the queued job, and the interrupted one resumes
        jobs.store.execute("UPDATE jobs SET params=? WHERE id=?", ('{"steps": %d, "delay": 0}' % (reached + 4), running))
        jobs.resume(LOCAL, running)  # starts a worker from this process: no --parent-pid
        assert wait_for(lambda: jobs.get(LOCAL, queued)["status"] == "succeeded")
        done = wait_for(lambda: (j := jobs.get(LOCAL, running))["status"] == "succeeded" and j)
        assert done["result"] == {"counted": reached + 4, "started_at_step": reached}
        assert jobs.worker_info()["parent_pid"] is None
    finally:
        for proc in (dashboard, worker):
            if proc.poll() is None:
                proc.kill()
        info = jobs.worker_info()
        if info["alive"] and info["pid"] and info["pid"] != worker.pid:
            os.kill(info["pid"], signal.SIGTERM)  # the worker this test started, not another test's


def test_an_external_worker_keeps_running_when_the_process_that_started_it_ends(monkeypatch):
    monkeypatch.setenv("LLM_LAB_JOBS_INLINE", "0")
    monkeypatch.setenv("LLM_LAB_EXTERNAL_WORKER", "1")
    dashboard = _stand_in_dashboard()
    worker = _worker("--parent-pid", dashboard.pid)
    try:
        assert wait_for(lambda: jobs.worker_alive(), timeout=60)
        dashboard.stdin.close()
        dashboard.wait()
        job = jobs.submit(LOCAL, "llm_lab.jobs:count", {"steps": 3, "delay": 0}, "after the parent ended")
        assert wait_for(lambda: jobs.get(LOCAL, job)["status"] == "succeeded")
        assert worker.poll() is None and jobs.worker_alive()
        assert jobs.worker_info() == {"alive": True, "external": True, "pid": worker.pid, "parent_pid": None}
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        dashboard.kill()
    assert "--parent-pid ignored" in worker.stdout.read()


def test_the_dashboard_starts_its_worker_tied_to_itself(monkeypatch):
    monkeypatch.setenv("LLM_LAB_JOBS_INLINE", "0")
    monkeypatch.setattr(jobs, "_owner_pid", None)
    jobs.own_workers()  # what app.py does in the server process
    job = jobs.submit(LOCAL, "llm_lab.jobs:count", {"steps": 2, "delay": 0}, "from the dashboard")
    try:
        assert wait_for(lambda: jobs.get(LOCAL, job)["status"] == "succeeded")
        info = jobs.worker_info()
        assert info["alive"] and info["parent_pid"] == os.getpid()
        assert "--parent-pid" in open(f"/proc/{info['pid']}/cmdline").read().split("\0")
    finally:
        info = jobs.worker_info()
        if info["pid"]:
            os.kill(info["pid"], signal.SIGTERM)


def test_the_job_panel_says_where_a_job_runs_and_what_stopping_the_dashboard_does(monkeypatch):
    from ui import job_panel

    monkeypatch.setenv("LLM_LAB_JOBS_INLINE", "0")
    job = {"status": "running"}
    cases = [({"alive": True, "external": False, "pid": 42, "parent_pid": 7}, "it stops when the dashboard stops"),
             ({"alive": True, "external": False, "pid": 42, "parent_pid": None}, "or `kill 42`"),
             ({"alive": True, "external": True, "pid": 1, "parent_pid": None}, "keeps running when the dashboard stops"),
             ({"alive": False, "external": True, "pid": None, "parent_pid": None}, "until the operator starts it")]
    for info, words in cases:
        monkeypatch.setattr(jobs, "worker_info", lambda info=info: info)
        assert words in job_panel.worker_note(job)
    monkeypatch.setattr(jobs, "worker_info", lambda: cases[0][0])
    assert job_panel.worker_note(job).startswith("Runs in the background worker (process 42) that this dashboard "
                                                 "started")
    assert job_panel.worker_note({"status": "succeeded"}) is None


def test_a_job_queued_under_a_moved_functions_old_name_still_runs():
    from llm_lab import jobs as queue
    from llm_lab.bench import jobs as bench_jobs

    assert queue._resolve("llm_lab.bench.job:run") is bench_jobs.run  # bench/job.py became bench/jobs.py
    assert queue._resolve(bench_jobs.JOB_FN) is bench_jobs.run
