"""What a new user tripped over walking the issue-13 story in a browser (compress, evaluate, serve, endpoint,
compare): each test fails on the code before its fix."""
import json
from pathlib import Path

import pytest

from llm_lab import endpoints, jobs, registry
from llm_lab.access import LOCAL
from llm_lab.errors import ModelError
from tests.conftest import app_test, no_exceptions
from ui.common import plain

BUILTIN_TINY = Path(registry.BUILTIN_DIR) / "tiny-gpt"


def _texts(at) -> str:
    return " ".join(str(e.value) for kind in ("markdown", "caption", "code", "success", "error", "warning", "info")
                    for e in getattr(at, kind))


# ---------------------------------------------------------------- making a variant
def test_a_bad_or_taken_variant_name_is_refused_before_any_job():
    """It was checked when the job registered the variant: 'bad name!' failed at 67%, after the work."""
    from llm_lab.compress import jobs as compress_jobs

    with pytest.raises(ModelError, match="use letters, digits"):
        compress_jobs.submit(LOCAL, "tiny-gpt", "magnitude", {"sparsity": 0.3}, "bad name!")
    with pytest.raises(ModelError, match="is a built-in model name"):
        compress_jobs.submit(LOCAL, "tiny-gpt", "magnitude", {"sparsity": 0.3}, "small-gpt")
    endpoints.add(LOCAL, "taken", "http://127.0.0.1:9/v1", "m")  # any registered model
    with pytest.raises(ModelError, match="exists already"):
        compress_jobs.submit(LOCAL, "tiny-gpt", "magnitude", {"sparsity": 0.3}, "taken")
    with pytest.raises(ModelError, match="applies to classifiers and encoders"):
        compress_jobs.submit(LOCAL, "tiny-gpt", "int8")
    assert jobs.list_jobs(LOCAL) == []


def test_an_endpoint_model_is_no_parent_to_compress():
    """It was offered as a parent; its job failed with "'EndpointModel' object has no attribute 'to'"."""
    from llm_lab.compress import jobs as compress_jobs

    endpoints.add(LOCAL, "hosted", "http://127.0.0.1:9/v1", "m")
    with pytest.raises(ModelError, match="hosted is an OpenAI-compatible endpoint.*cannot be compressed here"):
        compress_jobs.submit(LOCAL, "hosted", "fp16")
    assert jobs.list_jobs(LOCAL) == []
    at = app_test("views/compress.py").run()
    no_exceptions(at)
    assert "hosted" not in at.selectbox(key="cz_parent").options
    assert "tiny-gpt" in at.selectbox(key="cz_parent").options


def test_the_make_panel_says_what_was_made_and_what_a_causal_lm_is_not_offered():
    """The finished job said "Done." and nothing else: the sizes and the checks were in its log only. For a
    causal LM, int8 and ONNX were missing from the list without a word."""
    at = app_test("views/compress.py").run()
    at.selectbox(key="cz_parent").set_value("tiny-gpt").run()
    no_exceptions(at)
    assert "int8" not in at.selectbox(key="cz_method").options
    assert plain("Not offered for tiny-gpt: int8 (ONNX Runtime, CPU), ONNX (fp32, ONNX Runtime).") in _texts(at)
    at.selectbox(key="cz_method").set_value("magnitude").run()
    at.text_input(key="cz_p_magnitude_sparsity").set_value("0.3")
    at.text_input(key="cz_name").set_value("tiny-sparse")
    at.button(key="cz_make").click().run()
    no_exceptions(at)
    job_id = at.query_params["cmake_job"]
    job = jobs.get(LOCAL, job_id[0] if isinstance(job_id, list) else job_id)
    assert job["status"] == "succeeded", job["error"]
    folder = Path(registry.resolve(LOCAL, "tiny-sparse").location)
    size = sum(p.stat().st_size for p in folder.glob("*.safetensors"))   # the weights, read from the disk
    parent = (BUILTIN_TINY / "model.safetensors").stat().st_size
    said = " ".join(str(e.value) for e in list(at.success) + list(at.warning))
    assert plain(f"Made tiny-sparse: {size / 2**20:.1f} MB of weights, {size / parent:.2f}× the parent's "
                 f"{parent / 2**20:.1f} MB.") in said, said
    agreement = job["result"]["checks"]["argmax_agreement"]
    texts = job["result"]["checks"]["texts"]
    assert plain(f"Against tiny-gpt on {texts} sample texts: the same prediction {agreement:.1%}") in said


