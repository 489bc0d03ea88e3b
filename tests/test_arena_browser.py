"""Real browser: a first visit to the Arena battles the built-in chat model against tiny-gpt over two turns,
names hidden, then a vote reveals them and stores both turns."""
import pytest

from llm_lab import registry, store
from llm_lab.access import LOCAL
from tests.conftest import (
    assert_no_exception_box,
    open_page,
    screenshot,
    wait_for,
    wait_idle,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PAIR = [registry.CHAT_MODEL, "tiny-gpt"]


@pytest.fixture
def server_home(lab_server, monkeypatch):
    """This process reads and writes the shared server's store."""
    monkeypatch.setenv("LLM_LAB_HOME", str(lab_server["home"]))
    store.reset_connections()
    yield lab_server["home"]
    store.reset_connections()


def main_text(page) -> str:
    return page.locator("[data-testid='stMain']").inner_text()


def names_outside_the_pool(page) -> list[str]:
    """Model names the page shows anywhere but in the pool picker (where the user chose them)."""
    main, pool = main_text(page), page.locator(".st-key-a_pool").inner_text()
    return [n for n in PAIR if main.count(n) != pool.count(n)]


def test_two_turn_battle_with_the_chat_model_then_vote(page, lab_server, server_home, chat_model_file):
    from llm_lab.compare import arena

    page.set_viewport_size({"width": 1400, "height": 1500})  # both turns and the vote in one screenshot
    open_page(page, lab_server, "arena")
    pool = page.locator(".st-key-a_pool [data-testid='stMultiSelectTagsContainer']").inner_text().split("\n")
    assert sorted(t.strip() for t in pool if t.strip()) == sorted(PAIR)  # the first visit's pair
    page.locator(".st-key-a_new button").click()
    page.get_by_text("Which answer is better?", exact=True).wait_for(timeout=180_000)
    wait_idle(page)
    assert_no_exception_box(page)
    assert "Turn 1" in main_text(page) and not names_outside_the_pool(page)

    follow = "Show it in one line of code."
    page.locator(".st-key-a_follow textarea").fill(follow)
    page.locator(".st-key-a_send button").click()
    wait_for(lambda: "Turn 2" in main_text(page) and page.locator(".st-key-a_vote_a").count(), timeout=180)
    wait_idle(page)
    assert_no_exception_box(page)
    body = main_text(page)
    assert follow in body and "What is a list in Python?" in body
    assert not names_outside_the_pool(page)  # still anonymous after the second turn
    page.get_by_text("Turn 1 · you wrote").scroll_into_view_if_needed()
    screenshot(page, "arena-two-turns")

    (battle,) = store.query("SELECT id, model_a FROM arena_battles ORDER BY created_at DESC LIMIT 1")
    assert arena.get_battle(LOCAL, battle["id"])["turns"] == 2  # both turns stored before the vote
    chat_side = "a" if battle["model_a"] == registry.CHAT_MODEL else "b"
    page.locator(f".st-key-a_vote_{chat_side} button").click()  # the chat model did answer better
    page.locator("[data-testid='stAlertContentSuccess']").wait_for(timeout=60_000)
    wait_idle(page)
    assert_no_exception_box(page)
    revealed = page.locator("[data-testid='stAlertContentSuccess']").inner_text()
    assert "after 2 turns" in revealed and all(n in revealed for n in PAIR)
    assert page.locator(".st-key-a_send").count() == 0 and page.locator(".st-key-a_vote_tie").count() == 0
    page.get_by_text("Turn 1 · you wrote").scroll_into_view_if_needed()
    screenshot(page, "arena-two-turns-voted")

    (vote,) = [v for v in arena.votes(LOCAL, conversations=True) if v["id"] == battle["id"]]
    assert vote["vote"] == chat_side and vote["turns"] == 2 and vote["voter"].startswith("anon-")
    first, second = vote["conversation"]
    assert second["user"] == follow
    assert "list" in first[chat_side].lower()  # the chat model answers the question it was asked
    assert first[chat_side].split("\n")[0] in body  # the page showed the stored answer
