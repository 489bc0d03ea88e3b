"""AppTest for the Compare and Arena pages."""
import pytest

from llm_lab import registry
from llm_lab.access import LOCAL
from llm_lab.compare import arena, runs, saved
from llm_lab.generation import GenerationSettings
from llm_lab.registry import ModelEntry
from tests.conftest import BrowserLabels, app_test, no_exceptions


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
    at = app_test("views/compare.py").run()
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


def _look_at(at):
    return next(s for s in at.selectbox if s.label == "Look at one input")


def _quoted(at) -> list[str]:
    return [m.value[2:] for m in at.markdown if m.value.startswith("> ")]


def _cid(at) -> str:
    cid = at.query_params["comparison"]
    return cid[0] if isinstance(cid, list) else cid


def test_look_at_one_input_follows_the_comparison_shown(models):
    """Running or opening another comparison in the same session: the "Look at one input" box the browser
    shows lists that comparison's inputs, at its first row (its key once outlived the comparison: the browser
    kept the old prompt as its label while the page quoted a row of the new one)."""
    browser = BrowserLabels()
    at = app_test("views/compare.py").run()
    at.multiselect(key="c_models_generation").set_value(["page-lm-a", "page-lm-b"])
    at.number_input(key="c_max").set_value(2)
    at.text_area(key="c_texts_generation").set_value("alpha one\nalpha two\nalpha three")
    at.button(key="c_run").click().run()
    no_exceptions(at)
    first = _cid(at)
    assert browser.see(at, _look_at(at)) == "1: alpha one"
    browser.choose(_look_at(at), 2).run()
    assert browser.see(at, _look_at(at)) == "3: alpha three" and _quoted(at) == ["alpha three"]

    at.text_area(key="c_texts_generation").set_value("beta one\nbeta two\nbeta three")
    at.button(key="c_run").click().run()  # another comparison, the same length
    no_exceptions(at)
    assert _cid(at) != first
    box = _look_at(at)
    assert box.options == ["1: beta one", "2: beta two", "3: beta three"]
    assert browser.see(at, box) == box.options[box.index] == "1: beta one" and _quoted(at) == ["beta one"]

    browser.choose(box, 1).run()
    at.query_params["comparison"] = first  # opened again (the job panel's "Show the results" does this)
    at.run()
    no_exceptions(at)
    box = _look_at(at)
    assert browser.see(at, box) == box.options[box.index] == "1: alpha one" and _quoted(at) == ["alpha one"]


def test_reopened_comparison_fills_the_form_with_its_inputs_and_settings(models):
    """A saved comparison opened by its link starts the form from its mode, models, inputs and settings,
    once: what the person changes afterwards stays."""
    settings = GenerationSettings(do_sample=True, temperature=0.7, top_p=0.9, top_k=20, max_new_tokens=3,
                                  repetition_penalty=1.3, seed=7, stop=["\n", "##"])
    comp = runs.run(LOCAL, "generation", ["page-lm-b", "page-lm-a"],
                    runs.make_inputs(["gamma one", "gamma two"], references=["ref one", ""]), settings)
    cid = saved.save(LOCAL, comp)
    at = app_test("views/compare.py")
    at.query_params["comparison"] = cid
    at.run()
    no_exceptions(at)
    assert at.radio(key="c_kind").value == "generation" and at.radio(key="c_source").value == "Type them"
    assert at.multiselect(key="c_models_generation").value == ["page-lm-b", "page-lm-a"]
    assert at.text_area(key="c_texts_generation").value == "gamma one\ngamma two"
    assert at.text_area(key="c_refs_generation").value == "ref one"
    assert at.radio(key="c_mode").value == "sampling"
    assert (at.number_input(key="c_max").value, at.number_input(key="c_rep").value, at.number_input(key="c_seed").value,
            at.number_input(key="c_top_k").value) == (3, 1.3, 7, 20)
    assert (at.slider(key="c_temp").value, at.slider(key="c_top_p").value) == (0.7, 0.9)
    assert at.text_input(key="c_stop").value == "\\n|##"
    at.number_input(key="c_max").set_value(5).run()
    at.run()
    assert at.number_input(key="c_max").value == 5  # filled once per comparison, not on every rerun

    clf = runs.run(LOCAL, "classification", ["page-clf-b", "page-clf-a"],
                   runs.make_inputs(["nice one", "bad one"], labels=["positive", "negative"]))
    at.query_params["comparison"] = saved.save(LOCAL, clf)
    at.run()
    no_exceptions(at)
    assert at.radio(key="c_kind").value == "classification"
    assert at.multiselect(key="c_models_classification").value == ["page-clf-b", "page-clf-a"]
    assert at.text_area(key="c_texts_classification").value == "nice one\nbad one"
    assert at.text_area(key="c_refs_classification").value == "positive\nnegative"

    sample = runs.run(LOCAL, "classification", ["page-clf-a", "page-clf-b"], runs.make_inputs(["x"]),
                      source={"type": "dataset", "dataset": "demo-reviews", "split": "test", "limit": 7})
    at.query_params["comparison"] = saved.save(LOCAL, sample)
    at.run()
    no_exceptions(at)
    assert at.radio(key="c_source").value == "Rows of a dataset"
    assert (at.selectbox(key="c_dataset").value, at.selectbox(key="c_split").value,
            at.number_input(key="c_limit").value) == ("demo-reviews", "test", 7)


