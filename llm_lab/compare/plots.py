"""Plotly figures for Compare and Arena (pages only st.plotly_chart them). Plotly is imported lazily."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..plotting import COLORS, SEQUENTIAL, layout, plain
from . import rating

if TYPE_CHECKING:
    import plotly.graph_objects as go


def leaderboard(rows: list[dict]) -> go.Figure:
    """Ratings with their bootstrap confidence intervals, best on top."""
    import plotly.graph_objects as go

    rows = sorted(rows, key=lambda r: r["rating"])
    known = [r["ci_low"] is not None and r["ci_high"] is not None for r in rows]
    interval = [f"95% CI {r['ci_low']:.0f}–{r['ci_high']:.0f}" if k else "95% CI: not enough votes"
                for r, k in zip(rows, known)]
    fig = go.Figure(go.Scatter(
        x=[r["rating"] for r in rows], y=[r["model"] for r in rows], mode="markers",
        marker=dict(size=11, color=COLORS[0], symbol=["circle" if k else "circle-open" for k in known]),
        error_x=dict(type="data", symmetric=False, array=[r["ci_high"] - r["rating"] if k else 0 for r, k in zip(rows, known)],
                     arrayminus=[r["rating"] - r["ci_low"] if k else 0 for r, k in zip(rows, known)]),
        customdata=[[r["battles"], text] for r, text in zip(rows, interval)],
        hovertemplate="%{y}: %{x:.0f} (%{customdata[1]}), %{customdata[0]} battles<extra></extra>"))
    fig.update_xaxes(title="Bradley–Terry rating (Elo scale)")
    return layout(fig, "Ratings with 95% bootstrap intervals", 120 + 40 * len(rows))


def win_rate_heatmap(battles) -> go.Figure:
    import plotly.graph_objects as go

    models, rate, counts = rating.pair_matrices(battles)
    text = [[("" if np.isnan(rate[i, j]) else f"{rate[i, j]:.0%}<br>n={int(counts[i, j])}") for j in range(len(models))]
            for i in range(len(models))]
    fig = go.Figure(go.Heatmap(z=rate, x=models, y=models, zmin=0, zmax=1, colorscale="RdBu", text=text,
                               texttemplate="%{text}", hovertemplate="%{y} vs %{x}: %{z:.0%}<extra></extra>",
                               colorbar=dict(title="row wins")))
    fig.update_xaxes(title="opponent")
    fig.update_yaxes(title="model", autorange="reversed")
    return layout(fig, "Win rate of the row model against the column model (ties count half)",
                  160 + 50 * len(models))


def battle_counts(battles) -> go.Figure:
    import plotly.graph_objects as go

    models, _, counts = rating.pair_matrices(battles)
    fig = go.Figure(go.Heatmap(z=counts, x=models, y=models, colorscale=SEQUENTIAL, texttemplate="%{z:.0f}",
                               hovertemplate="%{y} vs %{x}: %{z:.0f} battles<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    return layout(fig, "Battles per pair", 160 + 50 * len(models))


def class_probabilities(comparison, row: int) -> go.Figure:
    """Grouped bars: each model's class probabilities for one input (`comparison`: a runs.Comparison)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for name in comparison.models:
        out = comparison.outputs[name]
        if out.error:
            continue
        probs = out.rows[row]["probs"]
        fig.add_bar(name=name, x=list(probs), y=list(probs.values()),
                    hovertemplate=plain(name) + " %{x}: %{y:.3f}<extra></extra>")
    fig.update_yaxes(range=[0, 1], title="probability")
    return layout(fig, f"Class probabilities for input {comparison.inputs[row]['id']}", 300, barmode="group")


def confusion_between(table) -> go.Figure:
    import plotly.graph_objects as go

    fig = go.Figure(go.Heatmap(z=table.values, x=[str(c) for c in table.columns], y=[str(i) for i in table.index],
                               colorscale=SEQUENTIAL, texttemplate="%{z}"))
    fig.update_xaxes(title=table.columns.name)
    fig.update_yaxes(title=table.index.name, autorange="reversed")
    return layout(fig, "Inputs by the label each model gave", 300)


def generation_summary(comparison) -> go.Figure:
    """Tokens/s and mean log-probability per model, side by side."""
    from plotly.subplots import make_subplots

    ok = [m for m in comparison.models if "error" not in comparison.summary.get(m, {"error": 1})]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("tokens / s (whole run)", "mean log-probability of outputs"))
    fig.add_bar(x=ok, y=[comparison.summary[m]["tokens_per_s"] for m in ok], row=1, col=1, showlegend=False)
    fig.add_bar(x=ok, y=[comparison.summary[m]["mean_logprob"] for m in ok], row=1, col=2, showlegend=False)
    return layout(fig, "", 300)


def size_ladder(rows: list[dict]):
    """Measured quality against size of the built-in causal LMs (`lm_quality.ladder`): lower bits per byte on
    held-out text is better, whatever the tokenizer."""
    import plotly.graph_objects as go

    fig = go.Figure(go.Bar(
        x=[r["model"] for r in rows], y=[r["bits per byte"] for r in rows], marker_color=COLORS[0],
        text=[f"{r['parameters'] / 1e6:.1f}M params · ppl {r['held-out perplexity']:.1f}" for r in rows],
        textposition="outside", cliponaxis=False,
        hovertemplate="%{x}: %{y:.3f} bits/byte<extra></extra>"))
    fig.update_yaxes(title="held-out bits per byte (lower is better)", rangemode="tozero")
    return layout(fig, "Size ladder: built-in causal LMs", height=300, legend=False, margin={"t": 60})
