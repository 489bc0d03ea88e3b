"""Plotly figures for the Datasets and Models pages (plotly is imported only when a figure is built)."""
import pandas as pd

COLORS = ["#4f46e5", "#0ea5e9", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#64748b"]


def _layout(fig, title: str, height: int = 320):
    fig.update_layout(title=title, height=height, margin=dict(l=10, r=10, t=50, b=10), showlegend=False,
                      bargap=0.15)
    return fig


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
        fig.update_layout(barmode="stack")
        _layout(fig, "Examples per label (stacked by split)")
        fig.update_layout(showlegend=True, legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom",
                                                       traceorder="normal"))
        return fig
    counts = labels.value_counts()
    fig.add_bar(x=counts.index.tolist(), y=counts.values.tolist(), marker_color=COLORS[0])
    return _layout(fig, "Examples per label")


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
    return _layout(fig, f"Length of {column!r}")


def probabilities(labels: list[str], probs) -> object:
    """Horizontal bar chart of class probabilities, most likely on top."""
    import plotly.graph_objects as go

    pairs = sorted(zip(labels, [float(p) for p in probs]), key=lambda x: x[1])
    fig = go.Figure(go.Bar(x=[p for _, p in pairs], y=[l for l, _ in pairs], orientation="h",
                           marker_color=[COLORS[0] if i == len(pairs) - 1 else "#a5b4fc" for i in range(len(pairs))],
                           text=[f"{p:.1%}" for _, p in pairs], textposition="auto"))
    fig.update_xaxes(range=[0, 1], tickformat=".0%", title="probability")
    return _layout(fig, "Class probabilities", height=max(180, 60 + 40 * len(pairs)))
