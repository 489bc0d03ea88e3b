"""Training on several GPUs from a job: a worker that holds N GPUs (`worker --gpus 0,1`) runs the job's training
under torchrun, one process per GPU, instead of in its own process on one.

    command([0, 1], job_id)  ->  [python, -m, torch.distributed.run, --standalone, --nproc_per_node, 2,
                                  -m, llm_lab.train.launch, JOB_ID (, --resume)]
    environment([0, 1])      ->  os.environ + CUDA_VISIBLE_DEVICES=0,1 (the processes see only these GPUs)

The job function (`train.jobs.run`, in the worker) checks the config and the device as always, then
`run_job(ctx, gpus)` starts that command and waits, polling the job's cancel flag (a cancel, or the worker
stopping, ends every process of the run). Each launched process (`main`, below) reads the job from the store,
trains its shard under DDP (HF Trainer sets it up from torchrun's environment, NCCL on GPUs, gloo on CPU); the
main process reports progress, curves and log lines to the job as the in-process run does, saves the model
(`export.finish`) and leaves the job's result in the job folder for `run_job` to return. Checkpoints go to the
job folder as before, so a resumed job continues from the last one, on one GPU or several.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

GPUS_ENV = "LLM_LAB_WORKER_GPUS"  # the worker's GPUs, "0,1": set by `worker --gpus`, read by the job
RESULT_FILE = "launch-result.json"
POLL_S = 1.0


def worker_gpus() -> list[int]:
    """The GPUs this worker was given (`worker --gpus 0,1` sets LLM_LAB_WORKER_GPUS); [] when none were named."""
    text = os.environ.get(GPUS_ENV, "").strip()
    if not text:
        return []
    try:
        return [int(g) for g in text.split(",") if g.strip()]
    except ValueError:
        from ..errors import LabError

        raise LabError(f"{GPUS_ENV}={text!r} is not a list of GPU numbers; write it as 0,1.") from None


def should_launch(gpus: list[int]) -> bool:
    """True when a job should train under torchrun: several GPUs, and not already one process of a launch."""
    return len(gpus) > 1 and "LOCAL_RANK" not in os.environ


def command(gpus: list[int], job_id: str, resume: bool = False) -> list[str]:
    """The command that trains job `job_id` on `gpus`: one process per GPU, on this machine (--standalone picks
    a free rendezvous port, so two such jobs on one machine do not collide); `resume` continues from the job's
    last checkpoint."""
    if not gpus:
        raise ValueError("command() needs at least one GPU")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(len(gpus)),
            "-m", "llm_lab.train.launch", job_id, *(["--resume"] if resume else [])]


def environment(gpus: list[int], base: dict | None = None) -> dict:
    """The environment of the launched processes: these GPUs only (process i uses the i-th), one CPU thread
    pool each of a fair share, and the worker's LLM_LAB_* settings (home, database, queue) as they are."""
    env = dict(os.environ if base is None else base)
    env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpus)
    env.pop(GPUS_ENV, None)  # the launched processes are the run, not a worker that launches again
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, len(gpus)))))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]),
                                                      env.get("PYTHONPATH", "")]))
    return env


def run_job(ctx, gpus: list[int]) -> dict:
    """Train job `ctx.id` under torchrun on `gpus` and return what the main process saved (`export.finish`).

    The launched processes' output goes to the job log's folder (`launch.log` in the job folder); a cancel or
    a stopping worker ends them (SIGTERM to their process group, then SIGKILL) and raises as the job would."""
    from ..errors import LabError

    result_path = ctx.workdir / RESULT_FILE
    result_path.unlink(missing_ok=True)
    log_path = ctx.workdir / "launch.log"
    ctx.log(f"Training on GPUs {','.join(map(str, gpus))}: {len(gpus)} processes under torchrun")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(command(gpus, ctx.id, ctx.resume), env=environment(gpus), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            while proc.poll() is None:
                ctx.check_cancelled()
                time.sleep(POLL_S)
        except BaseException:
            _stop(proc)
            raise
    if proc.returncode != 0 or not result_path.exists():
        tail = log_path.read_text(errors="replace")[-2000:]
        raise LabError(f"The training processes ended with exit code {proc.returncode}; the end of their output "
                       f"({log_path}):\n{tail}")
    return json.loads(result_path.read_text())


def _stop(proc: subprocess.Popen, grace_s: float = 30.0) -> None:
    """End the launched processes: torchrun passes SIGTERM on to its workers; SIGKILL after the grace time."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


class _Silent:
    """The reporter of the processes other than the main one: the main process reports for the run."""

    def progress(self, *args, **kwargs):
        pass

    def metric(self, *args, **kwargs):
        pass

    def log(self, line):
        pass


def main(argv: list[str] | None = None) -> int:
    """One launched process: train job JOB_ID's config (the job row in the store), main process saves."""
    import shutil

    from accelerate import PartialState

    from .. import jobs, store
    from ..access import SYSTEM, Actor, scope
    from . import export, runner
    from .config import TrainConfig

    argv = list(sys.argv[1:] if argv is None else argv)
    resume = "--resume" in argv
    (job_id,) = [a for a in argv if a != "--resume"]
    row = scope(SYSTEM).one("jobs", "id=?", (job_id,))
    if row is None:
        print(f"error: no job {job_id!r} in the store at {os.environ.get('LLM_LAB_HOME', '~/.llm_lab')}",
              file=sys.stderr)
        return 2
    params = store.from_json(row["params"], {})
    ctx = jobs.JobContext(id=job_id, params=params, resume=resume,
                          actor=Actor.from_dict(store.from_json(row["actor"])))
    cfg = TrainConfig.from_dict(params).validate()
    state = PartialState()
    reporter = ctx if state.is_main_process else _Silent()
    trained = runner.train(ctx.actor, cfg, reporter, ctx.workdir, resume=ctx.resume)
    state.wait_for_everyone()
    if state.is_main_process:
        result = export.finish(ctx.actor, cfg, trained, ctx.id)
        shutil.rmtree(ctx.workdir / "checkpoints", ignore_errors=True)  # the model is saved; free the disk
        store.atomic_write_bytes(ctx.workdir / RESULT_FILE, json.dumps(result, default=str).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
