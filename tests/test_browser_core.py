"""A real browser (Chromium) against `streamlit run app.py`: every page renders, upload + save, load + embed."""
import pytest

from llm_lab.access import LOCAL
from tests.conftest import assert_no_exception_box, open_page, screenshot, wait_for, wait_idle

pytestmark = pytest.mark.browser

PAGES = ["", "datasets", "models", "train", "benchmarks", "compress", "compare", "arena", "attention", "attributions"]


def _tall(page):
    page.set_viewport_size({"width": 1400, "height": 2400})  # Streamlit scrolls inside the page: show it all


def _upload(page, path) -> None:
    """Drop a file on the page's uploader the way a person does: click it and pick the file."""
    with page.expect_file_chooser() as chooser:
        page.locator("[data-testid='stFileUploaderDropzone']").click()
    chooser.value.set_files(str(path))


@pytest.mark.parametrize("path", PAGES)
def test_every_page_renders_without_exception(page, lab_server, path):
    _tall(page)
    open_page(page, lab_server, path)
    page.locator("h1").first.wait_for()  # each page has a title
    wait_idle(page)
    assert_no_exception_box(page)
    assert "Data and models" in page.locator("[data-testid='stSidebarNav']").inner_text()
    screenshot(page, f"core-{path or 'home'}")


def test_a_fresh_server_opens_a_shared_link_through_the_router(browser, tmp_path):
    """First request to /models?model=minilm on a new server: Streamlit's old pages/ mode must not take over."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT, _free_port

    port = _free_port()
    env = dict(os.environ, LLM_LAB_HOME=str(tmp_path / "home"))
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                             "--server.port", str(port)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    context = browser.new_context()
    try:
        page = context.new_page()
        def reachable() -> bool:
            try:
                page.goto(f"http://127.0.0.1:{port}/models?model=minilm", timeout=5000)
                return True
            except Exception:
                return False

        wait_for(reachable, timeout=120)
        page.get_by_text("Parameters", exact=True).wait_for(timeout=120_000)
        # the card comes first (read from the files), the model loads in the background, then the page reruns
        # with the loaded model's card (device, load time) and the tools that use it
        page.get_by_text("Try it", exact=True).wait_for(timeout=120_000)
        wait_idle(page)
        main = page.locator("[data-testid='stMain']").inner_text()
        assert "Load time" in main and "22.7 M" in main and "Loading minilm" not in main, main
        nav = page.locator("[data-testid='stSidebarNav']").inner_text()
        assert "Data and models" in nav and "app" not in nav.split(), nav  # app.py's navigation, not Streamlit's pages/ mode
        assert_no_exception_box(page)
    finally:
        context.close()
        proc.terminate()
        proc.wait(10)


def test_home_links_reach_pages(page, lab_server):
    open_page(page, lab_server, "")
    links = page.locator("[data-testid='stMain'] a[data-testid='stPageLink-NavLink']")
    links.nth(7).wait_for()  # under load the first run can still be going when open_page returns
    assert links.count() >= 8
    links.filter(has_text="Models").first.click()
    page.wait_for_url("**/models")
    wait_idle(page)
    page.get_by_role("button", name="Load model").wait_for()
    assert_no_exception_box(page)


def test_upload_csv_on_datasets_page_and_save(page, lab_server, tmp_path, monkeypatch):
    rows = ["comment,mood"] + [f"\"browser review number {i}, {'great' if i % 2 else 'poor'}\","
                                f"{'happy' if i % 2 else 'sad'}" for i in range(30)]
    csv = tmp_path / "browser_core_reviews.csv"
    csv.write_text("\n".join(rows) + "\n")
    _tall(page)
    open_page(page, lab_server, "datasets")
    _upload(page, csv)
    page.get_by_text("Column roles").wait_for()
    wait_idle(page)
    assert_no_exception_box(page)
    screenshot(page, "core-datasets-upload")
    name = page.get_by_label("Name", exact=True)
    assert name.input_value() == "browser_core_reviews"
    name.fill("browser-core-upload")
    name.press("Enter")
    wait_idle(page)
    page.get_by_role("button", name="Save dataset").click()
    page.get_by_text("Saved browser-core-upload").wait_for()
    wait_idle(page)
    assert_no_exception_box(page)
    assert page.locator("[data-testid='stAlertContentError']").count() == 0
    screenshot(page, "core-datasets-saved")

    from llm_lab import data  # the server wrote into its own home: read it from there

    monkeypatch.setenv("LLM_LAB_HOME", str(lab_server["home"]))
    data.store.reset_connections()
    info = data.get(LOCAL, "browser-core-upload")
    assert info.rows == 30 and info.roles == {"text": "comment", "label": "mood"}


def test_bad_upload_shows_a_message_not_a_traceback(page, lab_server, tmp_path):
    bad = tmp_path / "browser_core_latin1.csv"
    bad.write_bytes("text,label\ncafé crème,good\n".encode("latin-1"))
    open_page(page, lab_server, "datasets")
    _upload(page, bad)
    page.get_by_text("is not UTF-8 text").wait_for()
    wait_idle(page)
    assert_no_exception_box(page)


def test_load_minilm_and_embed_on_models_page(page, lab_server):
    _tall(page)
    open_page(page, lab_server, "models")
    page.get_by_role("button", name="Load model").click()
    page.get_by_text("Parameters", exact=True).wait_for(timeout=120_000)
    wait_idle(page)
    assert_no_exception_box(page)
    assert page.get_by_text("22.7 M").count() == 1
    page.get_by_role("button", name="Embed and compare").click()
    page.get_by_text("Cosine similarity", exact=True).wait_for()
    wait_idle(page)
    assert_no_exception_box(page)
    value = float(page.locator("[data-testid='stMetricValue']").last.inner_text())
    assert 0.5 < value < 1.0  # "A cat is sleeping on the sofa." vs "A kitten naps on the couch."
    screenshot(page, "core-models-embed")
