"""Text a user supplied shows as plain text (no links, images, HTML), and every result has a permalink.

`ui.common.plain` escapes what Streamlit would render as Markdown; `llm_lab.plotting.layout` escapes what
plotly would render as HTML; `ui.common.permalink` builds the address that opens one result. AppTests check
the Markdown the pages send and that each permalink opens its item; one browser test checks what a person
sees.
"""
import re
from urllib.parse import quote

import pytest

from llm_lab import data, registry
from llm_lab.access import LOCAL, Actor
from tests.conftest import app_test, assert_no_exception_box, no_exceptions, open_page, screenshot, wait_idle
from ui.common import WORD_JOINER, plain, strip_invisible

LINK = "[click](http://evil.example/x)"
IMAGE = "![img](http://evil.example/i.png)"
HTML = "<img src=x onerror=alert(1)>"
EVIL = f"{LINK} {IMAGE} {HTML} http://evil.example/auto www.evil.example/w a@evil.example :red[red] :material/home:"
REVIEWS = "text,label\n" + "\n".join(f"review {i} was {'great' if i % 2 else 'bad'},{'positive' if i % 2 else 'negative'}"
                                     for i in range(10))


def _unescaped(body: str) -> list[str]:
    """What in `body` would make a link, an image, HTML, an icon or an autolink (a page's own ** and : aside)."""
    return re.findall(r"(?<!\\)[\[\]<]|(?i:https?:|www\.|\w@|:material/)", body)


def _bodies(at) -> list[str]:
    """Every Markdown body and label an AppTest run sent."""
    out = [e.value for kind in ("markdown", "caption", "error", "warning", "info", "success", "title", "header",
                                "subheader") for e in getattr(at, kind)]
    out += [e.label for kind in ("expander", "metric", "checkbox") for e in getattr(at, kind)]
    return [str(b) for b in out]


def _codes(at) -> str:
    return "\n".join(c.value for c in at.code)


# ---------------------------------------------------------------- plain: the escaping itself
@pytest.mark.parametrize("text", [LINK, IMAGE, HTML, EVIL, "**bold** _it_ ~~s~~ `code` $x^2$", "# h", "> q",
                                  "- item", "1. one", "2) two", "---", "a | b", "[ref]: http://evil.example/r",
                                  "&amp; &#65;", "x\\y", "<http://evil.example/angle>", "mailto:a@evil.example"])
def test_plain_leaves_no_markdown_construct(text):
    out = plain(text)
    assert not _unescaped(out) and not re.findall(r"(?<!\\)[`*_:~$&|#>+=^{}]", out), out
    # nothing is lost: without the backslashes and the invisible joiners it is the text again
    assert re.sub(r"\\(.)", r"\1", strip_invisible(out)) == text


def test_plain_keeps_ordinary_text_readable():
    assert plain("tb-page v1.2 (demo-reviews), don't stop!") == "tb-page v1.2 (demo-reviews), don't stop!"
    assert plain(42) == "42"
    assert plain("    indented\n  - list") == "indented\n\\- list"  # no indented code block, no list
    assert WORD_JOINER in plain("see https://x.org") and WORD_JOINER in plain("a@b.org")


def test_plotly_text_is_escaped_by_layout():
    import plotly.graph_objects as go

    from llm_lab.plotting import layout

    evil = '<a href="http://evil.example/p">p</a>'
    fig = layout(go.Figure(go.Bar(x=[evil, "ok"], y=[1, 2], name=evil)), evil, xaxis_title=evil)
    assert fig.data[0].x[0] == fig.data[0].name == fig.layout.title.text == fig.layout.xaxis.title.text \
        == '&lt;a href="http://evil.example/p"&gt;p&lt;/a&gt;'
    assert list(fig.data[0].y) == [1, 2]


# ---------------------------------------------------------------- permalink: the address
def test_permalink_carries_the_workspace_only_when_not_default(monkeypatch):
    from ui import backend, common

    assert common.permalink("views/data.py", dataset="my set") == "/datasets?dataset=my%20set"
    assert common.permalink("views/home.py") == "/"
    assert common.permalink("views/arena.py", pool=["a", "b"], empty=None) == "/arena?pool=a&pool=b"
    monkeypatch.setattr(backend, "actor", lambda: Actor("ann@example.org", "editor", "team-a", ("team-a",)))
    assert common.permalink("views/compare.py", comparison="abc") == "/compare?comparison=abc&ws=team-a"
    assert common.local_link("/attributions?model=m&text=a+b&ws=other") == "/attributions?model=m&text=a%20b&ws=team-a"


def test_permalink_under_a_base_path():
    from streamlit import config

    from ui import common

    before = config.get_option("server.baseUrlPath")
    config.set_option("server.baseUrlPath", "/lab/")
    try:
        assert common.permalink("views/models.py", model="minilm", head="encoder") == "/lab/models?model=minilm&head=encoder"
        assert common.permalink("views/home.py") == "/lab"
    finally:
        config.set_option("server.baseUrlPath", before)


