"""The Train page: AppTest (form, estimate, a run started inline, history) and a real browser run."""
import os

import pytest

from llm_lab.access import LOCAL
from llm_lab import jobs, registry, store
from tests.conftest import app_test, assert_no_exception_box, no_exceptions, open_page, screenshot, wait_idle


def _plotly_titles(at) -> list[str]:
    import json

    return [json.loads(c.proto.spec).get("layout", {}).get("annotations", [{}])[0].get("text", "")
            for c in at.get("plotly_chart")]


def test_page_defaults_estimate_and_every_task_renders():
    at = app_test("pages/train.py").run()
    no_exceptions(at)
    captions = " ".join(c.value for c in at.caption)
    assert "Estimate:" in captions and "22.7M parameters" in captions  # MiniLM on the demo reviews
    # the same run as a command: a code block (the names in it are not Markdown)
    assert "python -m llm_lab train classify --data demo-reviews" in " ".join(c.value for c in at.code)
    for task in ("causal-lm", "pretrain"):
        at.radio(key="t_task").set_value(task).run()
        no_exceptions(at)
    assert "2.6M parameters" in " ".join(c.value for c in at.caption)  # the 3M preset with its 4,096 vocabulary


def test_start_a_run_see_curves_and_history(tiny_bert):
    registry.register(LOCAL, registry.ModelEntry("tiny-bert-page", "local", str(tiny_bert), "classifier"))
    at = app_test("pages/train.py").run()
    at.selectbox(key="t_model_classify").set_value("tiny-bert-page")
    at.number_input(key="t_ep_classify").set_value(1.0)
    at.number_input(key="t_lr_classify").set_value(1e-3)
    at.text_input(key="t_name").set_value("page-run")
    at.run()
    at.button(key="t_start").click().run()  # jobs run inline in tests: the run is finished after the click
    no_exceptions(at)
    job = jobs.list_jobs(LOCAL)[0]
    assert job["status"] == "succeeded", job["error"]
    assert at.query_params["train_job"] == [job["id"]] or at.query_params["train_job"] == job["id"]
    assert any("page-run** is in the registry" in s.value for s in at.success)
    assert at.get("plotly_chart")  # the run's curves
    assert any(f"/train?train_job={job['id']}" in c.value for c in at.code)  # the run's permalink
    assert registry.resolve(LOCAL, "page-run").parent == "tiny-bert-page"
    at.selectbox(key="t_hist_one").set_value(job["id"]).run()
    no_exceptions(at)
    assert len(at.get("plotly_chart")) >= 3  # live panel, one run's curves, the overlay


@pytest.mark.browser
def test_browser_starts_a_classification_finetune_and_watches_it_finish(page, lab_server, tiny_bert):
    old = os.environ.get("LLM_LAB_HOME")
    os.environ["LLM_LAB_HOME"] = str(lab_server["home"])
    store.reset_connections()
    try:
        if "tiny-bert-browser" not in [e.name for e in registry.list_models(LOCAL)]:
            registry.register(LOCAL, registry.ModelEntry("tiny-bert-browser", "local", str(tiny_bert), "classifier"))
    finally:
        store.reset_connections()
        os.environ["LLM_LAB_HOME"] = old
    open_page(page, lab_server, "train")
    assert_no_exception_box(page)
    page.get_by_text("Estimate:").first.wait_for()
    box = page.locator("[data-testid='stSelectbox']").filter(has_text="Base model")
    box.click()
    page.get_by_role("option", name="tiny-bert-browser").click()
    wait_idle(page)
    page.get_by_label("Name of the new model").fill("browser-clf")
    page.get_by_label("Name of the new model").press("Enter")
    wait_idle(page)
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("Train classifier: tiny-bert-browser").first.wait_for(timeout=60_000)
    page.get_by_text("is in the registry").wait_for(timeout=180_000)  # the fragment refreshes by itself
    assert "train_job=" in page.url
    assert page.locator("[data-testid='stPlotlyChart']").count() >= 1
    page.get_by_role("button", name="Download the model (zip)").wait_for(timeout=60_000)
    assert_no_exception_box(page)
    screenshot(page, "train-finished")
