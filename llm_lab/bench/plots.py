"""Plotly figures for the leaderboard (pages only `st.plotly_chart` them). Plotly is imported lazily."""
from __future__ import annotations

from ..plotting import SEQUENTIAL, color, layout, plain
from .leaderboard import distinct_models, long_table
from .result import TaskResult


def task_bars(summaries: list[TaskResult]):
    """Grouped bars: one panel per task (each with its own scale), one bar per model, error bars from
    the headline interval."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    long = long_table(summaries)
    long = long[long["status"] == "ok"]
    tasks = list(dict.fromkeys(long["task"])) or ["(no results)"]
    titles = [f"{t} ({next(iter(long[long['task'] == t]['metric']), '')})" for t in tasks]
    fig = make_subplots(rows=1, cols=len(tasks), subplot_titles=titles, horizontal_spacing=0.08)
    models = list(dict.fromkeys(long["model"]))
    shown = set()
    for col, task in enumerate(tasks, start=1):
        sub = long[long["task"] == task]
        for m_i, model in enumerate(models):
            row = sub[sub["model"] == model]
            if row.empty:
                continue
            v, lo, hi = row["value"].iloc[0], row["low"].iloc[0], row["high"].iloc[0]
            err = dict(type="data", array=[hi - v if hi is not None and v is not None else 0],
                       arrayminus=[v - lo if lo is not None and v is not None else 0], visible=True)
            fig.add_trace(go.Bar(name=model, x=[model], y=[v], error_y=err, legendgroup=model, showlegend=model not in shown,
                                 marker_color=color(m_i)), row=1, col=col)
            shown.add(model)
    return layout(fig, "Headline metric per task (error bars: its 95% interval; speed: min–max of repeats)", 420,
                  margin={"t": 90, "b": 40}, legend_title="model", bargap=0.3)


def accuracy_latency(summaries: list[TaskResult]):
    """Scatter: each model's quality (first classification-like task, with its 95% interval as an error bar)
    against its speed. A proportion's axis is [0, 1] (padded); labels are never clipped (`plot_axes`)."""
    import plotly.graph_objects as go

    from ..plot_axes import label_position, latency_range, quality_range

    summaries = distinct_models(summaries)
    long = long_table(summaries)
    ok = long[long["status"] == "ok"]
    quality = ok[ok["type"].isin(["classification", "multiple_choice", "generation"])]
    speed = {s.model: s for s in summaries if s.type == "speed" and s.ok}
    pts, xlabel = [], "latency"
    for model in dict.fromkeys(quality["model"]):
        q = quality[quality["model"] == model].iloc[0]
        s = speed.get(model)
        if s:
            x, xlabel = s.metrics.get("latency_p50_ms"), "latency p50 (ms per example)"
        else:
            row = next(x for x in summaries if x.key == q["key"])
            x, xlabel = 1000 / max(row.stats.get("examples_per_s") or 1e-9, 1e-9), "ms per example (batched)"
        pts.append({"model": model, "x": x, "y": q["value"], "low": _number(q["low"]), "high": _number(q["high"]),
                    "n": q.get("n")})
    metric = quality["metric"].iloc[0] if len(quality) else "quality"
    x_range = latency_range([p["x"] for p in pts])
    fig = go.Figure()
    for p in pts:
        err = None
        if p["low"] is not None and p["high"] is not None and p["y"] is not None:
            err = dict(type="data", array=[p["high"] - p["y"]], arrayminus=[p["y"] - p["low"]], visible=True)
        fig.add_scatter(x=[p["x"]], y=[p["y"]], error_y=err, mode="markers+text", text=[plain(p["model"])],
                        textposition=label_position(p["x"], x_range), cliponaxis=False, name=p["model"],
                        marker=dict(size=14))
    y_range = quality_range(metric, [p["y"] for p in pts], [p["low"] for p in pts], [p["high"] for p in pts])
    return layout(fig, f"{metric} against latency (up and left is better; error bars: 95% interval)", 420,
                  legend=False, yaxis_title=metric, xaxis_title=xlabel, yaxis_range=y_range,
                  **({"xaxis_range": x_range} if x_range else {}))


def _number(v):
    """A table cell as a float, or None when it is missing (None or NaN)."""
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if v == v else None


def confusion(result: TaskResult):
    """Heat map of one classification result's confusion matrix (rows true, columns predicted)."""
    import plotly.graph_objects as go

    cm = (result.details or {}).get("confusion_matrix")
    if not cm:
        return None
    fig = go.Figure(go.Heatmap(z=cm["matrix"], x=cm["labels"], y=cm["labels"], colorscale=SEQUENTIAL,
                               text=cm["matrix"], texttemplate="%{text}", hovertemplate="true %{y}<br>predicted %{x}"
                               "<br>%{z} examples<extra></extra>"))
    return layout(fig, f"Confusion matrix — {result.model} / {result.task}", 380, xaxis_title="predicted",
                  yaxis_title="true", yaxis_autorange="reversed")


def per_class_f1(results: list[TaskResult], task: str):
    import plotly.graph_objects as go

    fig = go.Figure()
    for r in distinct_models(results):
        per = (r.details or {}).get("f1_per_class")
        if r.task == task and per:
            fig.add_bar(name=r.model, x=list(per), y=list(per.values()))
    if not fig.data:
        return None
    return layout(fig, f"F1 per class — {task}", 380, barmode="group", yaxis_title="F1", yaxis_range=[0, 1])
