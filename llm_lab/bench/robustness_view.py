"""Tables for what a run says about robustness (CheckList-style tasks) and contamination.

Robustness: per invariance/directional result, each perturbation kind (or template) with its rate, interval
and counts, then the overall rate. Contamination: per result that was checked, how many evaluation rows were
found in the training data (exact and near), against what, and the threshold used.
"""
from __future__ import annotations

import pandas as pd

from ..stats.intervals import fmt
from .result import TaskResult


def _text(i: dict) -> str:
    return fmt(i.get("value"), i.get("low"), i.get("high"), i.get("n"))


def table(results: list[TaskResult]) -> pd.DataFrame:
    rows = []
    for r in results:
        if not r.ok or r.type not in ("invariance", "directional"):
            continue
        d = r.details or {}
        metric = "flip rate" if r.type == "invariance" else "failure rate"
        parts = d.get("by_kind") or d.get("by_template") or {}
        for kind, i in parts.items():
            rows.append({"model": r.model, "task": r.task, "perturbation": kind, "metric": metric,
                         "rate": _text(i), "hits": i.get("hits"), "examples": i.get("examples")})
        overall = r.interval(r.headline.name) if r.headline else {}
        rows.append({"model": r.model, "task": r.task, "perturbation": "(all)", "metric": metric,
                     "rate": _text(overall), "hits": None, "examples": d.get("examples")})
    return pd.DataFrame(rows)


def contamination_table(results: list[TaskResult]) -> pd.DataFrame:
    from .contamination import ContaminationReport

    rows = []
    for r in results:
        if not r.ok:
            continue
        checks = (r.details or {}).get("contamination_checks") or (
            [r.details["contamination"]] if (r.details or {}).get("contamination") else [])
        for c in checks:
            rep = ContaminationReport.from_dict(c)
            rows.append({"model": r.model, "task": r.task, "checked against": rep.training,
                         "rows checked": rep.checked, "exact duplicates": rep.exact, "near duplicates": rep.near,
                         "near means": f"≥ {rep.threshold:.0%} of its {rep.n}-grams",
                         "flagged ids": ", ".join(str(f.id) for f in rep.flagged[:20])
                         + (" …" if len(rep.flagged) > 20 else "")})
    return pd.DataFrame(rows)
