"""The Train page: AppTest (form, estimate, a run started inline, history) and a real browser run."""
import io
import json
import os
import time
import zipfile
from pathlib import Path

import pytest

from llm_lab.access import LOCAL, SYSTEM, scope
from llm_lab import jobs, registry, store, train
from llm_lab.train import TrainConfig, history
from ui.common import plain
from tests.conftest import app_test, assert_no_exception_box, no_exceptions, open_page, screenshot, wait_idle


def _figure_titles(at) -> list[str]:
    return [json.loads(c.proto.spec).get("layout", {}).get("title", {}).get("text", "") for c in at.get("plotly_chart")]


def _plotly_titles(at) -> list[str]:
    import json

    return [json.loads(c.proto.spec).get("layout", {}).get("annotations", [{}])[0].get("text", "")
            for c in at.get("plotly_chart")]


def test_page_defaults_estimate_and_every_task_renders():
    at = app_test("views/train.py").run()
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
    at = app_test("views/train.py").run()
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
    # the held-out accuracy with its Wilson interval and the rows behind it; the base is not compared (new head)
    held_out = [t.value for t in at.text]
    assert any(t.startswith("accuracy: ") and " n=" in t and "Wilson" in t for t in held_out), held_out
    assert any("head is new" in t for t in held_out)
    assert at.get("plotly_chart")  # the run's curves
    assert any(f"/train?train_job={job['id']}" in c.value for c in at.code)  # the run's permalink
    assert registry.resolve(LOCAL, "page-run").parent == "tiny-bert-page"
    assert at.segmented_control(key="t_view").value == "Live"  # a started run is shown in the live view
    at.segmented_control(key="t_view").set_value("History").run()
    at.selectbox(key="t_hist_one").set_value(job["id"]).run()
    no_exceptions(at)
    assert len(at.get("plotly_chart")) >= 2  # one run's curves, the overlay


def _param(at, name: str):
    value = at.query_params.get(name)
    return value[0] if isinstance(value, list) else value


def _queued_run(monkeypatch, name: str = "bg-run") -> str:
    """A training job of the local user's, queued (no worker picks it up in a test)."""
    monkeypatch.setattr(jobs, "_enqueue", lambda job_id: None)
    return train.submit(LOCAL, TrainConfig(task="pretrain", name=name, preset="1M", max_steps=20))


def _set(job_id: str, **values) -> None:
    """Change the job's row as the worker would (status, pid, result)."""
    scope(SYSTEM).update("jobs", {k: store.to_json(v) if isinstance(v, dict) else v for k, v in values.items()},
                         "id=?", (job_id,))


def _running_run(monkeypatch, name: str = "bg-run") -> str:
    """…running in this process (a live pid, so `jobs.reconcile` leaves it running)."""
    job_id = _queued_run(monkeypatch, name)
    _set(job_id, status="running", worker_pid=os.getpid(), started_at=time.time())
    return job_id


def _tiles(at) -> list[tuple[str, str]]:
    return [(m.label, m.value) for m in at.metric]


def test_a_running_job_is_shown_when_coming_back_through_the_sidebar(monkeypatch):
    job_id = _running_run(monkeypatch)
    at = app_test("app.py").run()
    at.switch_page("views/train.py").run()  # the sidebar's Train link: no ?train_job= in the address
    no_exceptions(at)
    assert at.segmented_control(key="t_view").value == "Live"
    title = jobs.get(LOCAL, job_id)["title"]
    assert any(plain(title) in m.value and m.value.endswith("— running") for m in at.markdown)
    assert _param(at, "train_job") == job_id  # and a refresh finds it again
    assert history.active(LOCAL) == [job_id]


def test_open_in_the_live_panel_switches_to_the_live_view(monkeypatch):
    job_id = _queued_run(monkeypatch, "to-open")
    jobs.cancel(LOCAL, job_id)
    at = app_test("views/train.py").run()
    assert at.segmented_control(key="t_view").value == "New run"  # nothing active: the form
    at.segmented_control(key="t_view").set_value("History").run()
    at.selectbox(key="t_hist_one").set_value(job_id).run()
    at.button(key="t_hist_open").click().run()
    no_exceptions(at)
    assert at.segmented_control(key="t_view").value == "Live"
    assert _param(at, "train_job") == job_id
    title = jobs.get(LOCAL, job_id)["title"]
    assert any(plain(title) in m.value and m.value.endswith("— cancelled") for m in at.markdown)
    assert not any(b.key == "t_hist_open" for b in at.button)  # the History view is not drawn
    # a refresh stays on the view it was on (?view=), a permalink (no view) opens the run in the live view
    for view in ("New run", "History", "Live"):
        at.segmented_control(key="t_view").set_value(view).run()
        refreshed = app_test("views/train.py")
        refreshed.query_params.update(dict(at.query_params))
        refreshed.run()
        assert refreshed.segmented_control(key="t_view").value == view
    link = app_test("views/train.py")
    link.query_params["train_job"] = job_id
    assert link.run().segmented_control(key="t_view").value == "Live"


