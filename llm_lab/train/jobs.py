"""The training job: `llm_lab.train.jobs:run(ctx, **config)` (queued as llm_lab.train:run) runs in the worker; `run_direct` without it.

Inside the worker the JobContext is the reporter (progress, curves, log, cancel),
`ctx.workdir` holds checkpoints, and `ctx.resume` continues from the last one.
`run_direct` is what `accelerate launch -m llm_lab.train …` / torchrun execute: the same
code path, with a console reporter, one model saved by the main process.
"""
import shutil

from .. import jobs, paths
from ..access import LOCAL, Actor
from . import export, launch, resources, runner
from .config import TrainConfig


def run(ctx, **params) -> dict:
    cfg = TrainConfig.from_dict(params).validate()
    resources.check(ctx.actor, cfg)  # however it was queued: not a run the device cannot hold
    if ctx.resume:
        found = runner.checkpoints(ctx.workdir / "checkpoints")
        step = int(found[0].name.split("-")[1]) if found else 0
        # curves after the checkpoint are recomputed by the resumed run
        jobs.drop_metrics_after(ctx.id, step)
    ctx.progress(0, 1, "Preparing data and model…", force=True)
    gpus = launch.worker_gpus()
    if launch.should_launch(gpus):  # a multi-GPU worker: one process per GPU under torchrun (train/launch.py)
        return launch.run_job(ctx, gpus)
    trained = runner.train(ctx.actor, cfg, ctx, ctx.workdir, resume=ctx.resume)
    steps = trained.stats["steps"]
    st = trained.stats
    ctx.progress(steps, steps, "Saving the model…", force=True, step=steps, epoch=st["epochs"],
                 loss=st["train_loss"], **{"samples/s": st["samples_per_s"], "tokens/s": st["tokens_per_s"]})
    result = export.finish(ctx.actor, cfg, trained, ctx.id)
    shutil.rmtree(ctx.workdir / "checkpoints", ignore_errors=True)  # the model is saved; free the disk
    ctx.log(f"Saved {result['model']} to {result['folder']}" + (" and registered it" if result["registered"] else ""))
    return result


def run_direct(cfg: TrainConfig, resume: bool = False, actor: Actor = LOCAL) -> dict | None:
    """Train in this process (one of several under accelerate launch/torchrun), as `actor`, after the same
    checks a queued run passes (`train.check`).

    `resume=True` continues from the last checkpoint in LLM_LAB_HOME/runs/<name>/ (same name)."""
    from accelerate import PartialState

    from . import check
    from .callback import ConsoleReporter

    if resume:
        actor.require("run", "start training jobs")
        cfg.validate()
    else:
        check(actor, cfg)
    state = PartialState()
    cfg.name = cfg.name or cfg.default_name()
    workdir = paths.subdir("runs", cfg.name)
    trained = runner.train(actor, cfg, ConsoleReporter(), workdir, resume=resume)
    state.wait_for_everyone()
    if not state.is_main_process:
        return None
    result = export.finish(actor, cfg, trained, None)
    shutil.rmtree(workdir / "checkpoints", ignore_errors=True)
    return result
