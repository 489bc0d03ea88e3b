"""Axis ranges for quality-against-latency scatter charts (Benchmarks, Compress), and labels that stay visible.

Plotly's autorange around a single point at 1.0 runs the axis from 0 to 2, an accuracy no model can have, and
clips a label drawn above a point at the top. Here:
- a proportion metric (accuracy, F1, …, every value inside [0, 1]) gets the axis [0, 1] plus a
  little room below and, for the label written above each point, more room above;
- any other metric is ranged on its values and interval ends, padded the same way;
- the x axis (latency) is padded on both sides (not below zero), and a label near either end leans inwards.
Traces keep `cliponaxis=False` as well, so a marker or label at the edge is never cut.
"""
from __future__ import annotations

import math

PROPORTIONS = {"accuracy", "acc", "acc_norm", "balanced_accuracy", "exact_match", "f1", "macro_f1", "f1_macro",
               "micro_f1", "weighted_f1", "precision", "recall", "roc_auc", "auc", "win_rate", "pass@1"}
BELOW = 0.05   # share of the span added under the lowest value
ABOVE = 0.12   # share added over the highest: a label one text line above the point
SIDES = 0.12   # share added left and right of the latencies


def _finite(values) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def is_proportion(metric: str | None, values) -> bool:
    """A metric whose scale is [0, 1]: a known proportion name with every value within it."""
    name = (metric or "").strip().lower().replace(" ", "_").replace("-", "_")
    return name in PROPORTIONS and all(0.0 <= v <= 1.0 for v in _finite(values))


def quality_range(metric: str | None, values, lows=(), highs=()) -> list[float]:
    """The y range: [0, 1] padded for a proportion (wider only if an interval end lies outside it); else the
    values and interval ends, padded."""
    ends = _finite(list(values) + list(lows) + list(highs))
    if is_proportion(metric, values):
        low, high = min([0.0] + ends), max([1.0] + ends)
    elif ends:
        low, high = min(ends), max(ends)
    else:
        low, high = 0.0, 1.0
    span = high - low or max(abs(high) * 0.2, 1.0 if not high else 1e-9)  # a single value: room around it
    return [low - BELOW * span, high + ABOVE * span]


def latency_range(values) -> list[float] | None:
    """The x range: the latencies padded on both sides, not below zero; None when there are none."""
    found = _finite(values)
    if not found:
        return None
    low, high = min(found), max(found)
    span = high - low or max(abs(high) * 0.5, 1.0)
    return [max(0.0, low - SIDES * span) if low >= 0 else low - SIDES * span, high + SIDES * span]


def label_position(x: float, x_range: list[float] | None) -> str:
    """Where a point's label goes: above it, leaning inwards near either end of the x axis so it is not cut."""
    if x_range is None or x is None or x_range[1] <= x_range[0]:
        return "top center"
    share = (x - x_range[0]) / (x_range[1] - x_range[0])
    return "top right" if share < 0.2 else "top left" if share > 0.8 else "top center"