# ---------------------------------------------------------------- the evaluation's report
def test_an_evaluation_keeps_its_label_when_its_status_changes(monkeypatch):
    """The browser keeps showing the label a selected option had: the picker said "(queued)" above a finished
    evaluation. The label must not depend on the status (the job panel below says it)."""
    from llm_lab.compress import evaluate

    row = {"id": "20260101-000000-abcdef", "title": "Compress-then-evaluate p vs v on d", "status": "queued",
           "created_at": 0.0}
    monkeypatch.setattr(evaluate, "history", lambda actor, limit=50: [dict(row)])
    at = app_test("views/compress.py")
    at.query_params["ceval_job"] = row["id"]
    at.run()
    before = at.selectbox(key="cz_history").options
    row["status"] = "succeeded"
    at.run()
    assert at.selectbox(key="cz_history").options == before


def _report(drifts):
    from llm_lab.compress.report import ModelReport, Quality, Report, Speed

    models = [ModelReport("p", "parent", size_bytes=100, speed=Speed(latency_p50_ms=2.0),
                          quality=[Quality("t", "classification", "accuracy", 0.9, 0.85, 0.95)])]
    for name, drift in drifts:
        models.append(ModelReport(name, "variant", size_bytes=50, speed=Speed(latency_p50_ms=1.0), drift=drift,
                                  quality=[Quality("t", "classification", "accuracy", 0.9, 0.85, 0.95)]))
    return Report("p", [n for n, _ in drifts], {"dataset": "d"}, 0.01, 0.05, "t", models)


def _drift(values):
    from llm_lab.compress.report import Drift

    rows = [{"id": i, "text": f"t{i}", "target": "x", "spearman": v} for i, v in enumerate(values)]
    return Drift("ok", n_steps=4, examples=rows, mean=sum(values) / len(values))


def test_the_drift_chart_names_its_variant_when_it_is_the_only_one():
    """Plotly hides the legend of a single trace: the chart did not say which variant the bars were of."""
    from llm_lab.compress import plots
    from llm_lab.compress.report import Drift

    report = _report([("pruned", _drift([1.0, 0.5])), ("onnx", Drift("not available", "no gradients (…)"))])
    spec = json.loads(plots.drift_bars(report).to_json())
    assert [t["name"] for t in spec["data"]] == ["pruned"]
    assert spec["layout"]["showlegend"] is True


def test_the_summary_table_is_one_arrow_table():
    """'attribution ρ (mean)' held numbers and words: Streamlit logged an ArrowInvalid traceback on every run."""
    import pandas as pd
    import pyarrow as pa

    from llm_lab.compress import tables
    from llm_lab.compress.report import Drift

    report = _report([("pruned", _drift([1.0, 0.5])), ("onnx", Drift("not available", "no gradients (why)"))])
    rows = tables.summary(report)
    pa.Table.from_pandas(pd.DataFrame(rows))   # raised ArrowInvalid
    assert [r["attribution ρ (mean)"] for r in rows] == [None, "0.750", "no gradients"]


# ---------------------------------------------------------------- the Benchmarks page
def test_a_classification_result_without_a_confusion_matrix_opens(tiny_bert):
    """The evaluation's link to its benchmark run ended in a PlotlyError: its task had no confusion_matrix metric."""
    from llm_lab.bench import jobs as bench_jobs, suite as suites

    task = {"name": "q", "type": "classification", "dataset": "demo-reviews", "metrics": ["accuracy"], "limit": 8,
            "label_map": {"neutral": "negative"}}   # the tiny BERT knows two labels
    run = bench_jobs.submit(LOCAL, suites.to_yaml("no-cm", [task]), [str(tiny_bert)])   # inline in tests
    at = app_test("views/benchmarks.py")
    at.query_params["result"] = run
    at.run()
    no_exceptions(at)
    assert any("No confusion matrix for this result" in i.value for i in at.info)


def test_compress_then_evaluate_asks_for_the_confusion_matrix():
    from llm_lab.compress import evaluate

    suite = evaluate.build_suite(LOCAL, "minilm-sentiment", "demo-reviews")
    assert "confusion_matrix" in suite.tasks[0].metrics


# ---------------------------------------------------------------- endpoints, serve, compare
def test_adding_an_endpoint_whose_key_is_not_set_here_warns_at_once(monkeypatch):
    monkeypatch.delenv("WALK_NOT_SET_KEY", raising=False)
    at = app_test("views/models.py").run()
    at.text_input(key="ep_name").set_value("hosted")
    at.text_input(key="ep_url").set_value("http://127.0.0.1:9/v1")
    at.text_input(key="ep_model").set_value("m")
    at.text_input(key="ep_env").set_value("WALK_NOT_SET_KEY")
    at.button(key="ep_add").click().run()
    no_exceptions(at)
    assert any("Added hosted" in s.value for s in at.success)
    assert any("WALK\\_NOT\\_SET\\_KEY, which is not set" in w.value for w in at.warning), [w.value for w in at.warning]


