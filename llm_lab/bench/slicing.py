"""The leaderboard cut by slice: every result restricted to the examples of one slice, its metrics recomputed.

Slices come from the per-example rows: a task's declared `slices` (`row["slice"]`, see `slices.py`) and, for
every task with labels, the gold label itself. `cut(results, name, value)` gives results whose per-example rows
are that slice's and whose metrics, intervals and headline are recomputed from them (the metrics that are sums
over examples: see `compare.COMPARABLE`; the others are dropped, said in a note), so the leaderboard, tiers and
paired comparisons work on a slice exactly as on the whole set.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..metrics import intervals
from . import compare
from .result import Headline, TaskResult

LABEL = "label"


def value_of(row: dict, name: str):
    """A row's value of slice `name` (text), or None when the row has none."""
    if name in (row.get("slice") or {}):
        return str(row["slice"][name])
    if name == LABEL and row.get("label") is not None:
        return str(row["label"])
    return None


def options(results: list[TaskResult]) -> list[tuple[str, str, int]]:
    """Every (slice name, value, examples) the results can be cut by, declared slices first."""
    counts: dict[tuple[str, str], set] = {}
    for r in results:
        if not r.ok:
            continue
        for row in r.per_example:
            names = list(row.get("slice") or {}) + ([LABEL] if row.get("label") is not None else [])
            for name in dict.fromkeys(names):
                counts.setdefault((name, value_of(row, name)), set()).add((r.task, row.get("id")))
    return [(name, value, len(ids)) for (name, value), ids in counts.items()]


def _recompute(result: TaskResult, rows: list[dict]) -> TaskResult:
    from .. import metrics as metric_table

    classes = sorted({str(r.get(k)) for r in rows for k in ("label", "prediction") if r.get(k) is not None})
    values, found = {}, {}
    for metric in [m for m in (result.metrics or {}) if m in compare.COMPARABLE]:
        stats = compare._stats(metric, rows, result, classes) if rows else None
        if stats is None:
            continue
        data, value_fn, binary = stats
        if binary:
            interval = intervals.of_hits(data[:, 0])
        else:  # BCa over the slice's examples (robustness: cases summed per example, the cluster resampled)
            interval = intervals.of_sums(data, value_fn, seed=result.repro.seed if result.repro else 0,
                                         scale=intervals.scale_of(metric))
        values[metric], found[metric] = interval.value, interval.to_dict()
    head = result.headline.name if result.headline and result.headline.name in values else next(iter(values), None)
    headline = None
    if head:
        i = found[head]
        headline = Headline(head, i["value"], i["low"], i["high"], metric_table.higher_is_better(head),
                            i.get("confidence"), i.get("n_resamples"), i["n"], i["method"])
    dropped = [m for m in (result.metrics or {}) if m not in values and isinstance(result.metrics[m], (int, float))]
    notes = [f"Slice of {len(rows)} rows" + (f"; not recomputed on a slice: {', '.join(dropped)}" if dropped else "")
             + "."]
    # what was computed on the whole set (calibration bins, robustness per kind, ...) does not describe a slice
    kept = {k: v for k, v in (result.details or {}).items() if k in ("contamination", "contamination_checks")}
    return replace(result, per_example=rows, metrics=values, intervals=found, headline=headline,
                   notes=list(result.notes or []) + notes, details=kept)


def cut(results: list[TaskResult], name: str, value: str) -> list[TaskResult]:
    """The results on slice `name` = `value` (results with no row in it are left out)."""
    out = []
    for r in results:
        if not r.ok:
            out.append(r)  # an error stays on the leaderboard, whatever the slice
            continue
        rows = [row for row in r.per_example if value_of(row, name) == value]
        if rows:
            out.append(_recompute(r, rows))
    return out


def table(results: list[TaskResult], name: str, metric: str | None = None):
    """Per task, model and value of slice `name`: the metric (each task's headline by default) with its interval."""
    import pandas as pd

    from .leaderboard import cell

    values = list(dict.fromkeys(v for n, v, _ in options(results) if n == name))
    rows = []
    for value in values:
        for r in cut(results, name, value):
            m = metric or (r.headline.name if r.headline else None)
            if m and m in r.metrics:
                rows.append({"slice": f"{name} = {value}", "task": r.task, "model": r.model, "metric": m,
                             "value": cell(r, m), "n": len(r.per_example),
                             "sort": np.nan if r.metrics[m] is None else r.metrics[m]})
    return pd.DataFrame(rows).drop(columns="sort") if rows else pd.DataFrame()
