"""Training: fine-tune classifiers and causal LMs, pretrain small GPT-2s, as background jobs.

    from llm_lab import train
    cfg = train.TrainConfig(task="classify", model="minilm", dataset="reviews")
    job_id = train.submit(cfg)             # the worker runs llm_lab.train:run (job.run)
    train.estimate(cfg)                    # memory and time before starting

Modules, one idea each: config (what a run is), data_prep (dataset → tokenized sets),
modeling (base model, LoRA, GPT-2 from scratch), callback (Trainer → JobContext), resources
runner (Trainer, OOM/NaN/disk-full handling), export (atomic save, model card, registry,
zip), history (past runs), plots (plotly curves), job (the job functions), cli (`python -m llm_lab train`).
Importing this package does not import torch.
"""
from .config import NEEDS, PRESETS, TASKS, TINY_GPT, TrainConfig, task_defaults  # noqa: F401
from .job import run  # noqa: F401  the job function the worker calls

JOB_KIND = "llm_lab.train:run"


def submit(cfg: TrainConfig) -> str:
    """Validate, give the run a name, and queue it. Returns the job id."""
    from .. import jobs
    from .export import check_name_free

    cfg.validate()
    if not cfg.out:
        cfg.name = cfg.name or cfg.default_name()
        check_name_free(cfg.name)
    if cfg.task != "pretrain":
        from .. import data, registry

        data.get(cfg.dataset)        # fail now for an unknown dataset
        registry.resolve(cfg.model)  # …or an unknown model
    return jobs.submit(JOB_KIND, cfg.to_params(), cfg.title())


def estimate(cfg: TrainConfig) -> dict:
    from .resources import estimate as _estimate

    return _estimate(cfg)