def test_the_serve_command_names_a_home_of_its_own(monkeypatch, tmp_path):
    """Copied into a terminal without LLM_LAB_HOME, the command looked for the model in ~/.llm_lab, then on the
    Hub ("The Hugging Face Hub cannot be reached to fetch 'minilm-sentiment-int8'")."""
    from llm_lab.serve import command

    monkeypatch.setenv("LLM_LAB_HOME", str(tmp_path / "my lab"))
    assert command("m-int8") == f"LLM_LAB_HOME='{tmp_path}/my lab' python -m llm_lab serve m-int8 --port 8000"
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("LLM_LAB_HOME", str(tmp_path / ".llm_lab"))   # the default: nothing to add
    assert command("m-int8") == "python -m llm_lab serve m-int8 --port 8000"


def test_an_endpoint_output_without_log_probabilities_does_not_say_none():
    from llm_lab.compare import saved
    from llm_lab.compare.runs import Comparison, ModelOutput

    def row(logprob):
        return {"prompt": "def f():", "text": "    pass", "new_tokens": 2, "latency_s": 0.5, "tokens_per_s": 4.0,
                "mean_logprob": logprob, "truncated": False, "stop_reason": "max_new_tokens", "note": "",
                "prompt_tokens": 3, "first_token_s": 0.1}

    comp = Comparison("generation", ["tiny-gpt", "hosted"], [{"id": "1", "text": "def f():"}],
                      {"tiny-gpt": ModelOutput(rows=[row(-1.25)]), "hosted": ModelOutput(rows=[row(None)])},
                      summary={m: {"outputs": 1, "new_tokens": 2, "wall_s": 0.5, "tokens_per_s": 4.0,
                                   "mean_latency_s": 0.5, "mean_logprob": lp, "truncated": 0}
                               for m, lp in (("tiny-gpt", -1.25), ("hosted", None))})
    cid = saved.save(LOCAL, comp)
    at = app_test("views/compare.py")
    at.query_params["comparison"] = cid
    at.run()
    no_exceptions(at)
    captions = [c.value for c in at.caption if "tok/s" in c.value]
    assert len(captions) == 2 and "logprob -1.25" in captions[0], captions
    assert "logprob –" in captions[1] and "None" not in captions[1], captions


def test_why_a_variant_has_no_attribution_drift_is_said_in_full(monkeypatch):
    """It was a row of the drift table, its reason cut to "not avail" by the column's width."""
    from llm_lab.compress import evaluate
    from llm_lab.compress.report import Drift

    reason = "not available: no gradients (Integrated Gradients does not apply to onnx opened as classifier)"
    report = _report([("pruned", _drift([1.0, 0.5])), ("onnx", Drift("not available", reason))])
    job_id = "20260101-000000-abcdef"
    monkeypatch.setattr(evaluate, "history", lambda actor, limit=50: [
        {"id": job_id, "title": "Compress-then-evaluate", "status": "succeeded", "created_at": 0.0}])
    monkeypatch.setattr(evaluate, "report_of", lambda actor, job: report)
    at = app_test("views/compress.py")
    at.query_params["ceval_job"] = job_id
    at.run()
    no_exceptions(at)
    drift = next(d.value for d in at.dataframe if "spearman ρ" in d.value.columns)
    assert drift["variant"].tolist() == ["pruned", "pruned"] and drift["spearman ρ"].tolist() == [1.0, 0.5]
    assert plain(f"onnx: {reason}") in [c.value for c in at.caption]


def test_a_failed_job_says_its_error_once(monkeypatch):
    """The bar's text and the red box below both said the error."""
    from llm_lab import store
    from llm_lab.access import SYSTEM, scope
    from llm_lab.compress import jobs as compress_jobs

    monkeypatch.setattr(jobs, "_enqueue", lambda job_id: None)  # queued, never run: it fails by hand below
    job_id = compress_jobs.submit(LOCAL, "tiny-gpt", "fp16")
    error = "The parent's weights are not readable."
    scope(SYSTEM).update("jobs", {"status": "failed", "error": error, "message": error, "finished_at": store.now()},
                         "id=?", (job_id,))
    at = app_test("views/compress.py")
    at.query_params["cmake_job"] = job_id
    at.run()
    no_exceptions(at)
    bars = [p.proto.text for p in at.get("progress")]
    assert bars == ["failed"], bars
    assert [e.value for e in at.error] == [plain(error)]
