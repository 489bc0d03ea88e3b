"""AppTest for Home, Datasets and Models, run through app.py's navigation (st.page_link needs it)."""
import hashlib
import json
from pathlib import Path

import pytest

from llm_lab import capabilities, data, inference, registry
from llm_lab.access import LOCAL
from tests.conftest import BrowserLabels, app_test, no_exceptions

BAD = Path(__file__).parent / "bad_files"
DEMO = Path(data.__file__).parent / "demo_data"


def _open(page: str):
    at = app_test("app.py").run()
    no_exceptions(at)
    if page != "views/home.py":
        at.switch_page(page).run()
        no_exceptions(at)
    return at


def _metrics(at) -> dict:
    """label -> value of the first metric with that label (the stored-dataset block repeats labels)."""
    return {m.label: m.value for m in reversed(list(at.metric))}


def _by_label(elements, label: str):
    return next(e for e in elements if e.label == label)


def _figure(at, index: int) -> dict:
    return json.loads(at.get("plotly_chart")[index].proto.spec)


def test_home_shows_device_counts_and_links():
    at = _open("views/home.py")
    metrics = _metrics(at)
    assert metrics["Device"] == "CPU"
    assert metrics["Models"] == str(len(registry.list_models(LOCAL)))
    assert metrics["Datasets"] == str(len(data.list_datasets(LOCAL))) == "4"
    links = {link.proto.page for link in at.get("page_link")}
    for page in ("datasets", "models", "train", "benchmarks", "compare", "arena", "attention", "attributions"):
        assert any(page in link for link in links), (page, links)
    assert "Quick start" in [s.value for s in at.subheader]


def test_datasets_upload_preview_and_save():
    at = _open("views/data.py")
    raw = (DEMO / "reviews.csv").read_bytes()
    at.file_uploader(key="ds_upload").set_value(("shop reviews.csv", raw, "text/csv")).run()
    no_exceptions(at)
    assert not at.error, [e.value for e in at.error]
    roles = {sb.label: sb.value for sb in at.selectbox if sb.label in data.ROLES}
    assert roles == {"text": "review", "label": "sentiment", "text_pair": "(none)", "prompt": "(none)",
                     "reference": "(none)"}
    metrics = _metrics(at)
    assert metrics["Rows"] == "143" and metrics["Duplicates dropped"] == "2"
    labels = _figure(at, 0)
    counts = {}
    for trace in labels["data"]:
        for x, y in zip(trace["x"], trace["y"]):
            counts[x] = counts.get(x, 0) + y
    frame, _, _ = data.prepare("r.csv", raw)
    assert counts == frame["label"].value_counts().to_dict()
    assert _by_label(at.text_input, "Name").value == "shop-reviews"

    at.button(key="ds_save").click().run()
    no_exceptions(at)
    assert at.success and "Saved **shop-reviews**" in at.success[0].value
    info = data.get(LOCAL, "shop-reviews")
    assert info.content_hash == hashlib.sha256(raw).hexdigest() and info.rows == 143
    assert at.selectbox(key="ds_pick").value == "shop-reviews"
    table = at.dataframe[-2].value if len(at.dataframe) > 2 else at.dataframe[0].value
    assert "shop-reviews" in table.to_string()


def test_datasets_changed_mapping_and_split_reach_the_saved_dataset():
    at = _open("views/data.py")
    raw = b"body,stars,extra\n" + b"".join(f"text {i},{'ab'[i % 2]},{i}\n".encode() for i in range(40))
    at.file_uploader(key="ds_upload").set_value(("t.csv", raw, "text/csv")).run()
    assert _by_label(at.selectbox, "text").value == "body"
    _by_label(at.selectbox, "label").set_value("stars")
    at.slider(key="ds_train").set_value(0.5).run()
    at.button(key="ds_save").click().run()
    no_exceptions(at)
    info = data.get(LOCAL, "t")
    assert info.roles == {"text": "body", "label": "stars"} and info.splits["train"] == 20
    assert info.recipe["train"] == 0.5


