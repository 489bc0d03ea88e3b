"""How well calibrated each classifier of a run is: a table with intervals and the reliability diagram.

Reads what the classification task stored (`details["calibration"]`, `intervals`): ECE (15 equal-width bins,
and adaptive bins), Brier and log loss, each with its BCa interval and n, and, when the dataset had a validation
split, the temperature fitted there with the same figures after scaling (the model itself is unchanged).
"""
from __future__ import annotations

import pandas as pd

from ..plotting import color, layout, plain
from .result import TaskResult

CALIBRATION = ("ece", "ece_adaptive", "brier", "log_loss")


def _text(i: dict | None) -> str:
    from ..stats.intervals import fmt

    if not i or i.get("value") is None:
        return "—"
    return fmt(i["value"], i.get("low"), i.get("high"), i.get("n"))


def calibrated(results: list[TaskResult]) -> list[TaskResult]:
    return [r for r in results if r.ok and (r.details or {}).get("calibration")]


def table(results: list[TaskResult]) -> pd.DataFrame:
    """Per classifier result: each calibration figure with its interval, the fitted temperature and the
    figures after temperature scaling."""
    rows = []
    for r in calibrated(results):
        cal = r.details["calibration"]
        row = {"model": r.model, "task": r.task}
        for name in CALIBRATION:
            row[name] = _text(r.interval(name))
        t = cal.get("temperature")
        bound = " at the search bound: the validation rows say little" if t and (t <= 0.0501 or t >= 19.99) else ""
        row["temperature"] = (f"{t:.3f} (fitted on {cal['temperature_rows']} "
                              f"{cal.get('temperature_split', 'validation')} rows{bound})" if t
                              else cal.get("temperature_note", "not fitted"))
        for name in CALIBRATION:
            row[f"{name} after scaling"] = _text((cal.get("after") or {}).get(name))
        rows.append(row)
    return pd.DataFrame(rows)


def reliability_figure(results: list[TaskResult], after: bool = False):
    """Accuracy against mean confidence per bin (marker size: examples in the bin); the diagonal is perfect
    calibration. `after`: the bins after temperature scaling."""
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration",
                             line={"dash": "dot", "color": "#999"}))
    for i, r in enumerate(calibrated(results)):
        bins = r.details["calibration"].get("reliability_after" if after else "reliability") or []
        if not bins:
            continue
        total = sum(b["count"] for b in bins) or 1
        fig.add_trace(go.Scatter(
            x=[b["confidence"] for b in bins], y=[b["accuracy"] for b in bins], mode="lines+markers",
            name=f"{r.model} / {r.task}", marker={"size": [6 + 24 * (b["count"] / total) ** 0.5 for b in bins],
                                                  "color": color(i)},
            line={"color": color(i)},
            text=[plain(f"{b['low']:.2f}–{b['high']:.2f}: {b['count']} examples") for b in bins],
            hovertemplate="%{text}<br>confidence %{x:.3f}<br>accuracy %{y:.3f}<extra></extra>"))
    fig.update_xaxes(title="mean confidence (top label)", range=[-0.02, 1.02])
    fig.update_yaxes(title="accuracy", range=[-0.02, 1.05])
    title = "Reliability diagram" + (" after temperature scaling" if after else "") + " (15 equal-width bins)"
    return layout(fig, title, 420)
