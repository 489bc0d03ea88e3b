"""The common figure layout: room for the toolbar and the title, legends clear of titles, colour scales on
heat maps (figure objects only; tests/test_explain_browser.py looks at them in a browser)."""
import numpy as np
import pytest

from llm_lab import plotting
from llm_lab.plotting import LEGEND_ROW, MODEBAR, TITLE_LINE, layout


def _bar(title="", **kw):
    import plotly.graph_objects as go

    return layout(go.Figure(go.Bar(x=["a", "b"], y=[1, 2], name="s")), title, 300, **kw)


def _title_band(fig) -> tuple[float, float]:
    """Pixels from the top of the figure taken by the title: it hangs from the container's top under the
    toolbar's strip (pad.t), one TITLE_LINE per line."""
    t = fig.layout.title
    assert (t.yref, t.y, t.yanchor) == ("container", 1, "top")
    lines = t.text.count("<br>") + 1
    return t.pad.t, t.pad.t + lines * TITLE_LINE


def test_title_sits_under_the_toolbar_and_above_the_plot():
    fig = _bar("Examples per label")
    top, bottom = _title_band(fig)
    assert top >= MODEBAR  # the modebar (≈30 px, top right, on hover) never covers the title
    assert fig.layout.margin.t >= bottom  # and the title ends above the plot area
    assert fig.layout.height == 300 + fig.layout.margin.t - plotting.MARGIN["t"]  # the plot keeps its height


def test_a_long_title_wraps_and_the_margin_grows():
    words = "Faithfulness of every method on every model <b>bold</b> " * 4
    fig = _bar(words, title_chars=40)
    lines = fig.layout.title.text.split("<br>")
    assert len(lines) >= 5 and all(len(line.replace("&lt;", "<").replace("&gt;", ">")) <= 40 for line in lines)
    assert "<b>" not in fig.layout.title.text and "&lt;b&gt;bold&lt;/b&gt;" in fig.layout.title.text
    assert fig.layout.margin.t >= _title_band(fig)[1]
    assert _bar("short").layout.margin.t < fig.layout.margin.t


def test_no_title_still_leaves_the_toolbar_its_strip():
    fig = _bar("", margin={"t": 10})
    assert fig.layout.margin.t >= MODEBAR and not fig.layout.title.text


def test_legend_on_top_sits_between_title_and_plot():
    fig = _bar("Examples per label (stacked by split)", legend="top", showlegend=True)
    lg = fig.layout.legend
    assert (lg.yref, lg.y, lg.yanchor, lg.orientation) == ("paper", 1, "bottom", "h")  # grows upwards from the plot
    # the legend's row [margin.t − LEGEND_ROW, margin.t] lies under the title's band
    assert fig.layout.margin.t - LEGEND_ROW >= _title_band(fig)[1]


def test_legend_below_sits_under_the_axis():
    fig = _bar("Curves", legend="below", margin={"b": 40}, xaxis_title="step")
    lg = fig.layout.legend
    assert (lg.yref, lg.y, lg.yanchor) == ("container", 0, "bottom")  # the figure's bottom edge, not the axis title
    assert fig.layout.margin.b >= 40 + LEGEND_ROW


def test_subplot_titles_get_their_own_line():
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(1, 2, subplot_titles=["left", "right"])
    fig.add_trace(go.Bar(x=[1], y=[1]), 1, 1)
    fig = layout(fig, "Title", 300)
    assert fig.layout.margin.t >= _title_band(fig)[1] + TITLE_LINE


def test_attention_heat_maps_have_colour_scales():
    from llm_lab.explain import attention as att
    from llm_lab.explain import attention_plots as figs

    rng = np.random.default_rng(0)
    a = rng.random((2, 3, 5, 5)).astype(np.float32)
    a /= a.sum(-1, keepdims=True)
    tokens = [f"t{i}" for i in range(5)]
    fig, _ = figs.head_heatmap(a[0, 0], tokens, "Layer 0, head 0")
    assert fig.data[0].showscale and fig.data[0].colorbar.title.text == "attention"
    fig, _ = figs.model_view(a, tokens)
    assert fig.data[0].showscale
    assert fig.layout.margin.t >= MODEBAR + TITLE_LINE  # the head names on top stay clear of the toolbar
    fig = figs.head_summary_figure(att.head_summary(a))
    heat = [t for t in fig.data if t.type == "heatmap"]
    assert len(heat) == 5 and {t.coloraxis for t in heat} == {"coloraxis", "coloraxis2"}
    entropy, shares = fig.layout.coloraxis, fig.layout.coloraxis2
    assert entropy.showscale and shares.showscale
    assert entropy.colorbar.title.text == "bits" and (shares.cmin, shares.cmax) == (0, 1)
    assert entropy.cmax == pytest.approx(float(np.max(att.head_summary(a)["entropy"])), rel=1e-6)
    # the two colour bars are stacked, not drawn over each other
    assert entropy.colorbar.yanchor == "top" and shares.colorbar.yanchor == "bottom"
    assert entropy.colorbar.len + shares.colorbar.len <= 1
    assert fig.layout.margin.t >= MODEBAR + TITLE_LINE  # subplot titles under the toolbar


def test_attribution_figures_fit_their_titles():
    from llm_lab.explain import plots
    from llm_lab.explain.attributions import Attribution

    a = Attribution("m", "ig", "Integrated Gradients (layer IG on embeddings)", ["[CLS]", "a", "b", "[SEP]"],
                    [0.0, 0.5, -0.2, 0.0], 1, "positive", [0.3, 0.7], ["negative", "positive"],
                    special=[True, False, False, True])
    fig = plots.top_tokens_bar(a)
    lines = fig.layout.title.text.split("<br>")
    assert len(lines) >= 2 and max(map(len, lines)) <= 30  # a quarter-width column shows it whole
    assert fig.layout.margin.t >= _title_band(fig)[1]
    fig = plots.faithfulness_bar([{"method": "m · IG", "comprehensiveness": 0.2, "sufficiency": 0.1}])
    assert fig.layout.margin.t - LEGEND_ROW >= _title_band(fig)[1]