# ---------------------------------------------------------------- AppTest: pages escape, permalinks open their item
def test_dataset_permalink_opens_it_and_its_description_is_plain():
    data.import_dataset(LOCAL, "md-set", "r.csv", REVIEWS.encode(), description=EVIL)
    at = app_test("views/data.py")
    at.query_params["dataset"] = "md-set"
    at.run()
    no_exceptions(at)
    assert at.selectbox(key="ds_pick").value == "md-set"  # not the first dataset of the list
    assert plain(EVIL) in [c.value for c in at.caption]
    assert all(not _unescaped(b) for b in _bodies(at) if "evil" in b), [b for b in _bodies(at) if "evil" in b]
    assert "/datasets?dataset=md-set" in _codes(at)
    missing = app_test("views/data.py")
    missing.query_params["dataset"] = LINK
    missing.run()
    no_exceptions(missing)
    assert any(plain(repr(LINK)) in w.value for w in missing.warning)


def test_models_url_value_shows_as_plain_text_in_the_error_box():
    at = app_test("views/models.py")
    at.query_params["model"] = "[x](http://evil.example)"
    at.run()
    no_exceptions(at)
    assert at.error, "the bad model name gets its message"
    assert plain("[x](http://evil.example)") in at.error[0].value
    assert not [b for b in _bodies(at) if "evil" in b and _unescaped(b)]


def test_model_card_has_its_permalink():
    at = app_test("views/models.py")
    at.query_params.update({"model": "minilm", "head": "encoder"})
    at.run()
    no_exceptions(at)
    assert "/models?model=minilm&head=encoder" in _codes(at)


def _bench_run(model_path: str) -> tuple[str, str, list[str]]:
    """Two benchmark runs; the first has a task named in Markdown and HTML, and a task that fails."""
    from llm_lab.bench import jobs as bench_jobs, suite as suites

    data.import_dataset(LOCAL, "md-reviews", "r.csv", REVIEWS.encode(), recipe=data.Recipe(train=1.0, validation=0.0))
    names = [f"{LINK} <a href='http://evil.example/p'>p</a>", f"{IMAGE} {HTML}"]
    tasks = [{"name": names[0], "type": "classification", "dataset": "md-reviews"},
             {"name": names[1], "type": "classification", "dataset": "no-such-dataset"}]
    first = bench_jobs.submit(LOCAL, suites.to_yaml("md-suite", tasks), [model_path])  # jobs run inline in tests
    second = bench_jobs.submit(LOCAL, suites.to_yaml("other-suite", tasks[:1]), [model_path])
    return first, second, names


def test_benchmark_result_permalink_and_plain_task_names(tiny_bert):
    first, second, names = _bench_run(str(tiny_bert))
    at = app_test("views/benchmarks.py")
    at.query_params["result"] = first  # not the newest run: the permalink picks it
    at.run()
    no_exceptions(at)
    assert at.selectbox(key="b_run_pick").value == first
    assert f"/benchmarks?result={first}" in _codes(at)
    failed = [e.value for e in at.error]
    assert len(failed) == 1 and plain(f"{tiny_bert} / {names[1]}") in failed[0], failed
    assert not [b for b in _bodies(at) if "evil" in b and _unescaped(b)]
    specs = [c.proto.spec for c in at.get("plotly_chart")]
    assert specs and all("<a href" not in s for s in specs) and any("&lt;a href=" in s for s in specs)
    at.selectbox(key="b_run_pick").set_value(second).run()
    no_exceptions(at)
    assert at.query_params["result"] in (second, [second])  # the address follows the choice
    assert f"/benchmarks?result={second}" in _codes(at)


@pytest.fixture
def page_models(tiny_bert, tiny_gpt2):
    from ui import backend

    for name, path, head in [("pl-clf", tiny_bert, "classifier"), ("pl-lm-a", tiny_gpt2, "causal-lm"),
                             ("pl-lm-b", tiny_gpt2, "causal-lm")]:
        registry.register(LOCAL, registry.ModelEntry(name, "local", str(path), head))
    backend.clear()
    yield
    backend.clear()


def test_attention_permalink_opens_model_text_layer_and_head(page_models):
    at = app_test("views/attention.py")
    at.query_params.update({"model": "pl-clf", "text": "a [b](http://evil.example) c", "layer": "1", "head": "1"})
    at.run()
    no_exceptions(at)
    assert at.selectbox(key="att_model").value == "pl-clf"
    assert at.selectbox(key="att_layer").value == 1 and at.selectbox(key="att_head").value == 1
    assert "/attention?model=pl-clf&text=a%20%5Bb%5D%28http%3A%2F%2Fevil.example%29%20c&layer=1&head=1" in _codes(at)


