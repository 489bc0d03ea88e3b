"""Past training runs (the jobs whose fn is llm_lab.train:run, JOB_FN, that the actor sees) with their curves, as plain data."""
import pandas as pd

from .. import jobs
from ..access import Actor
from .config import TrainConfig

# The live panel's tiles, in this order: the stats a running job reports (train.callback, train.jobs)
LIVE_STATS = ("step", "epoch", "loss", "lr", "samples/s", "tokens/s")


def active(actor: Actor) -> list[str]:
    """The ids of the actor's own queued and running training jobs, the running one first, then oldest first
    (the queue's order)."""
    mine = [job for job in jobs.list_jobs(actor, "llm_lab.train:", limit=50)
            if job["status"] in jobs.ACTIVE and job["created_by"] == actor.user]
    return [job["id"] for job in sorted(mine, key=lambda j: (j["status"] != jobs.RUNNING, j["created_at"]))]


def runs(actor: Actor, limit: int = 200) -> list[dict]:
    """Every training job, newest first, flattened for a table."""
    rows = []
    for job in jobs.list_jobs(actor, "llm_lab.train:", limit=limit):
        cfg, result = TrainConfig.from_params(job["params"]), job["result"] or {}
        metrics = result.get("metrics") or {}
        rows.append({
            "id": job["id"], "status": job["status"], "task": cfg.task, "name": result.get("model") or cfg.name,
            "base": f"GPT-2 {cfg.preset}" if cfg.task == "pretrain" else cfg.model + (
                f" → {cfg.student_layers}-layer student" if cfg.distill else ""),
            "dataset": cfg.dataset or ("pydoc" if cfg.task == "pretrain" else ""),
            "epochs": cfg.epochs, "lr": cfg.learning_rate, "batch": cfg.batch_size,
            **{k.removeprefix("eval_"): round(v, 4) for k, v in metrics.items() if k != "eval_epoch"},
            "held-out result": _headline_text(cfg.task, result.get("evaluation")),
            "created": pd.to_datetime(job["created_at"], unit="s").strftime("%Y-%m-%d %H:%M"),
            "title": job["title"],
        })
    return rows


def _headline_text(task: str, evaluation: dict | None) -> str:
    """The headline metric as "name value [95% interval] n=rows", or "—" for a run that stored none."""
    from .evaluation import headline

    found = headline(task, evaluation)
    return f"{found[0]} {found[1].text()}" if found else "—"


def curves(actor: Actor, job_id: str) -> pd.DataFrame:
    """Long table step, name, value of one run's metric curves (epoch kept as its own series)."""
    frame = pd.DataFrame(jobs.metrics(actor, job_id), columns=["step", "name", "value", "at"])
    return frame.drop(columns=["at"])


def eval_metric_names(frame: pd.DataFrame) -> list[str]:
    names = sorted(set(frame["name"]) - {"eval_loss"})
    return [n for n in names if n.startswith("eval_") and not n.endswith("epoch")]
