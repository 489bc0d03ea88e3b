"""Leaderboard tables, the per-example drill-down and exports (CSV, JSON) from stored results."""
from __future__ import annotations

import json
from dataclasses import replace

import pandas as pd

from ..access import Actor
from ..explain.links import attribution_link
from . import cache
from .result import TaskResult


def fmt(value, low=None, high=None) -> str:
    if value is None:
        return "—"
    digits = 3 if abs(value) < 10 else 1
    text = f"{value:.{digits}f}"
    if low is not None and high is not None:
        text += f" ± {max(value - low, high - value):.{digits}f}"
    return text


def distinct_models(results: list[TaskResult]) -> list[TaskResult]:
    """The results with one model name per row of a leaderboard: when a task has two results under one name
    (the same model picked twice, two models shown under one name), the second becomes "name (2)", the third
    "name (3)", counted per task in run order, so each model of a run keeps its name across the tasks. Tables
    and charts keyed by the name then neither merge two models into one row nor get pandas' _x/_y columns."""
    taken = {r.model for r in results}
    count: dict[tuple, int] = {}
    out = []
    for r in results:
        n = count[(r.model, r.task)] = count.get((r.model, r.task), 0) + 1
        if n == 1:
            out.append(r)
            continue
        label = f"{r.model} ({n})"
        while label in taken:
            n += 1
            label = f"{r.model} ({n})"
        out.append(replace(r, model=label))
    return out


def scored_rows(results: list[TaskResult]) -> dict[str, str]:
    """Per task, which rows its results scored ("demo-reviews: test split, 15 of 143 rows"), for the
    leaderboard's readers: a score on the rows a model trained on is not a test score."""
    out: dict[str, list] = {}
    for r in results:
        if r.ok and r.scored and r.scored not in out.setdefault(r.task, []):
            out[r.task].append(r.scored)
    return {task: "; ".join(texts) for task, texts in out.items() if texts}


def long_table(summaries: list[TaskResult]) -> pd.DataFrame:
    """One row per (model, task): headline metric, interval, status, timing, cache hit, the rows scored."""
    rows = []
    for s in distinct_models(summaries):
        h, repro = s.headline, s.repro
        rows.append({"model": s.model, "task": s.task, "type": s.type, "status": s.status,
                     "metric": h and h.name, "value": h and h.value, "low": h and h.low, "high": h and h.high,
                     "lower_is_better": h.lower_is_better if h else False, "seconds": s.seconds,
                     "cached": s.cached, "error": s.error, "key": s.key, "notes": " ".join(s.notes or []),
                     "split": (repro.split or "all") if repro else None, "rows": repro.rows if repro else None})
    return pd.DataFrame(rows, columns=["model", "task", "type", "status", "metric", "value", "low", "high",
                                       "lower_is_better", "seconds", "cached", "error", "key", "notes", "split",
                                       "rows"])


def _task_columns(long: pd.DataFrame):
    """Per task of the long table: (task, its rows by model, column name, whether higher is better)."""
    for task in dict.fromkeys(long["task"]):
        sub = long[long["task"] == task].set_index("model")
        metric = next((m for m in sub["metric"] if isinstance(m, str) and m), "")
        lower = bool(next((lb for m, lb in zip(sub["metric"], sub["lower_is_better"]) if m == metric), False))
        yield task, sub, (f"{task} · {metric}" if metric else task), not lower


def wide_table(summaries: list[TaskResult]) -> pd.DataFrame:
    """Models × tasks: "value ± half-width" per cell (or the error), plus the numbers for sorting."""
    long = long_table(summaries)  # one row per (model, task): distinct_models names each model apart
    if long.empty:
        return pd.DataFrame()
    out = pd.DataFrame({"model": sorted(long["model"].unique(), key=list(long["model"]).index)})
    for task, sub, col, _ in _task_columns(long):
        out[col] = [fmt(sub.at[m, "value"], sub.at[m, "low"], sub.at[m, "high"]) if m in sub.index and
                    sub.at[m, "status"] == "ok" else ("error" if m in sub.index else "") for m in out["model"]]
        out[f"{col} (value)"] = [sub.at[m, "value"] if m in sub.index else None for m in out["model"]]
    return out