def test_attribution_permalink_runs_the_result_again(page_models):
    at = app_test("views/attributions.py")
    at.query_params.update({"model": "pl-clf", "text": "a dull and boring plot", "method": ["saliency", "ablation"],
                            "baseline": "mask"})
    at.run()
    no_exceptions(at)
    titles = [m.value for m in at.markdown if m.value.startswith("**")]
    assert titles[:2] == ["**Saliency** · pl-clf", "**Feature Ablation** · pl-clf"], titles
    link = next(c.value for c in at.code if "/attributions?" in c.value)
    assert "method=saliency&method=ablation" in link and "baseline=mask" in link and "text=a%20dull" in link
    gen = app_test("views/attributions.py")
    gen.query_params.update({"model": "pl-lm-a", "text": "A list is", "method": "gen_ig", "new": "3", "steps": "4"})
    gen.run()
    no_exceptions(gen)
    assert gen.radio(key="attr_mode").value == "Generation" and not gen.error
    assert "Output:" in " ".join(m.value for m in gen.markdown)
    assert any("/attributions?model=pl-lm-a&text=A%20list%20is&method=gen_ig&new=3&steps=4" in c.value
               for c in gen.code)


def test_arena_leaderboard_permalink_names_its_pool(page_models):
    at = app_test("views/arena.py")
    at.query_params["pool"] = ["pl-lm-a", "pl-lm-b"]
    at.run()
    no_exceptions(at)
    assert at.multiselect(key="a_pool").value == ["pl-lm-a", "pl-lm-b"]
    assert at.toggle(key="a_only_pool").value is True
    assert "/arena?pool=pl-lm-a&pool=pl-lm-b" in _codes(at)


# ---------------------------------------------------------------- a real browser
def _evil_elements(page) -> list[str]:
    """Links (HTML or SVG) and images pointing at evil.example anywhere on the page."""
    return page.evaluate("""() => [
        ...[...document.querySelectorAll('a')].map(a => a.getAttribute('href') || a.getAttribute('xlink:href')
             || (a.href && a.href.baseVal) || ''),
        ...[...document.querySelectorAll('img, image')].map(i => i.getAttribute('src') || i.getAttribute('href') || '')
    ].filter(u => u.includes('evil.example'))""")


@pytest.mark.browser
def test_browser_shows_user_text_as_plain_text(page, lab_server, tiny_bert, monkeypatch):
    from llm_lab import store

    monkeypatch.setenv("LLM_LAB_HOME", str(lab_server["home"]))  # write into the server's store
    store.reset_connections()
    try:
        data.import_dataset(LOCAL, "md-browser", "r.csv", REVIEWS.encode(), description=EVIL, replace=True)
        first, _, names = _bench_run(str(tiny_bert))
    finally:
        store.reset_connections()
    page.set_viewport_size({"width": 1400, "height": 2400})
    main = page.locator("[data-testid='stMain']")

    open_page(page, lab_server, "")  # a fresh server learns its pages on the first run
    open_page(page, lab_server, "datasets?dataset=md-browser")
    main.get_by_text("click", exact=False).first.wait_for()
    link = page.locator("[data-testid='stCode']").filter(has_text="dataset=md-browser")
    link.wait_for()  # the permalink, with the host the browser used
    assert link.inner_text().strip() == f"{lab_server['url']}/datasets?dataset=md-browser"
    page.locator("[data-testid='stDataFrame']").last.wait_for()
    wait_idle(page)
    assert_no_exception_box(page)
    assert _evil_elements(page) == []
    shown = strip_invisible(main.inner_text())
    for literal in (LINK, IMAGE, HTML, "http://evil.example/auto", "www.evil.example/w", ":material/home:"):
        assert literal in shown, literal
    screenshot(page, "plain-dataset")

    open_page(page, lab_server, f"benchmarks?result={first}")
    page.locator("[data-testid='stAlertContentError']").first.wait_for()
    page.locator(".main-svg").first.wait_for()
    wait_idle(page)
    assert_no_exception_box(page)
    assert _evil_elements(page) == []
    shown = strip_invisible(main.inner_text())
    assert names[1] in shown  # the failed task's name, in the red box, as typed
    svg = " ".join(page.eval_on_selector_all(".main-svg text", "els => els.map(e => e.textContent)"))
    assert "<a href='http://evil.example/p'>p</a>" in svg  # the task name on the chart, as typed
    screenshot(page, "plain-benchmark")

    open_page(page, lab_server, "models?model=" + quote("[x](http://evil.example)"))
    page.locator("[data-testid='stAlertContentError']").first.wait_for()
    wait_idle(page)
    assert _evil_elements(page) == []
    assert "[x](http://evil.example)" in strip_invisible(page.locator("[data-testid='stAlertContentError']").first.inner_text())
    screenshot(page, "plain-models-url")
