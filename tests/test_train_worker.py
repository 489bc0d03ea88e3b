"""Training through the real worker process: progress in the store, cancel, a killed worker, resume."""
import os
import signal

import pytest

from llm_lab.access import LOCAL
from llm_lab import jobs, paths, registry
from llm_lab.train import TrainConfig, runner, submit
from tests.conftest import wait_for

pytestmark = pytest.mark.slow


def config(name: str, steps: int) -> TrainConfig:
    return TrainConfig(task="pretrain", name=name, preset="1M", max_steps=steps, batch_size=8, learning_rate=2e-3,
                       logging_steps=2, save_steps=4, eval_fraction=0.02,
                       arch=dict(n_embd=64, n_layer=2, n_head=2, vocab_size=300, n_positions=64))


def test_worker_cancel_kill_and_resume_a_training_job(monkeypatch):
    monkeypatch.setenv("LLM_LAB_JOBS_INLINE", "0")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    # cancel: the callback checks between steps; the checkpoints stay for a resume
    first = submit(LOCAL, config("to-cancel", 2000))
    job = wait_for(lambda: (j := jobs.get(LOCAL, first))["done"] >= 3 and j)
    assert job["status"] == "running" and job["stats"]["step"] >= 3 and "loss" in job["message"]
    jobs.cancel(LOCAL, first)
    assert wait_for(lambda: jobs.get(LOCAL, first)["status"] == "cancelled")
    assert "to-cancel" not in [e.name for e in registry.list_models(LOCAL)]

    # kill the worker mid-run: the job turns interrupted, resumes from its last checkpoint and finishes
    second = submit(LOCAL, config("survivor", 60))
    wait_for(lambda: jobs.get(LOCAL, second)["done"] >= 10)
    os.kill(jobs.get(LOCAL, second)["worker_pid"], signal.SIGKILL)
    assert wait_for(lambda: jobs.get(LOCAL, second)["status"] == "interrupted")
    saved = runner.checkpoints(paths.home() / "jobs" / second / "checkpoints")
    assert saved, "a checkpoint every 4 steps was written before the kill"
    at = int(saved[0].name.split("-")[1])
    jobs.resume(LOCAL, second)  # starts a new worker
    job = wait_for(lambda: (j := jobs.get(LOCAL, second))["status"] not in jobs.ACTIVE and j)
    assert job["status"] == "succeeded", job["error"]
    assert any(f"Resuming from checkpoint-{at}" in line for line in jobs.logs(LOCAL, second, 400))
    steps = [m["step"] for m in jobs.metrics(LOCAL, second) if m["name"] == "train_loss"]
    assert steps == sorted(set(steps)) and steps[-1] == 60  # one curve, no repeated steps after the resume
    assert job["result"]["stats"]["steps"] == 60 and registry.resolve(LOCAL, "survivor").source == "trained"
    os.kill(job["worker_pid"], signal.SIGTERM)
