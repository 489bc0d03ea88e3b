"""Real browser: compare two models on two prompts, then cast an arena vote."""
import re
import uuid

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from llm_lab.access import LOCAL
from llm_lab import registry, store
from llm_lab.errors import ModelError
from llm_lab.registry import ModelEntry
from tests.conftest import assert_no_exception_box, open_page, screenshot, wait_for, wait_idle

pytestmark = pytest.mark.browser


@pytest.fixture
def server_models(lab_server, tiny_gpt2, monkeypatch):
    """Two causal LMs registered in the shared server's home under names no other test uses.

    There is at most one built-in causal LM (tiny-gpt), so the pair is registered: the first points at
    the built-in tiny-gpt folder when it exists, the other at the tiny test GPT-2.
    """
    monkeypatch.setenv("LLM_LAB_HOME", str(lab_server["home"]))
    store.reset_connections()
    tag = uuid.uuid4().hex[:6]
    builtin = [e.location for e in registry.builtin_models() if e.head == "causal-lm"]
    names = [f"cmpalpha{tag}", f"cmpbeta{tag}"]
    for name, location in zip(names, (builtin or [str(tiny_gpt2)])[:1] + [str(tiny_gpt2)]):
        try:
            registry.register(LOCAL, ModelEntry(name, "local", location, "causal-lm"))
        except ModelError:  # a built-in folder still being written
            registry.register(LOCAL, ModelEntry(name, "local", str(tiny_gpt2), "causal-lm"))
    yield names
    store.reset_connections()


def pick(page, label: str, names: list[str]) -> None:
    """Set a multiselect to exactly `names` (again, if a rerun that was under way put the old value back)."""
    box = page.locator("[data-testid='stMultiSelect']").filter(has_text=label)
    tags = box.locator("[data-testid='stMultiSelectTagsContainer']")
    chosen = []

    def shown() -> list[str]:
        return [t.strip() for t in tags.inner_text().splitlines() if t.strip()]

    for _ in range(3):
        clear = box.locator("[aria-label='Clear all']")
        if clear.count():
            clear.first.click()
            wait_idle(page)
        for name in names:
            box.locator("input[role='combobox']").click()
            box.locator("input[role='combobox']").fill(name)
            page.keyboard.press("Enter")
            wait_idle(page)
        page.keyboard.press("Escape")
        wait_idle(page)
        try:  # a rerun under way may still put the old value back: wait for the tags to settle
            wait_for(lambda: sorted(shown()) == sorted(names), timeout=5)
            return
        except AssertionError:
            chosen = shown()
    raise AssertionError(f"the picker shows {chosen}, not {names}")


def offered(page, label: str, name: str) -> bool:
    """Whether the multiselect `label` offers `name`: chosen already, or an option once typed into its filter."""
    box = page.locator("[data-testid='stMultiSelect']").filter(has_text=label)
    tags = box.locator("[data-testid='stMultiSelectTagsContainer']").inner_text().splitlines()
    if name in [t.strip() for t in tags]:
        return True
    box.locator("input[role='combobox']").click()
    box.locator("input[role='combobox']").fill(name)
    try:  # the dropdown renders after the keystrokes: wait for the option, briefly
        page.get_by_role("option", name=name, exact=True).wait_for(timeout=3000)
        found = True
    except PlaywrightTimeout:
        found = False
    box.locator("input[role='combobox']").fill("")
    page.keyboard.press("Escape")
    return found


def test_compare_two_models_then_vote(page, lab_server, server_models):
    a, b = server_models

    def listed() -> bool:  # the page's model list is cached for a few seconds: reload until it has both
        open_page(page, lab_server, "compare")
        return all(offered(page, "Models (two to four)", name) for name in (a, b))

    wait_for(listed, timeout=60)
    pick(page, "Models (two to four)", [a, b])
    prompts = page.locator("textarea").first
    prompts.fill("def add(a, b):\nThe list type")
    page.get_by_text("References, one per line").click()  # blur: the text area sends its value
    wait_idle(page)
    page.locator(".st-key-c_run button").click()
    page.wait_for_url(re.compile(r"comparison=\w+"), timeout=120_000)
    wait_idle(page)
    page.get_by_text("Word-level differences", exact=True).wait_for(timeout=60_000)
    main = page.locator("[data-testid='stMain']")
    # the page may still be rerunning into the saved comparison: wait until its model cards are drawn
    wait_for(lambda: "tokens / s" in main.inner_text() and "mean log-prob" in main.inner_text(), timeout=60)
    wait_idle(page)
    assert_no_exception_box(page)
    body = main.inner_text()
    assert "on 2 typed inputs" in body and a in body and b in body
    assert "tokens / s" in body and "mean log-prob" in body
    screenshot(page, "compare-two-models")
    cid = re.search(r"comparison=(\w+)", page.url).group(1)
    from llm_lab.compare import saved

    comp = saved.get(LOCAL, cid)
    assert sorted(comp.models) == sorted([a, b]) and [r["text"] for r in comp.inputs] == ["def add(a, b):", "The list type"]
    assert all(not comp.outputs[m].error and len(comp.outputs[m].rows) == 2 for m in (a, b))

    # the arena: a blind battle between the two, one vote
    open_page(page, lab_server, "arena")
    pick(page, "Pool", [a, b])
    page.get_by_role("button", name="New battle").click()
    page.get_by_text("Which answer is better?", exact=True).wait_for(timeout=120_000)
    wait_idle(page)
    main = page.locator("[data-testid='stMain']").inner_text()
    assert "Model A" in main and "Model B" in main
    pool_box = page.locator("[data-testid='stMultiSelect']").inner_text()
    assert main.count(a) == pool_box.count(a)  # the names appear only in the pool picker, not by the answers
    screenshot(page, "arena-battle")
    page.get_by_role("button", name="B is better").click()
    page.locator("[data-testid='stAlertContentSuccess']").wait_for(timeout=60_000)
    wait_idle(page)
    assert_no_exception_box(page)
    revealed = page.locator("[data-testid='stAlertContentSuccess']").inner_text()
    assert a in revealed and b in revealed
    page.get_by_text("Leaderboard", exact=True).wait_for()
    assert page.get_by_role("button", name="B is better").count() == 0  # the battle cannot be voted twice
    screenshot(page, "arena-voted")
    from llm_lab.compare import arena

    mine = [v for v in arena.votes(LOCAL) if {v["model_a"], v["model_b"]} == {a, b} and v["vote"] == "b"]
    assert mine and mine[-1]["voter"].startswith("anon-")
