"""Leaderboard tables, the per-example drill-down and exports (CSV, JSON) from stored results."""
from __future__ import annotations

import json
from dataclasses import replace

import pandas as pd

from ..access import Actor
from ..explain.links import attribution_link
from . import cache
from .result import TaskResult


def fmt(value, low=None, high=None, n=None) -> str:
    """"0.900 [0.596, 0.982] n=10": a value with its interval and the examples behind it."""
    from ..stats.intervals import fmt as interval_text

    text = interval_text(value, low, high, n)
    if value is not None and (low is None or high is None) and text != "—":
        text += " (no interval stored)"
    return text


ONE_MEASUREMENT = "one measurement"
NO_SPREAD = "no interval: every resample gives the same value (too few examples)"  # stats.intervals.NO_SPREAD


def cell(result: TaskResult, metric: str) -> str:
    """One leaderboard cell: the metric of a result with its interval and n, "error", or "" (not computed)."""
    if not result.ok:
        return "error"
    i = result.interval(metric)
    if i.get("value") is None:
        return ""
    if i.get("method") == ONE_MEASUREMENT:  # peak memory, load time: measured once, no spread to show
        return f"{fmt(i['value'])} (one measurement)"
    if i.get("method") == NO_SPREAD:
        return f"{fmt(i['value'], n=i.get('n'))} (too few examples for an interval)"
    return fmt(i["value"], i.get("low"), i.get("high"), i.get("n"))


def available_metrics(summaries: list[TaskResult]) -> list[str]:
    """Every metric the results computed, headlines first (what the leaderboard's metric picker offers)."""
    names = [r.headline.name for r in summaries if r.ok and r.headline]
    for r in summaries:
        if r.ok:
            names += [k for k, v in (r.metrics or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                      and k not in ("tokens",)]
    names = list(dict.fromkeys(names))
    # "f1_macro" is stored beside "f1" (the same number under the name the suite asked for): show one
    return [n for n in names if not (n.endswith("_macro") and n.removesuffix("_macro") in names)]


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
    """One row per (model, task): headline metric, interval, n, status, timing, cache hit, the rows scored, and
    then every metric the task computed with its interval (`<metric>`, `<metric> low`, `<metric> high`)."""
    rows, metric_names = [], available_metrics(summaries)
    for s in distinct_models(summaries):
        h, repro = s.headline, s.repro
        row = {"model": s.model, "task": s.task, "type": s.type, "status": s.status,
               "metric": h and h.name, "value": h and h.value, "low": h and h.low, "high": h and h.high,
               "n": s.n if s.ok else None, "interval": (h.method if h else None),
               "lower_is_better": h.lower_is_better if h else False, "seconds": s.seconds,
               "cached": s.cached, "error": s.error, "key": s.key, "notes": " ".join(s.notes or []),
               "split": (repro.split or "all") if repro else None, "rows": repro.rows if repro else None}
        for m in metric_names:
            i = s.interval(m) if s.ok else {}
            row.update({m: i.get("value"), f"{m} low": i.get("low"), f"{m} high": i.get("high")})
        rows.append(row)
    base = ["model", "task", "type", "status", "metric", "value", "low", "high", "n", "interval", "lower_is_better",
            "seconds", "cached", "error", "key", "notes", "split", "rows"]
    return pd.DataFrame(rows, columns=base + [c for m in metric_names for c in (m, f"{m} low", f"{m} high")])


def _columns(summaries: list[TaskResult], metrics: list[str] | None = None):
    """Per task and metric shown: (task, metric, column name, whether higher is better). Without `metrics`,
    each task's headline; with them, each of them that the task computed (in the order given)."""
    from .. import metrics as metric_table

    results = distinct_models(summaries)
    for task in dict.fromkeys(r.task for r in results):
        mine = [r for r in results if r.task == task]
        head = next((r.headline.name for r in mine if r.ok and r.headline), "")
        computed = set(available_metrics(mine))
        names = [m for m in metrics if m in computed] if metrics else [head]
        for m in names:
            yield task, m, (f"{task} · {m}" if m else task), metric_table.higher_is_better(m)


def wide_table(summaries: list[TaskResult], metrics: list[str] | None = None,
               tiers: dict[str, dict[str, int]] | None = None) -> pd.DataFrame:
    """Models × (task, metric): "value [low, high] n=…" per cell (or "error"), the numbers for sorting, and
    per task with paired comparisons its significance tier (`tiers`: {task: {model: tier}})."""
    results = distinct_models(summaries)
    if not results:
        return pd.DataFrame()
    models = list(dict.fromkeys(r.model for r in results))
    out = pd.DataFrame({"model": models})
    done_tiers = set()
    for task, metric, col, _ in _columns(results, metrics):
        by_model = {r.model: r for r in results if r.task == task}
        if task not in done_tiers:
            done_tiers.add(task)
            if tiers and task in tiers:
                out[f"{task} · tier"] = [tiers[task].get(m) for m in models]
            if any((r.details or {}).get("contamination") for r in by_model.values()):
                out[f"{task} · leaked"] = [_leak(by_model.get(m)) for m in models]
        out[col] = [cell(by_model[m], metric) if m in by_model else "" for m in models]
        out[f"{col} (value)"] = [by_model[m].interval(metric).get("value") if m in by_model and by_model[m].ok
                                 else None for m in models]
    return out


def _leak(result: TaskResult | None) -> str:
    """"2 exact + 1 near of 50": evaluation rows found in the training data (the result's first check)."""
    found = ((result.details or {}).get("contamination") if result and result.ok else None) or {}
    if not found:
        return "not checked (no training data known)"
    return f"{found.get('exact', 0)} exact + {found.get('near', 0)} near of {found.get('checked', 0)}"


def higher_is_better(summaries: list[TaskResult], metrics: list[str] | None = None) -> dict[str, bool]:
    """For each "(value)" column of `wide_table`: whether a higher value ranks first."""
    return {f"{col} (value)": higher for _, _, col, higher in _columns(summaries, metrics)}


def text_table(summaries: list[TaskResult], metrics: list[str] | None = None, tiers: dict | None = None) -> str:
    """The leaderboard as plain text (the CLI prints it)."""
    wide = wide_table(summaries, metrics, tiers)
    if wide.empty:
        return "(no results)"
    shown = wide[[c for c in wide.columns if not c.endswith("(value)")]]
    widths = {c: max(len(c), *(len(str(v)) for v in shown[c])) for c in shown.columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in shown.columns)]
    lines.append("  ".join("-" * widths[c] for c in shown.columns))
    lines += ["  ".join(str(v).ljust(widths[c]) for c, v in row.items()) for _, row in shown.iterrows()]
    scored = [f"  {task}: {text}" for task, text in scored_rows(summaries).items()]
    errors = [f"  {s.model} / {s.task}: {s.error}" for s in distinct_models(summaries) if not s.ok]
    intervals = sorted({r.headline.method for r in summaries if r.ok and r.headline and r.headline.method})
    legend = ["", "Cells: value [95% interval] n=examples (robustness: perturbed cases)" + (f" ({'; '.join(intervals)})" if intervals else "")]
    return "\n".join(lines + legend + (["", "rows scored:"] + scored if scored else [])
                     + (["", "errors:"] + errors if errors else []))


