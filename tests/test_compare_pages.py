"""AppTest for the Compare and Arena pages."""
import pytest

from llm_lab.access import LOCAL
from llm_lab import registry
from llm_lab.compare import arena, saved
from llm_lab.registry import ModelEntry
from tests.conftest import app_test, no_exceptions


@pytest.fixture
def models(tiny_gpt2, tiny_bert):
    from ui import backend

    for name, path, task in [("page-lm-a", tiny_gpt2, "causal-lm"), ("page-lm-b", tiny_gpt2, "causal-lm"),
                             ("page-clf-a", tiny_bert, "classifier"), ("page-clf-b", tiny_bert, "classifier")]:
        registry.register(LOCAL, ModelEntry(name, "local", str(path), task))
    backend.clear()
    yield
    backend.clear()


def _texts(at) -> str:
    return " ".join(str(e.value) for kind in ("markdown", "caption", "code", "success", "error", "warning")
                    for e in getattr(at, kind))


def test_compare_typed_generation(models):
    at = app_test("pages/compare.py").run()
    no_exceptions(at)
    at.multiselect(key="c_models_generation").set_value(["page-lm-a", "page-lm-b"])
    at.text_area(key="c_texts_generation").set_value("def foo(x):\nclass Bar")
    at.text_area(key="c_refs_generation").set_value("return x\n")
    at.button(key="c_run").click().run()
    no_exceptions(at)
    cid = at.query_params["comparison"]
    cid = cid[0] if isinstance(cid, list) else cid
    comp = saved.get(LOCAL, cid)
    assert comp.models == ["page-lm-a", "page-lm-b"] and len(comp.inputs) == 2
    assert comp.inputs[0]["reference"] == "return x" and "reference" not in comp.inputs[1]
    assert comp.outputs["page-lm-a"].rows[0]["text"] == comp.outputs["page-lm-b"].rows[0]["text"]
    assert "bleu" in comp.outputs["page-lm-a"].rows[0]
    assert at.dataframe and "Word-level differences" in _texts(at)
    assert "100% of the words in common" in _texts(at)  # same weights under two names: same outputs


def test_switching_kind_offers_that_kinds_models_and_examples(models):
    at = app_test("pages/compare.py").run()
    assert set(at.multiselect(key="c_models_generation").value) <= {"page-lm-a", "page-lm-b", "tiny-gpt"}
    at.radio(key="c_kind").set_value("classification").run()
    no_exceptions(at)
    chosen = at.multiselect(key="c_models_classification").value
    assert chosen and not set(chosen) & {"page-lm-a", "page-lm-b", "tiny-gpt"}
    assert "def fibonacci" not in at.text_area(key="c_texts_classification").value
    at.radio(key="c_kind").set_value("generation").run()
    assert "def fibonacci" in at.text_area(key="c_texts_generation").value


def test_compare_reopens_by_link_and_classification(models):
    at = app_test("pages/compare.py").run()
    at.radio(key="c_kind").set_value("classification").run()
    at.multiselect(key="c_models_classification").set_value(["page-clf-a", "page-clf-b"])
    at.text_area(key="c_texts_classification").set_value("great\nawful\nfine")
    at.text_area(key="c_refs_classification").set_value("positive\nnegative\npositive")
    at.button(key="c_run").click().run()
    no_exceptions(at)
    cid = saved.list_saved(LOCAL)[0]["id"]
    again = app_test("pages/compare.py")
    again.query_params["comparison"] = cid
    again.run()
    no_exceptions(again)
    assert cid in _texts(again)
    assert f"/compare?comparison={cid}" in " ".join(c.value for c in again.code)  # its permalink
    assert any("agree" in m.label for m in again.metric)
    assert any("accuracy" in m.label for m in again.metric)
    frame = again.dataframe[0].value
    assert "page-clf-a · explain" in frame.columns and frame["page-clf-a · explain"].iloc[0].startswith("/attributions?")
    missing = app_test("pages/compare.py")
    missing.query_params["comparison"] = "nope"
    missing.run()
    no_exceptions(missing)
    assert any("No saved comparison" in e.value for e in missing.error)


def test_compare_dataset_job_and_bad_input(models):
    at = app_test("pages/compare.py").run()
    at.multiselect(key="c_models_generation").set_value(["page-lm-a", "page-lm-b"])
    at.text_area(key="c_texts_generation").set_value("   \n")
    at.button(key="c_run").click().run()
    no_exceptions(at)
    assert any("No prompts" in e.value for e in at.error)
    at.radio(key="c_source").set_value("Rows of a dataset").run()
    at.selectbox(key="c_dataset").set_value("demo-prompts")
    at.number_input(key="c_limit").set_value(3)
    at.button(key="c_job").click().run()  # jobs run inline in tests
    no_exceptions(at)
    rows = saved.list_saved(LOCAL)
    assert len(rows) == 1 and rows[0]["n_inputs"] == 3 and rows[0]["source"]["dataset"] == "demo-prompts"


def test_arena_battle_vote_and_leaderboard(models):
    at = app_test("pages/arena.py").run()
    no_exceptions(at)
    assert any("No votes yet" in i.value for i in at.info)
    at.multiselect(key="a_pool").set_value(["page-lm-a", "page-lm-b"])
    at.number_input(key="a_max").set_value(4)
    at.button(key="a_new").click().run()
    no_exceptions(at)
    text = _texts(at)
    assert "Model A" in text and "Model B" in text
    assert "page-lm-a" not in text and "page-lm-b" not in text  # names hidden before the vote
    at.button(key="a_vote_tie").click().run()
    no_exceptions(at)
    assert "page-lm-a" in at.success[0].value and "page-lm-b" in at.success[0].value
    votes = arena.votes(LOCAL)
    assert len(votes) == 1 and votes[0]["vote"] == "tie" and votes[0]["voter"].startswith("anon-")
    board = at.dataframe[0].value
    assert set(board["model"]) == {"page-lm-a", "page-lm-b"} and (board["rating"] == 1000).all()
    assert len(at.get("plotly_chart")) >= 1
    assert not [b for b in at.button if b.key and b.key.startswith("a_vote_")]  # no second vote offered
