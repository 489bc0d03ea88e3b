"""A share link past its expiry, opened in a real browser: the not-found message, and none of the snapshot.

The link is made on an explicit clock (created two days ago, valid for one), so no test waits for a timer;
a live link made beside it shows its data on the same server, so the empty page is the expiry, not a broken
viewer."""
import copy

import pytest

from llm_lab import sharing, store
from llm_lab.access import LOCAL
from tests.conftest import assert_no_exception_box, open_page, screenshot

SNAP = {"title": "Secret leaderboard", "created": "2026-11-01T10:00:00+00:00",
        "text": ["Numbers only the team should see."],
        "tables": [{"title": "Leaderboard", "columns": ["model", "accuracy"],
                    "rows": [["tiny-secret-model", 0.81], ["tiny-other", 0.5]]}],
        "figures": [], "meta": {"run": "r1"}}
DAY = 86400


@pytest.fixture
def server_store(lab_server, monkeypatch):
    """The test process writes links into the browser server's store."""
    monkeypatch.setenv("LLM_LAB_HOME", str(lab_server["home"]))
    store.reset_connections()
    yield
    store.reset_connections()


def test_an_expired_link_shows_the_expiry_message_and_no_data(page, lab_server, server_store):
    now = store.now()
    expired = sharing.create(LOCAL, "benchmark", "Secret leaderboard", copy.deepcopy(SNAP), expires_in_days=1,
                             now=now - 2 * DAY)
    live = sharing.create(LOCAL, "benchmark", "Secret leaderboard", copy.deepcopy(SNAP), expires_in_days=1, now=now)

    open_page(page, lab_server, f"shared?token={live}")
    page.locator("[data-testid='stDataFrame']").first.wait_for()
    assert "Numbers only the team should see." in page.locator("[data-testid='stMain']").inner_text()

    open_page(page, lab_server, f"shared?token={expired}")
    assert_no_exception_box(page)
    error = page.locator("[data-testid='stAlertContentError']")
    error.first.wait_for()
    assert error.first.inner_text().strip().endswith(sharing.NOT_FOUND)  # after the icon
    main = page.locator("[data-testid='stMain']").inner_text()
    assert "Numbers only the team should see." not in main and "tiny-secret-model" not in main
    assert page.locator("[data-testid='stDataFrame']").count() == 0
    assert page.locator("[data-testid='stPlotlyChart']").count() == 0
    screenshot(page, "share-link-expired")
    rows = {r["status"] for r in sharing.list_links(LOCAL)}
    assert rows == {"active", "expired"}