def _explainable(result: TaskResult) -> bool:
    """Whether 'open ↗' can show this result's examples on the Attributions page: not an lm-eval task (its
    documents are not an LLM Lab dataset) nor an endpoint model (no weights here to attribute)."""
    repro = result.repro
    return bool(repro and repro.dataset) and result.type != "lm_eval" and repro.model_source != "endpoint"


def drilldown(results: list[TaskResult], task: str, show: str = "all") -> pd.DataFrame:
    """Per-example rows of one task across models: show "all", "errors" (any model wrong) or
    "disagreements" (models predict differently). Each model gets prediction, correct and a link."""
    picked = [r for r in distinct_models(results) if r.task == task and r.ok and r.per_example]
    if not picked:
        return pd.DataFrame()
    base = None
    shared = ("id", "kind", "expect", "text", "perturbed", "label")  # the example's, not a model's
    for r in picked:
        dataset = r.repro.dataset if r.repro else ""
        frame = pd.DataFrame(r.per_example)
        if "slice" in frame.columns:  # {name: value} per row: one column per slice, shared by the models
            slices = pd.DataFrame([s if isinstance(s, dict) else {} for s in frame.pop("slice")])
            frame = pd.concat([frame, slices.add_prefix("slice: ")], axis=1)
        keep = [c for c in frame.columns if c in shared or c.startswith("slice: ")]
        on = [c for c in ("id", "kind") if c in frame.columns]
        cols = {c: f"{r.model}: {c}" for c in frame.columns if c not in keep}
        part = frame.rename(columns=cols)
        if _explainable(r):  # the Attributions page opens the example from its LLM Lab dataset, on loaded weights
            part[f"{r.model}: attributions"] = [attribution_link(r.model, dataset=dataset, example=i)
                                                     for i in frame["id"]]
        base = part if base is None else base.merge(
            part.drop(columns=[c for c in keep if c not in on and c in base.columns]), on=on, how="outer")
    pred_cols = [c for c in base.columns if c.endswith(": prediction")]
    correct_cols = [c for c in base.columns if c.endswith(": correct")]
    bad_cols = [c for c in base.columns if c.endswith(": flipped") or c.endswith(": failed")]
    if show == "errors":  # tasks without right/wrong (perplexity, speed) have no errors to show
        if bad_cols:  # robustness: a flip or a failed direction is the error
            base = base[base[bad_cols].fillna(False).astype(bool).any(axis=1)]
        else:
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
    """The long table as CSV, safe to open in a spreadsheet (model and task names are anyone's text)."""
    from ..csv_safe import frame_to_csv

    return frame_to_csv(long_table(summaries))


def export_json(results: list[TaskResult]) -> bytes:
    return json.dumps({"results": [r.to_dict() for r in results]}, indent=1, default=str).encode()
