"""One look for every plotly figure: the colours and `layout` (title, height, margins, legend).

Every `plots` module builds its figure and finishes it with `layout(fig, title, height, …)`.
Plotly is not imported here, and the plot modules import it inside their functions: a page
that draws no figure does not pay for it at start-up.

Plotly draws a subset of HTML in every text it shows (<a href>, <b>, <s>, <br>, …): `layout` escapes
the text that names what a user supplied (categories on the axes, trace names, titles, axis titles,
annotations), so a label, a task or a model name such as '<a href="…">' shows as it is. Text placed
by a plot module itself (`text=`, `hovertemplate=`) goes through `plain` there.

Room at the top: plotly's toolbar (the modebar: camera, zoom, …) appears on hover over the top right corner
of a figure, on top of whatever is drawn there. `layout` keeps a strip of MODEBAR pixels free for it above
the title, wraps a long title onto more lines (TITLE_CHARS, fewer for a figure drawn in a narrow column),
and makes the top margin tall enough for the strip, the title's lines and a legend placed on top; the
figure grows by what it adds, so the plot keeps its height. Pages pass `config=CONFIG` to `st.plotly_chart`.
"""
import html
import textwrap
COLORS = ["#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#FF9DA6", "#9D755D"]
MUTED = "#b4c7dc"  # the other bars next to a highlighted COLORS[0] one
GREY = "#7f7f7f"
POSITIVE, NEGATIVE = "rgb(34,139,34)", "rgb(220,20,60)"  # attribution signs
DIVERGING = [[0, NEGATIVE], [0.5, "rgb(255,255,255)"], [1, POSITIVE]]
SEQUENTIAL = "Blues"  # heat maps of counts, probabilities and attention

MARGIN = {"l": 10, "r": 10, "t": 50, "b": 10}
MODEBAR = 36        # px at the top of every figure left free for plotly's toolbar
TITLE_LINE = 22     # px per line of a title
LEGEND_ROW = 30     # px of a one-row horizontal legend above or below the plot
TITLE_CHARS = 90    # a longer title wraps at spaces onto more lines
# "top": just above the plot, under the title (the top margin makes room for both); "below": at the
# bottom of the figure, under the x axis and its title (the bottom margin grows by LEGEND_ROW)
LEGENDS = {
    "top": {"orientation": "h", "x": 1, "xanchor": "right", "y": 1, "yref": "paper", "yanchor": "bottom",
            "traceorder": "normal"},
    "below": {"orientation": "h", "x": 0, "xanchor": "left", "y": 0, "yref": "container", "yanchor": "bottom"},
}
# st.plotly_chart(fig, config=CONFIG): no plotly logo in the toolbar, PNGs at twice the screen's resolution
CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}


def color(i: int) -> str:
    """The i-th colour of the palette (it repeats)."""
    return COLORS[i % len(COLORS)]


def rgba(hex_color: str, alpha: float) -> str:
    """'#4C78A8', 0.5 -> 'rgba(76,120,168,0.50)'."""
    r, g, b = (int(hex_color.lstrip("#")[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha:.2f})"


def plain(text):
    """`text` for plotly: shown as it is, not as plotly's HTML. Anything not a str is returned as it is."""
    return html.escape(text, quote=False) if isinstance(text, str) else text


def _plain_values(values):
    """A trace's x or y with its strings escaped; numbers (and numeric arrays) untouched."""
    if values is None or isinstance(values, str):
        return plain(values)
    if getattr(values, "dtype", None) is not None and values.dtype.kind in "biufcmM":
        return values
    values = list(values)
    return [plain(v) for v in values] if any(isinstance(v, str) for v in values) else values


def plain_text(fig):
    """Escape, in place, the text of `fig` that can carry what a user supplied (see the module's doc)."""
    for trace in fig.data:
        for attr in ("x", "y", "name", "labels"):
            value = getattr(trace, attr, None)
            if value is not None:
                new = _plain_values(value)
                if new is not value:
                    trace[attr] = new
    def fix_title(obj):
        title = getattr(obj, "title", None)
        if title is not None and isinstance(title.text, str):
            title.text = plain(title.text)
    fix_title(fig.layout)
    fix_title(fig.layout.legend)
    fig.for_each_xaxis(fix_title)
    fig.for_each_yaxis(fix_title)
    for note in fig.layout.annotations:
        if isinstance(note.text, str):
            note.text = plain(note.text)
    return fig


def title_lines(title: str, chars: int = TITLE_CHARS) -> list[str]:
    """`title` wrapped at spaces into lines of at most `chars` characters (a longer word stays whole)."""
    return textwrap.wrap(title, chars, break_long_words=False, break_on_hyphens=False) if title else []


def top_margin(lines: int, legend_on_top: bool = False) -> int:
    """The top margin a figure needs: the toolbar's strip, `lines` of title, a legend on top."""
    return MODEBAR + TITLE_LINE * lines + (LEGEND_ROW if legend_on_top else 0) + (6 if lines or legend_on_top else 0)


def _has_subplot_titles(fig) -> bool:
    """Whether text sits on top of the plot area (make_subplots' titles of the first row)."""
    return any(a.yref == "paper" and a.y is not None and a.y >= 1 and a.yanchor == "bottom"
               for a in fig.layout.annotations)


def layout(fig, title: str = "", height: int = 360, legend=None, margin: dict | None = None,
           title_chars: int = TITLE_CHARS, **more):
    """Give `fig` the common look and return it.

    legend: None keeps plotly's default, False hides it, "top" (above the plot, right-aligned) or
    "below" (under the x axis) places a horizontal legend, a dict is the legend's own settings
    (plotly still hides a legend of one trace unless `showlegend=True` is given).
    margin: the sides that differ from MARGIN; the top one is raised to `top_margin` (toolbar, title,
    legend on top) and the figure grows by what that adds. title_chars: where the title wraps (a figure
    in a narrow column passes fewer). `more` goes to `fig.update_layout` as it is."""
    lines = title_lines(title, title_chars)
    asked = {**MARGIN, **(margin or {})}
    top = top_margin(len(lines), legend == "top") + TITLE_LINE * _has_subplot_titles(fig)
    margin = {**asked, "t": max(asked["t"], top)}
    if legend == "below":
        margin["b"] += LEGEND_ROW
    settings = {"height": height + margin["t"] - asked["t"], "margin": margin, "colorway": COLORS}
    if legend is False:
        settings["showlegend"] = False
    elif legend is not None:
        settings["legend"] = LEGENDS[legend] if isinstance(legend, str) else legend
    fig.update_layout(**settings, **more)
    plain_text(fig)
    # set after plain_text: the lines are escaped one by one and joined with plotly's <br>
    fig.update_layout(title=dict(text="<br>".join(plain(line) for line in lines), x=0, xref="container",
                                 xanchor="left", y=1, yref="container", yanchor="top", pad={"t": MODEBAR, "l": 6})
                      if lines else dict(text=None))
    return fig
