"""A real browser runs the built-in demo suite on MiniLM (a few examples per task) and opens the drill-down."""
import pytest

from tests.conftest import assert_no_exception_box, open_page, screenshot, wait_idle

pytestmark = pytest.mark.browser


def test_run_demo_suite_on_minilm_and_open_drilldown(page, lab_server):
    page.set_viewport_size({"width": 1400, "height": 3200})
    open_page(page, lab_server, "benchmarks")
    assert_no_exception_box(page)
    models = page.locator("[data-testid='stMultiSelect']").first
    assert "minilm" in models.inner_text()
    assert "demo-classifier" in page.locator("[data-testid='stExpander']").first.inner_text()  # the default suite
    limit = page.locator("input[aria-label='Examples per task (0 = as the suite says)']")
    limit.fill("12")
    limit.press("Enter")
    wait_idle(page)
    page.get_by_role("button", name="Run benchmark").click()
    page.get_by_text("succeeded").first.wait_for(timeout=240_000)  # the job panel, refreshed by its fragment
    page.get_by_role("heading", name="Leaderboard", exact=True).wait_for(timeout=60_000)
    wait_idle(page)
    assert_no_exception_box(page)
    assert page.locator("[data-testid='stDataFrame']").count() >= 2  # leaderboard and examples (canvas grids)
    assert page.get_by_text("12 examples. 'open ↗' shows the example on the Attributions page.").count() == 1
    page.get_by_text("errors", exact=True).click()
    wait_idle(page)
    assert_no_exception_box(page)
    caption = page.get_by_text("'open ↗' shows the example on the Attributions page").first.inner_text()
    errors = int(caption.split()[0])
    assert 0 < errors <= 12  # the untrained head gets some of the 12 wrong
    assert page.locator(".js-plotly-plot").count() >= 1
    screenshot(page, "bench-drilldown")
