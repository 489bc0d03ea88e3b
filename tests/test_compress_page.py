"""AppTest for the Compress page: make a variant (a stand-in recipe), evaluate it, read the report back by link."""
import json

import pytest

from llm_lab import jobs, registry
from llm_lab.access import LOCAL
from tests.conftest import app_test, no_exceptions
from ui.common import plain
from tests.test_compress_eval import build_family, register_family


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    return build_family(tmp_path_factory.mktemp("family"))


@pytest.fixture
def models(family):
    from ui import backend

    register_family(family)
    backend.clear()
    yield family
    backend.clear()


def _texts(at) -> str:
    return " ".join(str(e.value) for kind in ("markdown", "caption", "code", "success", "error", "warning", "info")
                    for e in getattr(at, kind))


def _param(at, key):
    value = at.query_params[key]
    return value[0] if isinstance(value, list) else value


def _evaluate(at):
    at.selectbox(key="cz_parent").set_value("tiny-parent").run()
    no_exceptions(at)
    assert at.multiselect(key="cz_variants").value == ["tiny-small", "tiny-copy"]  # its variants, newest first
    at.selectbox(key="cz_dataset").set_value("demo-reviews")
    at.number_input(key="cz_speed_n").set_value(4)
    at.number_input(key="cz_repeats").set_value(1)
    at.number_input(key="cz_drift_n").set_value(2)
    at.number_input(key="cz_ig_steps").set_value(4)
    at.number_input(key="cz_margin").set_value(5.0)
    at.checkbox(key="cz_memory").uncheck()
    at.button(key="cz_run").click().run()
    no_exceptions(at)
    return _param(at, "ceval_job")


def test_evaluate_variants_and_reopen_the_report_by_link(models, monkeypatch):
    from llm_lab.compress import measure

    # timings are what the machine gives: with a negative tolerance every variant counts as slower than its
    # parent, so the warning and its mark on the chart show whatever the timings were
    monkeypatch.setattr(measure, "SLOWER_TOLERANCE", -1.0)
    at = app_test("views/compress.py").run()
    no_exceptions(at)
    job_id = _evaluate(at)
    job = jobs.get(LOCAL, job_id)
    assert job["status"] == "succeeded", job["error"]
    assert job["params"]["margin"] == pytest.approx(0.05) and job["params"]["alpha"] == 0.05
    assert not job["params"]["memory"] and job["params"]["speed_examples"] == 4

    def check(at):
        table = at.dataframe[0].value
        assert table["model"].tolist() == ["tiny-parent", "tiny-small", "tiny-copy"]
        assert table["verdict"].tolist()[0] == "(reference)"
        assert table["identical predictions"].tolist()[2] == "100.0%"
        text = _texts(at)
        assert "tiny-copy\\: inconclusive (more data needed)" in text and "±5 points" in text
        figures = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
        pareto = next(f for f in figures if "latency p50" in f["layout"]["xaxis"]["title"]["text"])
        parent = next(t for t in pareto["data"] if t.get("name") == "tiny-parent")
        assert parent["marker"]["symbol"] == "star"
        assert [a["text"] for a in pareto["layout"]["annotations"]] == ["slower than its parent"] * 2
        warnings = [w.value for w in at.warning]
        assert any(w.startswith("tiny-copy is slower than its parent tiny-parent") for w in warnings), warnings
        drift = next(f for f in figures if f["layout"]["yaxis"]["title"]["text"] == "Spearman ρ")
        copy = next(t for t in drift["data"] if t["name"] == "tiny-copy")
        assert copy["y"] == pytest.approx([1.0, 1.0])   # the same weights rank the tokens the same way
        assert f"/benchmarks?result={job_id}" in text

    check(at)
    again = app_test("views/compress.py")   # a refresh, or the permalink in another browser
    again.query_params["ceval_job"] = job_id
    again.run()
    no_exceptions(again)
    assert again.selectbox(key="cz_history").value == job_id
    check(again)


def test_make_a_variant_through_a_background_job(models):
    """The compression recipes' own job (global magnitude pruning of the tiny parent), its form made from the
    recipe's declared parameters; a bad value is refused in the page; the new variant is picked for evaluation."""
    from llm_lab.compress import recipes

    at = app_test("views/compress.py").run()
    at.selectbox(key="cz_parent").set_value("tiny-parent").run()
    at.selectbox(key="cz_method").set_value("magnitude").run()
    described = recipes.recipe_for("magnitude").description
    assert plain(described) in _texts(at)   # the recipe's text shown as text
    at.text_input(key="cz_p_magnitude_sparsity").set_value("1.5")
    at.button(key="cz_make").click().run()
    no_exceptions(at)
    assert [e.value for e in at.error] == [plain("sparsity must be a number above 0 and below 1 (share of the block "
                                                 "weights set to zero); got 1.5.")]   # refused before queueing
    assert "cmake_job" not in at.query_params
    at.text_input(key="cz_p_magnitude_sparsity").set_value("0.3")
    at.text_input(key="cz_name").set_value("my_sparse")
    at.button(key="cz_make").click().run()
    no_exceptions(at)
    job = jobs.get(LOCAL, _param(at, "cmake_job"))
    assert job["status"] == "succeeded", job["error"]
    assert job["params"]["params"]["sparsity"] == 0.3 and job["result"]["model"] == "my_sparse"
    made = registry.resolve(LOCAL, "my_sparse")
    assert made.parent == "tiny-parent" and made.meta["recipe"]["method"] == "magnitude"
    assert "my\\_sparse" in _texts(at)   # the typed name, in the job's title, as plain text
    assert at.multiselect(key="cz_variants").value[0] == "my_sparse"  # the new variant is picked for evaluation


def test_without_the_recipes_the_page_still_evaluates(models, monkeypatch):
    from ui import compress

    monkeypatch.setattr(compress, "recipes", lambda: (None, None))
    at = app_test("views/compress.py").run()
    no_exceptions(at)
    assert "Making variants needs the compression recipes" in _texts(at)
    at.selectbox(key="cz_parent").set_value("tiny-parent").run()
    assert at.multiselect(key="cz_variants").value == ["tiny-small", "tiny-copy"]
    assert not at.button(key="cz_run").disabled
