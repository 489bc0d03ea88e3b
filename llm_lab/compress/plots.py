"""Figures of compress-then-evaluate (pages only `st.plotly_chart` them). Plotly is imported lazily."""
from __future__ import annotations

import math

from ..plotting import GREY, NEGATIVE, color, layout, plain

MIN_MARKER, MAX_MARKER = 12, 48   # px: the marker of the largest model is MAX_MARKER across


def points(report, task: str | None = None) -> list[dict]:
    """One point per model with a quality value and a latency: name, latency, value, interval, size, role,
    and whether it is slower than its parent (a warning of the report)."""
    task = task or report.main_task
    out = []
    for m in report.models:
        q = m.task(task) if task else None
        if q is None or q.value is None or m.speed is None or m.speed.latency_p50_ms is None:
            continue
        out.append({"name": m.name, "latency": m.speed.latency_p50_ms, "value": q.value, "low": q.low,
                    "high": q.high, "metric": q.metric, "higher_is_better": q.higher_is_better,
                    "size": m.size_bytes, "role": m.role,
                    "slower": m.slower})
    return out


def pareto_front(pts: list[dict]) -> list[dict]:
    """The points no other point beats on both latency (lower) and quality (higher, or lower when the metric
    is lower-is-better), in latency order."""
    if not pts:
        return []
    sign = 1 if pts[0]["higher_is_better"] else -1
    front, best = [], -math.inf
    for p in sorted(pts, key=lambda p: (p["latency"], -sign * p["value"])):
        if sign * p["value"] > best:
            front.append(p)
            best = sign * p["value"]
    return front


def _marker_size(size, largest) -> float:
    if not size or not largest:
        return MIN_MARKER
    return max(MIN_MARKER, MAX_MARKER * math.sqrt(size / largest))   # area in proportion to the size on disk


def pareto(report, task: str | None = None):
    """Quality (the task's headline, with its 95% interval) against latency p50 at batch 1; marker area in
    proportion to the size on disk; the parent a star; the Pareto front a dashed staircase; a variant slower
    than its parent outlined in red, with a note. A proportion's axis is [0, 1] (padded) and no label is
    clipped (`plot_axes`). None when no model has both numbers."""
    import plotly.graph_objects as go

    from ..plot_axes import label_position, latency_range, quality_range

    pts = points(report, task)
    if not pts:
        return None
    largest = max((p["size"] or 0) for p in pts)
    front = pareto_front(pts)
    x_range = latency_range([p["latency"] for p in pts])
    fig = go.Figure()
    if len(front) > 1:
        fig.add_scatter(x=[p["latency"] for p in front], y=[p["value"] for p in front], mode="lines",
                        line=dict(color=GREY, dash="dash", shape="hv"), name="Pareto front", hoverinfo="skip")
    for i, p in enumerate(pts):
        size_mb = f"{p['size'] / 2**20:.1f} MB" if p["size"] else "size unknown"
        interval = (f" [{p['low']:.3f}, {p['high']:.3f}]" if p["low"] is not None and p["high"] is not None else "")
        hover = (f"{plain(p['name'])} ({p['role']})<br>{plain(p['metric'])} {p['value']:.4f}{interval}<br>"
                 f"latency p50 {p['latency']:.2f} ms<br>{size_mb}" + ("<br>slower than its parent" if p["slower"] else ""))
        err = None
        if p["low"] is not None and p["high"] is not None:
            err = dict(type="data", array=[p["high"] - p["value"]], arrayminus=[p["value"] - p["low"]], visible=True,
                       color=color(i), thickness=1.2)
        fig.add_scatter(x=[p["latency"]], y=[p["value"]], error_y=err, mode="markers+text", name=p["name"],
                        text=[plain(p["name"] + (" (parent)" if p["role"] == "parent" else ""))],
                        textposition=label_position(p["latency"], x_range), cliponaxis=False,
                        hovertemplate=hover + "<extra></extra>",
                        marker=dict(size=_marker_size(p["size"], largest), color=color(i), opacity=0.8,
                                    symbol="star" if p["role"] == "parent" else "circle",
                                    line=dict(width=3 if p["slower"] else 1, color=NEGATIVE if p["slower"] else "white")))
        if p["slower"]:
            fig.add_annotation(x=p["latency"], y=p["value"], text="slower than its parent", showarrow=True,
                               arrowhead=2, ax=0, ay=40, font=dict(color=NEGATIVE))
    metric = pts[0]["metric"] or "quality"
    better = "up" if pts[0]["higher_is_better"] else "down"
    task_name = task or report.main_task or ""
    return layout(fig, f"{metric} ({task_name}) against latency p50 at batch 1 — marker area: size on disk; "
                       f"{better} and left is better", 460, legend="below", xaxis_title="latency p50 (ms, batch 1)",
                  yaxis_title=metric, xaxis_range=x_range,
                  yaxis_range=quality_range(metric, [p["value"] for p in pts], [p["low"] for p in pts],
                                            [p["high"] for p in pts]))


def drift_bars(report):
    """Spearman correlation of each variant's layer-IG token scores with the parent's, per sampled example."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for i, m in enumerate(report.models):
        if not m.drift or m.drift.status != "ok":
            continue
        rows = [r for r in m.drift.examples if r.get("spearman") is not None]
        fig.add_bar(name=m.name, x=[f"row {r['id']}" for r in rows], y=[r["spearman"] for r in rows],
                    marker_color=color(i), hovertext=[plain(r["text"]) for r in rows])
    if not fig.data:
        return None
    return layout(fig, "Attribution drift: Spearman ρ of layer-IG token scores, variant against parent "
                       "(1 = the same token ranking)", 360, legend="top", barmode="group",
                  xaxis_title="example (dataset row)", xaxis_type="category", yaxis_title="Spearman ρ",
                  yaxis_range=[-1, 1], showlegend=True)   # which variant, even when only one has drift
