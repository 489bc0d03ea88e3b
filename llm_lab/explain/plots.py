"""Plotly figures for the attributions page (the page only draws them). Plotly is imported lazily."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..plotting import DIVERGING, NEGATIVE, POSITIVE, layout

if TYPE_CHECKING:
    import plotly.graph_objects as go


def top_tokens_bar(attribution, k: int = 12) -> go.Figure:
    import plotly.graph_objects as go

    top = attribution.top(len(attribution.tokens))
    top = sorted(top, key=lambda r: -abs(r[2]))[:k][::-1]
    fig = go.Figure(go.Bar(x=[r[2] for r in top], y=[f"{r[0]}:{r[1]}" for r in top], orientation="h",
                           marker_color=[POSITIVE if r[2] >= 0 else NEGATIVE for r in top]))
    # drawn in one of up to four columns: the title wraps early rather than running under the next one
    return layout(fig, f"Top tokens · {attribution.method_name}", 100 + 22 * len(top), title_chars=30,
                  xaxis_title=f"attribution to '{attribution.target_label}'")


def generation_heatmap(gen) -> go.Figure:
    import plotly.graph_objects as go

    arr = gen.array()
    cols = [f"{i}:{t}" for i, t in enumerate(gen.prompt_tokens)] + \
           [f"{len(gen.prompt_tokens) + i}:{t}*" for i, t in enumerate(gen.output_tokens)]
    rows = [f"{i}:{t}" for i, t in enumerate(gen.output_tokens)]
    scale = float(np.nanmax(np.abs(arr))) if np.isfinite(arr).any() else 1.0
    fig = go.Figure(go.Heatmap(z=arr, x=cols, y=rows, colorscale=DIVERGING, zmin=-scale, zmax=scale, showscale=True,
                               colorbar=dict(title=dict(text="attribution"), thickness=12),
                               hovertemplate="output %{y}<br>input %{x}<br>%{z:.4f}<extra></extra>"))
    return layout(fig, f"{gen.method_name}: each generated token (rows) attributed to earlier tokens (* = generated)",
                  min(1000, 200 + 18 * len(rows)), yaxis=dict(autorange="reversed"), xaxis=dict(tickangle=-60))


def faithfulness_bar(rows: list[dict]) -> go.Figure:
    """Comprehensiveness and sufficiency per method, with their intervals as error bars when the rows carry
    them (`faithfulness.rank`'s rows: `<kind>_low`, `<kind>_high`, n)."""
    import plotly.graph_objects as go

    names = [r["method"] for r in rows]

    def bar(kind: str, label: str) -> go.Bar:
        values = [r[kind] for r in rows]
        errors = None
        if rows and all(r.get(f"{kind}_low") is not None for r in rows):
            errors = dict(type="data", symmetric=False, array=[r[f"{kind}_high"] - r[kind] for r in rows],
                          arrayminus=[r[kind] - r[f"{kind}_low"] for r in rows])
        return go.Bar(name=label, x=names, y=values, error_y=errors,
                      customdata=[r.get("n") for r in rows],
                      hovertemplate="%{x}<br>%{y:.3g}" + (" (n=%{customdata})" if errors else "") + "<extra></extra>")

    fig = go.Figure([bar("comprehensiveness", "comprehensiveness ↑"), bar("sufficiency", "sufficiency ↓")])
    interval = " · bars: 95% interval" if rows and rows[0].get("comprehensiveness_low") is not None else ""
    return layout(fig, f"Faithfulness (AOPC over deleting the top 10–50% tokens){interval}", 300, legend="top",
                  showlegend=True, barmode="group")


def class_tokens_bar(aggregate: dict, k: int = 12) -> go.Figure:
    """aggregate: {class: [{token, mean, count}, ...]} from the dataset job."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    classes = list(aggregate)
    fig = make_subplots(1, max(1, len(classes)), subplot_titles=[str(c) for c in classes])
    for i, c in enumerate(classes):
        rows = aggregate[c][:k][::-1]
        fig.add_trace(go.Bar(x=[r["mean"] for r in rows], y=[r["token"] for r in rows], orientation="h",
                             showlegend=False, hovertemplate="%{y}: %{x:.4f}<extra></extra>"), 1, i + 1)
    return layout(fig, "Tokens with the largest mean attribution, per predicted class", 110 + 22 * k)
