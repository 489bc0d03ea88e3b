"""Plotly figures for the attention page. Every matrix is capped before it goes to the browser.
Plotly is imported lazily."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..plotting import COLORS, MODEBAR, SEQUENTIAL, TITLE_LINE, layout, plain, rgba
from .attention import MAX_VIEW_TOKENS, cap

if TYPE_CHECKING:
    import plotly.graph_objects as go

LINES_MAX_TOKENS = 64


def head_heatmap(matrix: np.ndarray, tokens: list[str], title: str = "") -> tuple[go.Figure, str]:
    import plotly.graph_objects as go

    m, labels, note = cap(matrix, tokens, MAX_VIEW_TOKENS)
    ticks = [f"{i}:{t}" for i, t in enumerate(labels)] if not note else labels
    fig = go.Figure(go.Heatmap(z=m, x=ticks, y=ticks, colorscale=SEQUENTIAL, zmin=0, zmax=float(m.max() or 1),
                               showscale=True, colorbar=dict(title=dict(text="attention"), thickness=12),
                               hovertemplate="from %{y}<br>to %{x}<br>attention %{z:.3f}<extra></extra>"))
    layout(fig, title, min(900, 240 + 9 * len(labels)),
           xaxis=dict(title="attends to (key)", tickangle=-60), yaxis=dict(title="token (query)", autorange="reversed"))
    return fig, note


def lines_view(matrix: np.ndarray, tokens: list[str], title: str = "", min_weight: float = 0.05) -> tuple[go.Figure, str]:
    """bertviz-style: source tokens left, targets right, line width/opacity = attention.

    Lines are grouped into five weight bands (one trace each), so even 64×64 pairs draw fast."""
    import plotly.graph_objects as go

    m, labels, note = cap(matrix, tokens, LINES_MAX_TOKENS)
    n = len(labels)
    y = -np.arange(n)
    bands = [(min_weight, 0.1), (0.1, 0.2), (0.2, 0.4), (0.4, 0.7), (0.7, 1.01)]
    fig = go.Figure()
    for lo, hi in bands:
        xs, ys = [], []
        src, dst = np.nonzero((m >= lo) & (m < hi))
        for i, j in zip(src, dst):
            xs += [0, 1, None]
            ys += [y[i], y[j], None]
        if xs:
            mid = (lo + min(hi, 1)) / 2
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", hoverinfo="skip", name=f"{lo:.2f}–{min(hi, 1):.2f}",
                                     line=dict(width=1 + 6 * mid, color=rgba(COLORS[0], 0.25 + 0.7 * mid))))
    fig.add_trace(go.Scatter(x=[0] * n, y=y, mode="text", text=[plain(t) for t in labels], textposition="middle left",
                             showlegend=False, hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=[1] * n, y=y, mode="text", text=[plain(t) for t in labels], textposition="middle right",
                             showlegend=False, hoverinfo="skip"))
    layout(fig, title, max(300, 22 * n + 60), legend=dict(title="attention", yanchor="top", y=1),
           xaxis=dict(visible=False, range=[-0.6, 1.6]), yaxis=dict(visible=False))
    return fig, note


def model_view(attentions: np.ndarray, tokens: list[str], cell: int = 16) -> tuple[go.Figure, str]:
    """All layers × heads as small tiles in one heat map, plus a clickable marker per tile
    (customdata = [layer, head]) so a selection opens the tile in the head view."""
    import plotly.graph_objects as go

    layers, heads, t, _ = attentions.shape
    size = min(cell, t)
    gap = 1
    canvas = np.full((layers * (size + gap), heads * (size + gap)), np.nan, dtype=np.float32)
    note = ""
    for l in range(layers):
        for h in range(heads):
            m, _, note = cap(attentions[l, h], tokens, size)
            m = m / max(float(m.max()), 1e-9)
            canvas[l * (size + gap):l * (size + gap) + m.shape[0], h * (size + gap):h * (size + gap) + m.shape[1]] = m
    fig = go.Figure(go.Heatmap(z=canvas, colorscale=SEQUENTIAL, zmin=0, zmax=1, showscale=True, hoverinfo="skip",
                               colorbar=dict(title=dict(text="÷ tile max"), thickness=10)))
    cx, cy, data = [], [], []
    for l in range(layers):
        for h in range(heads):
            cx.append(h * (size + gap) + size / 2 - 0.5)
            cy.append(l * (size + gap) + size / 2 - 0.5)
            data.append([l, h])
    fig.add_trace(go.Scatter(x=cx, y=cy, mode="markers", customdata=data, showlegend=False,
                             marker=dict(size=max(8, 40 - 2 * heads), color="rgba(0,0,0,0.01)", symbol="square"),
                             hovertemplate="layer %{customdata[0]}, head %{customdata[1]}<extra>click to open</extra>"))
    # the head names sit on top: under the toolbar's strip, not under the toolbar
    layout(fig, "", 90 + layers * 60, margin={"l": 40, "t": MODEBAR + TITLE_LINE + 4}, clickmode="event+select",
           dragmode=False,
           xaxis=dict(tickvals=[h * (size + gap) + size / 2 for h in range(heads)],
                      ticktext=[f"H{h}" for h in range(heads)], side="top", showgrid=False),
           yaxis=dict(tickvals=[l * (size + gap) + size / 2 for l in range(layers)],
                      ticktext=[f"L{l}" for l in range(layers)], autorange="reversed", showgrid=False))
    if note:
        note = f"Each tile pools tokens into at most {size}×{size} cells and is scaled to its own maximum."
    return fig, note


def rollout_heatmap(matrix: np.ndarray, tokens: list[str]) -> tuple[go.Figure, str]:
    return head_heatmap(matrix, tokens, "Attention rollout (all layers, heads averaged, residual added)")


def head_summary_figure(summary: dict[str, np.ndarray]) -> go.Figure:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    names = [("entropy", "entropy (bits)", "Viridis"), ("first", "to first token ([CLS]/BOS)", SEQUENTIAL),
             ("last", "to last token ([SEP])", SEQUENTIAL),
             ("previous", "to previous token", SEQUENTIAL), ("self", "to itself", SEQUENTIAL)]
    fig = make_subplots(1, len(names), subplot_titles=[n[1] for n in names], horizontal_spacing=0.05)
    for k, (key, label, scale) in enumerate(names):
        z = summary[key]
        # two colour scales, each with its bar on the right: entropy in bits, the four shares on 0–1
        fig.add_trace(go.Heatmap(z=z, coloraxis="coloraxis" if key == "entropy" else "coloraxis2",
                                 x=[f"H{h}" for h in range(z.shape[1])], y=[f"L{l}" for l in range(z.shape[0])],
                                 hovertemplate=f"%{{y}} %{{x}}<br>{label}: %{{z:.3f}}<extra></extra>"), 1, k + 1)
        fig.update_yaxes(autorange="reversed", row=1, col=k + 1)
    top = max(float(np.nanmax(summary["entropy"])), 1e-9) if summary["entropy"].size else 1.0
    bar = dict(thickness=10, len=0.5, x=1.01, xanchor="left")
    return layout(fig, "", 160 + 22 * summary["entropy"].shape[0], margin={"r": 60},
                  coloraxis=dict(colorscale="Viridis", cmin=0, cmax=top, showscale=True,
                                 colorbar=dict(title=dict(text="bits"), y=1, yanchor="top", **bar)),
                  coloraxis2=dict(colorscale=SEQUENTIAL, cmin=0, cmax=1, showscale=True,
                                  colorbar=dict(title=dict(text="share"), y=0, yanchor="bottom", **bar)))