@pytest.mark.parametrize("filename,fragment", [
    ("latin1.csv", "not UTF-8"), ("ragged_long_row.csv", "line 3 has 4 fields"),
    ("one_class.csv", "single class"), ("empty.csv", "is empty"), ("spreadsheet.xlsx", "unsupported file type")])
def test_datasets_bad_upload_shows_its_message(filename, fragment):
    at = _open("views/data.py")
    at.file_uploader(key="ds_upload").set_value((filename, (BAD / filename).read_bytes(), "text/csv")).run()
    no_exceptions(at)
    assert any(fragment in e.value for e in at.error), [e.value for e in at.error]
    assert not any(b.key == "ds_save" for b in at.button)
    assert [d.name for d in data.list_datasets(LOCAL)] == ["demo-docs", "demo-prompts", "demo-reviews",
                                                           "demo-instructions"]


def test_datasets_delete_needs_confirmation():
    data.import_dataset(LOCAL, "to-delete", "t.csv", b"text,label\na,x\nb,y\nc,x\nd,y\n")
    at = _open("views/data.py")
    at.selectbox(key="ds_pick").set_value("to-delete").run()
    assert at.button(key="ds_delete_to-delete").disabled
    at.checkbox(key="ds_sure_to-delete").check().run()
    at.button(key="ds_delete_to-delete").click().run()
    no_exceptions(at)
    assert "to-delete" not in [d.name for d in data.list_datasets(LOCAL)]
    assert not data.dataset_dir("to-delete").exists()


def test_datasets_look_at_forgets_a_deleted_dataset():
    """After a delete, the "Look at" box the browser shows names a dataset that exists: the one whose rows
    are shown (the page once dropped the stale value on the server only, and the browser kept the label)."""
    data.import_dataset(LOCAL, "to-delete", "t.csv", b"text,label\na,x\nb,y\nc,x\nd,y\n")
    browser = BrowserLabels()
    at = _open("views/data.py")
    browser.see(at, at.selectbox(key="ds_pick"))
    browser.choose(at.selectbox(key="ds_pick"), "to-delete").run()
    assert browser.see(at, at.selectbox(key="ds_pick")) == "to-delete"
    at.checkbox(key="ds_sure_to-delete").check().run()
    at.button(key="ds_delete_to-delete").click().run()
    no_exceptions(at)
    pick = at.selectbox(key="ds_pick")
    names = [d.name for d in data.list_datasets(LOCAL)]
    assert "to-delete" not in names and pick.options == names
    assert browser.see(at, pick) == pick.value == names[0]
    assert f"/datasets?dataset={names[0]}" in " ".join(c.value for c in at.code)  # what is shown is that one


def test_models_minilm_card_and_embedding():
    at = _open("views/models.py")
    assert at.info and "Load model" in at.info[0].value
    at.button(key="m_load").click().run()
    no_exceptions(at)
    metrics = _metrics(at)
    assert (metrics["Layers"], metrics["Heads"], metrics["Hidden size"]) == ("6", "12", "384")
    assert metrics["Parameters"] == "22.7 M" and metrics["Device"] == "CPU"
    assert not at.warning  # an encoder has no new head
    a, b = "The parcel arrived two days late.", "Delivery was delayed by a couple of days."
    at.text_area(key="m_emb_a").set_value(a)
    at.text_area(key="m_emb_b").set_value(b)
    at.button(key="m_embed").click().run()
    no_exceptions(at)
    vectors = inference.embed(registry.load(LOCAL, "minilm"), [a, b]).vectors
    assert _metrics(at)["Cosine similarity"] == f"{inference.cosine(vectors[0], vectors[1]):.3f}"
    assert at.query_params["model"] in ("minilm", ["minilm"])  # a refresh or shared link reloads it