def test_live_tiles_keep_their_places_and_show_this_steps_numbers(monkeypatch):
    job_id = _running_run(monkeypatch)
    ctx = jobs.JobContext(id=job_id, params={})
    ctx.progress(1, 20, "epoch 0.05 · step 1/20", force=True, step=1, epoch=0.05,
                 **{"samples/s": 12.5, "tokens/s": 3200})  # the first step: no loss logged yet
    at = app_test("views/train.py")
    at.query_params["train_job"] = job_id
    at.run()
    no_exceptions(at)
    assert _tiles(at) == [("step", "1"), ("epoch", "0.05"), ("loss", "—"), ("lr", "—"), ("samples/s", "12.5"),
                          ("tokens/s", "3200")]
    ctx.progress(4, 20, "epoch 0.2 · step 4/20 · loss 2.5000", force=True, step=4, epoch=0.2, loss=2.5, lr=0.002,
                 **{"samples/s": 13.0, "tokens/s": 3328})
    at.run()
    assert _tiles(at) == [("step", "4"), ("epoch", "0.2"), ("loss", "2.5"), ("lr", "0.002"), ("samples/s", "13"),
                          ("tokens/s", "3328")]
    # train.jobs's last report (no lr): the same six tiles, one per stat, in the same places
    ctx.progress(20, 20, "Saving the model…", force=True, step=20, epoch=1.0, loss=2.25,
                 **{"samples/s": 13.1, "tokens/s": 3354.0})
    at.run()
    labels = [label for label, _ in _tiles(at)]
    assert labels == list(history.LIVE_STATS) and len(set(labels)) == len(labels)
    assert dict(_tiles(at))["epoch"] == "1" and dict(_tiles(at))["lr"] == "—"


def test_the_run_picker_does_not_keep_a_stale_status(monkeypatch):
    job_id = _running_run(monkeypatch, "status-run")
    at = app_test("views/train.py").run()
    at.segmented_control(key="t_view").set_value("History").run()
    options = list(at.selectbox(key="t_hist_one").options)
    assert any("running" in t for t in _figure_titles(at))
    _set(job_id, status="succeeded", finished_at=time.time(), result={"model": "status-run"})
    at.run()
    no_exceptions(at)
    # a browser keeps showing the label it was sent for the picked option: it must not carry the status
    assert list(at.selectbox(key="t_hist_one").options) == options
    assert not any("running" in o for o in options)
    titles = json.dumps(_figure_titles(at))
    assert "succeeded" in titles and "running" not in titles


def test_epochs_show_as_typed():
    at = app_test("views/train.py").run()
    epochs = at.number_input(key="t_ep_classify")
    assert epochs.proto.format % epochs.value == "8"  # the default, as the browser shows it (sprintf), not 8.00
    epochs.set_value(2.5).run()
    assert epochs.proto.format % at.number_input(key="t_ep_classify").value == "2.5"


def test_refresh_and_page_switch_keep_the_form():
    at = app_test("app.py").run()
    at.switch_page("views/train.py").run()
    at.radio(key="t_task").set_value("causal-lm").run()
    at.number_input(key="t_ep_causal-lm").set_value(2.5)
    at.number_input(key="t_bs_causal-lm").set_value(4)
    at.text_input(key="t_name").set_value("kept-name")
    at.selectbox(key="t_sched_causal-lm").set_value("cosine")
    at.toggle(key="t_lora").set_value(True)
    at.run()
    no_exceptions(at)
    expected = {"t_task": "causal-lm", "t_ep_causal-lm": 2.5, "t_bs_causal-lm": 4, "t_name": "kept-name",
                "t_sched_causal-lm": "cosine", "t_lora": True}

    def shown(at):
        return {"t_task": at.radio(key="t_task").value, "t_ep_causal-lm": at.number_input(key="t_ep_causal-lm").value,
                "t_bs_causal-lm": at.number_input(key="t_bs_causal-lm").value, "t_name": at.text_input(key="t_name").value,
                "t_sched_causal-lm": at.selectbox(key="t_sched_causal-lm").value, "t_lora": at.toggle(key="t_lora").value}

    assert shown(at) == expected
    address = dict(at.query_params)
    at.switch_page("views/home.py").run()  # a page switch: Streamlit drops the widgets' state
    at.switch_page("views/train.py").run()
    no_exceptions(at)
    assert shown(at) == expected
    refreshed = app_test("views/train.py")  # a refresh: a new session with the same address
    refreshed.query_params.update(address)
    refreshed.run()
    no_exceptions(refreshed)
    assert shown(refreshed) == expected
    assert "python -m llm_lab train causal-lm" in " ".join(c.value for c in refreshed.code)