def higher_is_better(summaries: list[TaskResult]) -> dict[str, bool]:
    """For each "(value)" column of `wide_table`: whether a higher value ranks first (from the headlines)."""
    long = long_table(summaries)
    return {f"{col} (value)": higher for _, _, col, higher in _task_columns(long)}


def text_table(summaries: list[TaskResult]) -> str:
    """The leaderboard as plain text (the CLI prints it)."""
    wide = wide_table(summaries)
    if wide.empty:
        return "(no results)"
    shown = wide[[c for c in wide.columns if not c.endswith("(value)")]]
    widths = {c: max(len(c), *(len(str(v)) for v in shown[c])) for c in shown.columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in shown.columns)]
    lines.append("  ".join("-" * widths[c] for c in shown.columns))
    lines += ["  ".join(str(v).ljust(widths[c]) for c, v in row.items()) for _, row in shown.iterrows()]
    scored = [f"  {task}: {text}" for task, text in scored_rows(summaries).items()]
    errors = [f"  {s.model} / {s.task}: {s.error}" for s in distinct_models(summaries) if not s.ok]
    return "\n".join(lines + (["", "rows scored:"] + scored if scored else [])
                     + (["", "errors:"] + errors if errors else []))


def drilldown(results: list[TaskResult], task: str, show: str = "all") -> pd.DataFrame:
    """Per-example rows of one task across models: show "all", "errors" (any model wrong) or
    "disagreements" (models predict differently). Each model gets prediction, correct and a link."""
    picked = [r for r in distinct_models(results) if r.task == task and r.ok and r.per_example]
    if not picked:
        return pd.DataFrame()
    base = None
    for r in picked:
        dataset = r.repro.dataset if r.repro else ""
        frame = pd.DataFrame(r.per_example)
        keep = [c for c in ("id", "text", "label") if c in frame.columns]
        cols = {c: f"{r.model}: {c}" for c in frame.columns if c not in keep}
        part = frame.rename(columns=cols)
        part[f"{r.model}: attributions"] = [attribution_link(r.model, dataset=dataset, example=i)
                                                 for i in frame["id"]]
        base = part if base is None else base.merge(part.drop(columns=[c for c in ("text", "label") if c in part]),
                                                    on="id", how="outer")
    pred_cols = [c for c in base.columns if c.endswith(": prediction")]
    correct_cols = [c for c in base.columns if c.endswith(": correct")]
    if show == "errors":  # tasks without right/wrong (perplexity, speed) have no errors to show
        base = base[~base[correct_cols].fillna(False).astype(bool).all(axis=1)] if correct_cols else base.iloc[:0]
    elif show == "disagreements":  # needs predictions of at least two models
        base = base[base[pred_cols].astype(str).nunique(axis=1) > 1] if len(pred_cols) > 1 else base.iloc[:0]
    return base.reset_index(drop=True)


def full_results(actor: Actor, keys: list[str], models: list | None = None) -> list[TaskResult]:
    """The stored results (per-example rows included) of `keys` that the actor can see. `models` (one per key,
    a run's `key_models`): the name each was run for, shown instead of the name of the model that computed
    a result first (a result is keyed by weights, data and task, so two names can share it)."""
    models = models if models and len(models) == len(keys) else [None] * len(keys)
    out = []
    for key, model in zip(keys, models):
        r = cache.load_result(actor, key)
        if r is not None and model and r.model != model:
            note = f"Computed for {r.model}: the same weights, data, task and settings (served from the cache)."
            r = replace(r, model=model, repro=r.repro and replace(r.repro, model=model),
                        notes=list(r.notes or []) + ([note] if r.ok else []))
        if r is not None:
            out.append(r)
    return out


def run_results(actor: Actor, run: dict) -> list[TaskResult]:
    """The results of a benchmark run (`cache.runs`/`cache.get_run`), each under the model it was run for."""
    return full_results(actor, run["keys"], run.get("key_models"))


def export_csv(summaries: list[TaskResult]) -> bytes:
    return long_table(summaries).to_csv(index=False).encode()


def export_json(results: list[TaskResult]) -> bytes:
    return json.dumps({"results": [r.to_dict() for r in results]}, indent=1, default=str).encode()