def test_switching_kind_offers_that_kinds_models_and_examples(models):
    from ui.compare_form import EXAMPLES

    at = app_test("views/compare.py").run()
    lms = {"page-lm-a", "page-lm-b", "tiny-gpt", "small-gpt", registry.CHAT_MODEL}
    assert set(at.multiselect(key="c_models_generation").value) <= lms
    at.radio(key="c_kind").set_value("classification").run()
    no_exceptions(at)
    chosen = at.multiselect(key="c_models_classification").value
    assert chosen and not set(chosen) & lms
    assert at.text_area(key="c_texts_classification").value == EXAMPLES["classification"]
    at.radio(key="c_kind").set_value("generation").run()
    # the generation examples: questions when the chat model is in the first pair, Python openings otherwise
    chat = registry.CHAT_MODEL in at.multiselect(key="c_models_generation").value
    assert at.text_area(key="c_texts_generation").value == EXAMPLES["chat" if chat else "generation"]


def test_compare_reopens_by_link_and_classification(models):
    at = app_test("views/compare.py").run()
    at.radio(key="c_kind").set_value("classification").run()
    at.multiselect(key="c_models_classification").set_value(["page-clf-a", "page-clf-b"])
    at.text_area(key="c_texts_classification").set_value("great\nawful\nfine")
    at.text_area(key="c_refs_classification").set_value("positive\nnegative\npositive")
    at.button(key="c_run").click().run()
    no_exceptions(at)
    cid = saved.list_saved(LOCAL)[0]["id"]
    again = app_test("views/compare.py")
    again.query_params["comparison"] = cid
    again.run()
    no_exceptions(again)
    assert cid in _texts(again)
    assert f"/compare?comparison={cid}" in " ".join(c.value for c in again.code)  # its permalink
    assert any("agree" in m.label for m in again.metric)
    assert any("accuracy" in m.label for m in again.metric)
    # every number with its interval and n: 3 labelled inputs, Wilson intervals
    shown = _texts(again)
    assert "n=3 · 95% Wilson score interval" in shown and "BCa bootstrap" in shown
    # the same weights under two names: no flips, and the paired table says so
    pairs = next(d.value for d in again.dataframe if "McNemar p" in d.value.columns)
    assert list(pairs["A right → B wrong"]) == [0] and list(pairs["McNemar p"]) == [1.0]
    assert any("page-clf-a and page-clf-b" in t.value for t in again.text)
    frame = next(d.value for d in again.dataframe if "input" in d.value.columns)
    assert "page-clf-a · explain" in frame.columns and frame["page-clf-a · explain"].iloc[0].startswith("/attributions?")
    missing = app_test("views/compare.py")
    missing.query_params["comparison"] = "nope"
    missing.run()
    no_exceptions(missing)
    assert any("No saved comparison" in e.value for e in missing.error)


def test_compare_dataset_job_and_bad_input(models):
    at = app_test("views/compare.py").run()
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
    at = app_test("views/arena.py").run()
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
    assert list(board["95% CI"]) == ["not enough votes"] * 2  # one vote: no interval (it was "+0 / +0")
    assert len(at.get("plotly_chart")) >= 1
    assert not [b for b in at.button if b.key and b.key.startswith("a_vote_")]  # no second vote offered
