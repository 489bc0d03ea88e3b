"""Plotly figures for the attributions page (the page only draws them)."""
import numpy as np
import plotly.graph_objects as go

DIVERGING = [[0, "rgb(220,20,60)"], [0.5, "rgb(255,255,255)"], [1, "rgb(34,139,34)"]]


def top_tokens_bar(attribution, k: int = 12) -> go.Figure:
    top = attribution.top(len(attribution.tokens))
    top = sorted(top, key=lambda r: -abs(r[2]))[:k][::-1]
    fig = go.Figure(go.Bar(x=[r[2] for r in top], y=[f"{r[0]}:{r[1]}" for r in top], orientation="h",
                           marker_color=["rgb(34,139,34)" if r[2] >= 0 else "rgb(220,20,60)" for r in top]))
    fig.update_layout(title=f"Top tokens · {attribution.method_name}", height=120 + 22 * len(top),
                      margin=dict(l=10, r=10, t=40, b=10), xaxis_title=f"attribution to '{attribution.target_label}'")
    return fig


def generation_heatmap(gen) -> go.Figure:
    arr = gen.array()
    cols = [f"{i}:{t}" for i, t in enumerate(gen.prompt_tokens)] + \
           [f"{len(gen.prompt_tokens) + i}:{t}*" for i, t in enumerate(gen.output_tokens)]
    rows = [f"{i}:{t}" for i, t in enumerate(gen.output_tokens)]
    scale = float(np.nanmax(np.abs(arr))) if np.isfinite(arr).any() else 1.0
    fig = go.Figure(go.Heatmap(z=arr, x=cols, y=rows, colorscale=DIVERGING, zmin=-scale, zmax=scale,
                               hovertemplate="output %{y}<br>input %{x}<br>%{z:.4f}<extra></extra>"))
    fig.update_layout(title=f"{gen.method_name}: each generated token (rows) attributed to earlier tokens "
                            f"(* = generated)", height=min(1000, 200 + 18 * len(rows)),
                      margin=dict(l=10, r=10, t=50, b=10), yaxis=dict(autorange="reversed"),
                      xaxis=dict(tickangle=-60))
    return fig


def faithfulness_bar(rows: list[dict]) -> go.Figure:
    names = [r["method"] for r in rows]
    fig = go.Figure([go.Bar(name="comprehensiveness ↑", x=names, y=[r["comprehensiveness"] for r in rows]),
                     go.Bar(name="sufficiency ↓", x=names, y=[r["sufficiency"] for r in rows])])
    fig.update_layout(barmode="group", height=320, margin=dict(l=10, r=10, t=40, b=10),
                      title="Faithfulness (AOPC over deleting the top 10–50% tokens)")
    return fig


def class_tokens_bar(aggregate: dict, k: int = 12) -> go.Figure:
    """aggregate: {class: [{token, mean, count}, ...]} from the dataset job."""
    from plotly.subplots import make_subplots

    classes = list(aggregate)
    fig = make_subplots(1, max(1, len(classes)), subplot_titles=[str(c) for c in classes])
    for i, c in enumerate(classes):
        rows = aggregate[c][:k][::-1]
        fig.add_trace(go.Bar(x=[r["mean"] for r in rows], y=[r["token"] for r in rows], orientation="h",
                             showlegend=False, hovertemplate="%{y}: %{x:.4f}<extra></extra>"), 1, i + 1)
    fig.update_layout(height=140 + 22 * k, margin=dict(l=10, r=10, t=40, b=10),
                      title="Tokens with the largest mean attribution, per predicted class")
    return fig
