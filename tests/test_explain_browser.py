"""Real browser: every attention view and attribution mode on the built-in models, with screenshots."""
import pytest

from tests.conftest import assert_no_exception_box, open_page, screenshot, wait_idle

pytestmark = pytest.mark.browser


def test_attention_views_and_model_view_click(page, lab_server):
    open_page(page, lab_server, "attention?model=minilm")
    assert_no_exception_box(page)
    page.get_by_text("Both", exact=True).click()
    wait_idle(page)
    page.locator(".js-plotly-plot").nth(1).wait_for()
    screenshot(page, "explain-attention-head-view")
    page.get_by_role("tab", name="Model view").click()
    wait_idle(page)
    points = page.locator("[role='tabpanel']:visible .scatterlayer .point")
    points.first.wait_for(state="attached")
    assert points.count() == 6 * 12
    points.nth(2 * 12 + 5).click(force=True)  # layer 2, head 5
    wait_idle(page)
    page.wait_for_function("[...document.querySelectorAll('.gtitle')].some(t => t.textContent.includes('Selected: layer 2, head 5'))")
    # plotly's toolbar shows while the pointer is over the grid: it must not cover the head names on top
    grid = page.locator("[role='tabpanel']:visible .js-plotly-plot").first
    grid.hover(position={"x": 200, "y": 120})
    bar = grid.locator(".modebar").bounding_box()
    heads = [grid.locator(".xtick text").nth(i).bounding_box() for i in range(grid.locator(".xtick text").count())]
    assert bar and len(heads) == 12
    assert all(bar["y"] + bar["height"] <= h["y"] + 1 or bar["x"] >= h["x"] + h["width"] for h in heads), (bar, heads)
    screenshot(page, "explain-attention-model-view")
    for tab in ("Rollout", "Head types"):
        page.get_by_role("tab", name=tab).click()
        wait_idle(page)
        assert_no_exception_box(page)
        screenshot(page, f"explain-attention-{tab.lower().replace(' ', '-')}")


def test_attention_long_input_stays_capped(page, lab_server):
    open_page(page, lab_server, "attention?model=minilm&text=" + "word%20" * 600)
    assert_no_exception_box(page)
    assert page.get_by_text("only the first 512").count() >= 1
    assert page.get_by_text("pools 4 consecutive tokens").count() >= 1
    screenshot(page, "explain-attention-512-tokens")


def test_attributions_classification_and_generation(page, lab_server):
    open_page(page, lab_server, "attributions?model=minilm&text=a%20dull%20and%20boring%20plot")
    page.get_by_role("button", name="Explain").click()
    wait_idle(page)
    assert_no_exception_box(page)
    verdict = page.get_by_text("Most faithful (comprehensiveness − sufficiency)").count() + \
        page.get_by_text("The methods cannot be told apart on this input").count()
    assert verdict >= 1  # a winner only when its lead is beyond the noise, else said so
    assert page.get_by_text("Convergence delta").count() == 1
    screenshot(page, "explain-attributions-classification")
    page.get_by_text("Generation", exact=True).click()
    wait_idle(page)
    if page.get_by_text("No causal language model").count():
        pytest.skip("no built-in causal LM (tiny-gpt) in this checkout")
    page.get_by_role("button", name="Generate and attribute").click()
    wait_idle(page)
    assert_no_exception_box(page)
    assert page.get_by_text("Top contributing prompt tokens").count() == 1
    screenshot(page, "explain-attributions-generation")
