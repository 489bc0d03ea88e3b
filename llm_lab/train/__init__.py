"""Training: fine-tune classifiers and causal LMs, pretrain small GPT-2s, as background jobs.

    from llm_lab import train
    cfg = train.TrainConfig(task="classify", model="minilm", dataset="reviews")
    job_id = train.submit(actor, cfg)      # the worker runs JOB_FN, llm_lab.train:run (jobs.run), as `actor`
    train.estimate(actor, cfg)             # memory and time before starting; `refusal` says why it may not start

Modules, one idea each: config (what a run is), data_prep (dataset → tokenized sets),
modeling (base model, LoRA, GPT-2 from scratch), callback (Trainer → JobContext), resources
runner (Trainer, OOM/NaN/disk-full handling), export (atomic save, model card, registry,
zip), history (past runs), plots (plotly curves), jobs (the job functions), cli (`python -m llm_lab train`).
Importing this package does not import torch.
"""
from ..corpora import CORPORA  # noqa: F401
from .config import NEEDS, PRESETS, TASKS, TINY_GPT, TrainConfig, task_defaults  # noqa: F401
from .jobs import run  # noqa: F401  the job function the worker calls

JOB_FN = "llm_lab.train:run"


def submit(actor, cfg: TrainConfig) -> str:
    """Validate, give the run a name, and queue it as `actor`. Returns the job id."""
    from .. import jobs

    plan = check(actor, cfg)
    # the team's workers take it where it fits: its device setting and the planned memory (weights, optimizer,
    # activations), on one GPU
    needs = jobs.Resources.for_device(cfg.device, plan["memory_mb"]["total"] / 1024 + jobs.CUDA_CONTEXT_GB)
    # a second click with the same settings is the same run, whatever name it was given
    return jobs.submit(actor, JOB_FN, cfg.to_params(), cfg.title(), ignore_in_identity=("name",), resources=needs)


def check(actor, cfg: TrainConfig) -> dict:
    """Everything a run must pass before it starts, queued or in this process: the actor's rights, the config,
    the output, the dataset and model the actor can reach, and what the device and this server allow.
    Returns the plan (train.resources: memory and steps)."""
    actor.require("run", "start training jobs")
    from .export import check_name_free, check_out

    cfg.validate()
    check_out(actor, cfg)
    if not cfg.out:
        cfg.name = cfg.name or cfg.default_name()
        check_name_free(actor, cfg.name)
    if cfg.task != "pretrain":
        from .. import data, registry

        data.get(actor, cfg.dataset)        # fail now for an unknown dataset
        registry.resolve(actor, cfg.model)  # …or an unknown model
        if cfg.distill:
            from .distill import check as check_distill

            check_distill(actor, cfg)       # …or a student no smaller than its teacher, or labelled otherwise
    from .resources import check as check_resources

    return check_resources(actor, cfg)  # …or a run the device cannot hold, or longer than this server allows


def estimate(actor, cfg: TrainConfig) -> dict:
    from .resources import estimate as _estimate

    return _estimate(actor, cfg)