def test_models_classifier_from_folder_with_probabilities(tiny_bert):
    at = _open("views/models.py")
    at.radio(key="m_source").set_value("Folder or Hub id").run()
    at.text_input(key="m_path").set_value(str(tiny_bert)).run()
    assert at.selectbox(key="m_head").value == "classifier"  # its config.json names a sequence classifier
    at.button(key="m_load").click().run()
    no_exceptions(at)
    assert "negative, positive" in " ".join(c.value for c in at.caption)
    text = "Not bad at all."
    at.text_area(key="m_cls_text").set_value(text)
    at.button(key="m_classify").click().run()
    no_exceptions(at)
    fig = _figure(at, 0)["data"][0]
    shown = dict(zip(fig["y"], fig["x"]))
    expected = inference.classify(registry.load(LOCAL, str(tiny_bert), head="classifier"), [text]).probs[0]
    assert shown["negative"] == pytest.approx(expected[0], abs=1e-6)
    assert shown["positive"] == pytest.approx(expected[1], abs=1e-6)
    assert sum(shown.values()) == pytest.approx(1.0, abs=1e-5)


def test_models_new_head_warning_and_bad_folder(tmp_path):
    at = _open("views/models.py")
    at.selectbox(key="m_head").set_value("classifier")
    at.button(key="m_load").click().run()
    no_exceptions(at)
    assert any("freshly initialised" in w.value for w in at.warning)
    at.radio(key="m_source").set_value("Folder or Hub id").run()
    at.text_input(key="m_path").set_value(str(tmp_path)).run()
    at.button(key="m_load").click().run()
    no_exceptions(at)
    assert any("config.json is missing" in e.value for e in at.error)


def test_models_folder_source_in_a_new_session():
    """No ?model= in the address: the folder box starts empty (it once raised AttributeError on None.strip())."""
    at = _open("views/models.py")
    at.radio(key="m_source").set_value("Folder or Hub id").run()
    no_exceptions(at)
    assert at.text_input(key="m_path").value == ""
    assert at.button(key="m_load").disabled


def test_models_head_follows_the_picked_model(tiny_bert):
    at = _open("views/models.py")
    assert at.selectbox(key="m_name").value == "minilm" and at.selectbox(key="m_head").value == "encoder"
    at.selectbox(key="m_name").set_value("tiny-gpt").run()
    no_exceptions(at)
    own = capabilities.default_head(registry.resolve(LOCAL, "tiny-gpt"))
    assert own == "causal-lm" and at.selectbox(key="m_head").value == own
    at.button(key="m_load").click().run()
    no_exceptions(at)
    assert at.chat_input(key="m_chat_input")  # opened as a causal LM (its chat), not a bare GPT2Model
    # a head picked by hand stays while the model stays, and follows the next model picked
    at.selectbox(key="m_head").set_value("encoder").run()
    assert at.selectbox(key="m_head").value == "encoder"
    at.selectbox(key="m_name").set_value("minilm").run()
    assert at.selectbox(key="m_head").value == "encoder"
    at.selectbox(key="m_name").set_value("tiny-gpt").run()
    assert at.selectbox(key="m_head").value == "causal-lm"
    # a typed folder: the head its config.json names (a sequence-classification architecture)
    at.radio(key="m_source").set_value("Folder or Hub id").run()
    at.text_input(key="m_path").set_value(str(tiny_bert)).run()
    no_exceptions(at)
    assert at.selectbox(key="m_head").value == registry.resolve(LOCAL, str(tiny_bert)).head == "classifier"


def test_models_link_head_wins_over_the_model_default():
    """A shared link names its head: /models?model=tiny-gpt&head=encoder opens tiny-gpt's hidden states."""
    at = app_test("views/models.py")
    at.query_params["model"], at.query_params["head"] = "tiny-gpt", "encoder"
    at.run()
    no_exceptions(at)
    assert at.selectbox(key="m_name").value == "tiny-gpt" and at.selectbox(key="m_head").value == "encoder"
    assert at.session_state["m_loaded"]["head"] == "encoder"
