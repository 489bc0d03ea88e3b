"""A real browser chats with the built-in chat model on the Models page: two turns, the second one answered
from the conversation so far (the follow-up makes sense only with the first turn in it)."""
import pytest

from tests.conftest import (
    assert_no_exception_box,
    open_page,
    screenshot,
    wait_for,
    wait_idle,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _ask(page, text: str, expected: str, turns: int) -> str:
    """Send `text` and wait for the assistant's answer (the `turns`-th message on the page) to contain
    `expected`; returns that answer."""
    box = page.locator(".st-key-m_chat_input textarea")
    box.fill(text)
    box.press("Enter")
    messages = page.locator("[data-testid='stChatMessage']")
    wait_for(lambda: messages.count() >= turns and expected in messages.nth(turns - 1).inner_text(), timeout=180)
    wait_idle(page, timeout=180_000)  # the stats line comes once the answer is complete
    assert_no_exception_box(page)
    return messages.nth(turns - 1).inner_text()


def test_chat_with_the_builtin_chat_model(page, lab_server, chat_model_file):
    from llm_lab.registry import CHAT_MODEL

    page.set_viewport_size({"width": 1400, "height": 1600})
    open_page(page, lab_server, "models")
    page.locator(".st-key-m_name input").click()
    page.get_by_role("option", name=CHAT_MODEL, exact=True).click()
    wait_idle(page)
    page.get_by_role("button", name="Load model").click()
    # a fresh server imports the model stack, then loads the converted GGUF (the tests share its cache):
    # seconds on an idle CPU, minutes on a busy one
    try:
        page.locator(".st-key-m_chat_input").wait_for(timeout=360_000)
    except Exception:
        screenshot(page, "models-chat-not-loaded")
        raise
    wait_idle(page, timeout=180_000)
    assert_no_exception_box(page)
    assert page.get_by_text("Raw prompt (no chat template)").count() == 1  # it has a chat template

    first = _ask(page, "What is the capital of France?", "Paris", turns=2)
    assert "tokens/s" in first and "stopped" in first
    second = _ask(page, "And of Germany?", "Berlin", turns=4)
    assert "tokens/s" in second
    # each message's text as shown (the avatar's icon name is text too, so read the text element)
    texts = page.locator("[data-testid='stChatMessage'] [data-testid='stText']").all_inner_texts()
    assert texts[0] == "What is the capital of France?" and texts[2] == "And of Germany?"
    assert "Paris" in texts[1] and "Berlin" in texts[3]
    screenshot(page, "models-chat")

    page.locator(".st-key-m_chat_clear button").click()
    wait_idle(page)
    assert page.locator("[data-testid='stChatMessage']").count() == 0
