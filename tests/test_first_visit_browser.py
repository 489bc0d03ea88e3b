"""Real browser, first visit: compare the two built-in causal LMs and two classifiers without training anything."""
import re

import pytest

from llm_lab import lm_quality, registry
from llm_lab.access import LOCAL
from tests.conftest import (
    assert_no_exception_box,
    open_page,
    screenshot,
    wait_for,
    wait_idle,
)
from tests.test_compare_browser import pick

pytestmark = pytest.mark.browser


def run_comparison(page) -> str:
    wait_idle(page)
    page.keyboard.press("Escape")  # close a multiselect's list that may still be open
    wait_idle(page)
    # found by its widget key, not by role and name: on CI get_by_role saw no "Compare" button for 180 s while the
    # page's text showed one (the accessibility tree can hide what a popover covers); the key does not depend on it
    button = page.locator(".st-key-c_run button")
    try:
        button.wait_for(timeout=180_000)  # a busy machine may still be drawing the form
    except Exception as exc:  # say what the page showed instead (an error box, another view), not only "timeout"
        screenshot(page, "first-visit-no-compare-button")
        raise AssertionError("no Compare button; the page shows: "
                             + page.locator("[data-testid='stMain']").inner_text()[:2000]) from exc
    screenshot(page, "first-visit-before-compare")
    button.click(timeout=120_000)
    page.wait_for_url(re.compile(r"comparison=\w+"), timeout=180_000)
    wait_idle(page)
    main = page.locator("[data-testid='stMain']")
    wait_for(lambda: "Word-level differences" in main.inner_text() or "agree" in main.inner_text(), timeout=120)
    wait_idle(page)
    assert_no_exception_box(page)
    return re.search(r"comparison=(\w+)", page.url).group(1)


def test_first_visit_compares_built_in_models(page, lab_server, monkeypatch):
    from llm_lab import store
    from llm_lab.compare import saved

    monkeypatch.setenv("LLM_LAB_HOME", str(lab_server["home"]))
    store.reset_connections()
    open_page(page, lab_server, "compare")
    main = page.locator("[data-testid='stMain']")
    # a newcomer's generation comparison starts with the chat model against tiny-gpt (the two built-in base LMs
    # without it), and the size ladder
    chat = registry.chat_model_missing() is None
    pair = [registry.CHAT_MODEL, "tiny-gpt"] if chat else ["tiny-gpt", "small-gpt"]
    picker = page.locator("[data-testid='stMultiSelect']").filter(has_text="Models (two to four)")
    assert all(m in picker.inner_text() for m in pair), picker.inner_text()
    assert "Size ladder: tiny-gpt < small-gpt" in main.inner_text()
    cid = run_comparison(page)
    screenshot(page, "first-visit-compare-lms")
    comp = saved.get(LOCAL, cid)
    assert sorted(comp.models) == sorted(pair)
    texts = {m: [r["text"] for r in comp.outputs[m].rows] for m in comp.models}
    assert all(t.strip() for m in texts for t in texts[m])          # no empty continuations
    assert texts[pair[0]] != texts[pair[1]]                        # two models, two answers
    if chat:  # plain greedy (the shown defaults for a chat model): it answers the first question
        assert comp.inputs[0]["text"] == "What is the capital of France?" and comp.settings["chat"]
        assert "Paris" in texts[registry.CHAT_MODEL][0], texts[registry.CHAT_MODEL]
        assert comp.settings["repetition_penalty"] == 1 and comp.settings["no_repeat_ngram_size"] == 0
    else:
        for m in comp.models:                                      # words, not loops
            assert lm_quality.distinct_n(texts[m]) > 0.6, texts[m]
        assert comp.settings["repetition_penalty"] > 1 and comp.settings["no_repeat_ngram_size"] == 3  # shown defaults

    # two classifiers: the shipped sentiment model and minilm with its new head
    open_page(page, lab_server, "compare")
    page.get_by_text("Classification", exact=True).click()
    wait_idle(page)
    pick(page, "Models (two to four)", ["minilm-sentiment", "minilm"])
    cid = run_comparison(page)
    screenshot(page, "first-visit-compare-classifiers")
    comp = saved.get(LOCAL, cid)
    labels = [r["label"] for r in comp.outputs["minilm-sentiment"].rows]
    assert labels[:2] == ["positive", "negative"], labels
    store.reset_connections()
