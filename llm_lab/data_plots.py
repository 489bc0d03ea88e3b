"""Plotly figures for the Datasets and Models pages (plotly is imported only when a figure is built)."""
import pandas as pd

from .plotting import COLORS, MUTED, layout


def label_distribution(frame: pd.DataFrame, by_split: bool = True):
    """Bar chart of examples per label, stacked by split when the frame has one."""
    import plotly.graph_objects as go

    labels = frame["label"].astype(str)
    order = labels.value_counts().index.tolist()
    fig = go.Figure()
    if by_split and "split" in frame.columns:
        for i, name in enumerate(s for s in ("train", "validation", "test") if s in set(frame["split"])):
            counts = labels[frame["split"] == name].value_counts().reindex(order, fill_value=0)
            fig.add_bar(x=order, y=counts.values.tolist(), name=name, marker_color=COLORS[i])
        return layout(fig, "Examples per label (stacked by split)", 320, legend="top", showlegend=True,
                      barmode="stack", bargap=0.15)
    counts = labels.value_counts()
    fig.add_bar(x=counts.index.tolist(), y=counts.values.tolist(), marker_color=COLORS[0])
    return layout(fig, "Examples per label", 320, legend=False, bargap=0.15)


def length_histogram(frame: pd.DataFrame, column: str = "text", bins: int = 30):
    """Histogram of text lengths in characters (and the median as a line)."""
    import plotly.graph_objects as go

    lengths = frame[column].astype(str).str.len()
    fig = go.Figure(go.Histogram(x=lengths.tolist(), nbinsx=bins, marker_color=COLORS[1]))
    median = float(lengths.median()) if len(lengths) else 0.0
    fig.add_vline(x=median, line_dash="dash", line_color="#334155",
                  annotation_text=f"median {median:.0f}", annotation_position="top right")
    fig.update_xaxes(title=f"{column} length (characters)")
    fig.update_yaxes(title="examples")
    return layout(fig, f"Length of {column!r}", 320, legend=False, bargap=0.15)


def probabilities(labels: list[str], probs) -> object:
    """Horizontal bar chart of class probabilities, most likely on top."""
    import plotly.graph_objects as go

    pairs = sorted(zip(labels, [float(p) for p in probs]), key=lambda x: x[1])
    fig = go.Figure(go.Bar(x=[p for _, p in pairs], y=[l for l, _ in pairs], orientation="h",
                           marker_color=[COLORS[0] if i == len(pairs) - 1 else MUTED for i in range(len(pairs))],
                           text=[f"{p:.1%}" for _, p in pairs], textposition="auto"))
    fig.update_xaxes(range=[0, 1], tickformat=".0%", title="probability")
    return layout(fig, "Class probabilities", max(180, 60 + 40 * len(pairs)), legend=False, bargap=0.15)
