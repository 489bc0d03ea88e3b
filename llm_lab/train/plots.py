"""Plotly figures for training curves: one run's panel, and two runs overlaid."""
import pandas as pd

from ..plotting import GREY, color, layout
from .history import eval_metric_names


def _series(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    return frame[frame["name"] == name].sort_values("step")


def run_curves(frame: pd.DataFrame, title: str = ""):
    """Loss (train and eval), eval metrics and learning rate against the step, in three rows."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.07, row_heights=[0.45, 0.3, 0.25],
                        subplot_titles=("Loss", "Evaluation metrics", "Learning rate"))
    if frame.empty:
        fig.add_annotation(text="No points yet: the first appear after the first logging step.",
                           showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    train, ev = _series(frame, "train_loss"), _series(frame, "eval_loss")
    fig.add_trace(go.Scatter(x=train["step"], y=train["value"], name="train loss", mode="lines",
                             line={"color": color(0)}), row=1, col=1)
    fig.add_trace(go.Scatter(x=ev["step"], y=ev["value"], name="eval loss", mode="lines+markers",
                             line={"color": color(1)}), row=1, col=1)
    for name, label, dash in (("kd_loss", "soft-label (KD) loss", "dot"), ("ce_loss", "gold-label (CE) loss", "dash")):
        s = _series(frame, name)  # a distillation's two terms
        if not s.empty:
            fig.add_trace(go.Scatter(x=s["step"], y=s["value"], name=label, mode="lines",
                                     line={"color": color(0), "dash": dash}), row=1, col=1)
    for i, name in enumerate(eval_metric_names(frame)):
        s = _series(frame, name)
        fig.add_trace(go.Scatter(x=s["step"], y=s["value"], name=name.removeprefix("eval_"), mode="lines+markers",
                                 line={"color": color(i + 2)}), row=2, col=1)
    lr = _series(frame, "lr")
    fig.add_trace(go.Scatter(x=lr["step"], y=lr["value"], name="learning rate", mode="lines",
                             line={"color": GREY}), row=3, col=1)
    fig.update_xaxes(title_text="step", row=3, col=1)
    return layout(fig, title, 620, legend="below", margin={"l": 50, "r": 20, "b": 50}, uirevision="keep")


def overlay(frames: dict[str, pd.DataFrame], metric: str = "train_loss", by: str = "step"):
    """The same curve of several runs on one axis; `by` is "step" or "epoch"."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for i, (label, frame) in enumerate(frames.items()):
        s = _series(frame, metric)
        x = s["step"]
        if by == "epoch":
            epochs = _series(frame, "epoch").set_index("step")["value"]
            x = s["step"].map(epochs)
        fig.add_trace(go.Scatter(x=x, y=s["value"], name=label, mode="lines+markers" if "eval" in metric else "lines",
                                 line={"color": color(i)}))
    return layout(fig, "", 420, legend="below", margin={"l": 50, "r": 20, "t": 30, "b": 40}, xaxis_title=by,
                  yaxis_title=metric.replace("_", " "))