def test_a_form_in_the_address_that_does_not_fit_is_ignored():
    at = app_test("views/train.py")
    at.query_params["form"] = json.dumps({"t_task": "no-such-task", "t_ep_classify": "abc", "t_bs_classify": 10**9,
                                          "t_name": 7, "t_lora": "yes"})
    at.run()
    no_exceptions(at)
    assert at.radio(key="t_task").value == "classify" and at.number_input(key="t_ep_classify").value == 8.0
    assert at.text_input(key="t_name").value == ""
    broken = app_test("views/train.py")
    broken.query_params["form"] = "{not json"
    broken.run()
    no_exceptions(broken)


def test_the_model_is_zipped_only_when_the_download_is_asked_for(monkeypatch, tiny_bert, tmp_path):
    registry.register(LOCAL, registry.ModelEntry("zip-me", "trained", str(tiny_bert), "classifier"))
    job_id = _queued_run(monkeypatch, "zip-me-run")
    _set(job_id, status="succeeded", finished_at=time.time(),
         result={"model": "zip-me", "folder": str(tiny_bert), "registered": True, "metrics": {}})
    calls, offered = [], {}
    real = train.export.zip_bytes
    monkeypatch.setattr(train.export, "zip_bytes", lambda who, name: calls.append(name) or real(who, name))
    import streamlit.elements.widgets.button as button_module

    marshall = button_module.marshall_file  # what st.download_button was given to offer

    def spy(coordinates, data, proto, mimetype, file_name=None, **kwargs):
        offered[file_name] = data
        return marshall(coordinates, data, proto, mimetype, file_name, **kwargs)

    monkeypatch.setattr(button_module, "marshall_file", spy)
    at = app_test("views/train.py")
    at.query_params["train_job"] = job_id
    at.run()
    at.run()
    no_exceptions(at)
    assert any("zip-me** is in the registry" in s.value for s in at.success)
    assert any(b.proto.label == "Download the model (zip)" for b in at.get("download_button"))
    assert calls == []  # drawn twice, nothing zipped
    content = offered["zip-me.zip"]()  # what the browser's click runs (a deferred download)
    assert calls == ["zip-me"]
    archive = zipfile.ZipFile(io.BytesIO(content))
    assert {"zip-me/config.json", "zip-me/model.safetensors", "zip-me/README.md"} <= set(archive.namelist())
    # the download is the exported folder: plain transformers opens it and predicts what the model predicts
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    archive.extractall(tmp_path)
    opened = AutoModelForSequenceClassification.from_pretrained(tmp_path / "zip-me")
    original = AutoModelForSequenceClassification.from_pretrained(tiny_bert)
    enc = AutoTokenizer.from_pretrained(tmp_path / "zip-me")(["a fine day"], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(opened.eval()(**enc).logits, original.eval()(**enc).logits)


@pytest.mark.browser
def test_browser_starts_a_classification_finetune_and_watches_it_finish(page, lab_server, tiny_bert):
    from playwright.sync_api import expect

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
    assert page.get_by_label("Epochs", exact=True).input_value() == "8"  # the default, not 8.00
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
    wait_idle(page)
    with page.expect_download(timeout=120_000) as download:  # zipped now, on the click
        page.get_by_role("button", name="Download the model (zip)").click()
    names = zipfile.ZipFile(download.value.path()).namelist()
    assert "browser-clf/config.json" in names and "browser-clf/model.safetensors" in names
    # away through the sidebar and back: the form still holds what was typed; a refresh too
    page.locator("[data-testid='stSidebarNav'] a", has_text="Home").click()
    wait_idle(page)
    page.locator("[data-testid='stSidebarNav'] a", has_text="Train").click()
    wait_idle(page)
    page.get_by_text("Estimate:").first.wait_for()
    expect(page.get_by_label("Name of the new model")).to_have_value("browser-clf")
    page.reload()  # the address names the run now, and the view it is on (New run)
    page.wait_for_selector("[data-testid='stApp'][data-test-connection-state='CONNECTED']", timeout=60_000)
    wait_idle(page)
    page.get_by_text("Estimate:").first.wait_for()
    expect(page.get_by_label("Name of the new model")).to_have_value("browser-clf")
    assert_no_exception_box(page)
