"""Job lifecycle: inline runs, and a real worker process that is cancelled, killed and resumed."""
import os
import signal

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
