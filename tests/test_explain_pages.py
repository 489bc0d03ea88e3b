"""AppTest for the Attributions page: classification side by side, two models, generation, dataset job, links."""
import json

import numpy as np
import pytest

from tests.conftest import app_test, no_exceptions
from llm_lab import data, registry
from llm_lab.access import LOCAL


@pytest.fixture
def models(tiny_bert, tiny_gpt2):
    registry.register(LOCAL, registry.ModelEntry("tb-page", "local", str(tiny_bert), "classifier"))
    registry.register(LOCAL, registry.ModelEntry("tb-page-2", "local", str(tiny_bert), "classifier"))
    registry.register(LOCAL, registry.ModelEntry("tg-page", "local", str(tiny_gpt2), "causal-lm"))


def test_classification_methods_side_by_side(models):
    at = app_test("views/attributions.py")
    at.query_params["model"] = "tb-page"
    at.query_params["text"] = "a dull and boring plot"
    at.run()
    no_exceptions(at)
    assert at.text_area(key="attr_text").value == "a dull and boring plot"
    at.multiselect(key="attr_methods").set_value(["Integrated Gradients (layer IG on embeddings)", "Feature Ablation",
                                                   "KernelSHAP"])
    at.button(key="attr_run").click().run()
    no_exceptions(at)
    assert not at.error
    bars = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert sum("Top tokens" in (b["layout"].get("title", {}).get("text") or "") for b in bars) == 3
    assert_faithfulness_verdict(at, "deletion steps")
    assert any("Convergence delta" in c.value for c in at.caption)


def assert_faithfulness_verdict(at, unit: str) -> None:
    """Either a most faithful method (its lead beyond the noise) or "cannot be told apart", never both, and a
    table of each method's faithfulness with its interval and n."""
    named = [s.value for s in at.success if "Most faithful" in s.value]
    tied = [i.value for i in at.info if "cannot be told apart" in i.value]
    assert len(named) + len(tied) == 1, (named, tied)
    table = next(d.value for d in at.dataframe if "faithfulness (comp. − suff.) ↑" in d.value.columns)
    assert all(f"] n=" in v and v.endswith(unit) for v in table["faithfulness (comp. − suff.) ↑"])
    assert all(" [" in v for v in table["comprehensiveness ↑"]) and all(" [" in v for v in table["sufficiency ↓"])


@pytest.fixture
def sharp_bert(tiny_bert, tmp_path):
    """The tiny BERT with a 100× sharper head, registered: p(target) moves enough for the deltas to mean something."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert)
    with torch.no_grad():
        model.classifier.weight.mul_(100)
    model.save_pretrained(tmp_path / "sharp")
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(tmp_path / "sharp")
    registry.register(LOCAL, registry.ModelEntry("tb-sharp", "local", str(tmp_path / "sharp"), "classifier"))


def test_delta_advice_per_method(sharp_bert):
    """IG's delta: converged (or raise the steps); DeepLift's: its rules are approximate here, use IG for
    completeness. Never DeepLift told to raise steps it does not have."""
    at = app_test("views/attributions.py")
    at.query_params.update({"model": "tb-sharp", "text": "a remarkably good and moving film"})
    at.run()
    at.multiselect(key="attr_methods").set_value(["Integrated Gradients (layer IG on embeddings)",
                                                   "DeepLift (on embeddings)"])
    at.button(key="attr_run").click().run()
    no_exceptions(at)
    said = [c.value for c in at.caption] + [w.value for w in at.warning]
    assert not any("raise the steps" in t or "raise the IG steps" in t for t in said), said
    small = [c for c in at.caption if c.value.startswith("Convergence delta") and "Small against" in c.value]
    assert len(small) == 1 and "Integrated Gradients is complete" in small[0].proto.help  # IG's: converged
    deeplift = [w.value for w in at.warning if "DeepLift" in w.value]
    assert len(deeplift) == 1 and "no steps to raise" in deeplift[0] and "use Integrated Gradients" in deeplift[0]
    assert any("GELU, LayerNorm, the attention softmax" in c.value for c in at.caption)  # why, under it


def test_two_models_side_by_side_and_bad_input(models):
    at = app_test("views/attributions.py").run()
    at.selectbox(key="attr_model").set_value("tb-page")
    at.selectbox(key="attr_model2").set_value("tb-page-2")
    at.multiselect(key="attr_methods").set_value(["Saliency"])
    at.button(key="attr_run").click().run()
    no_exceptions(at)
    titles = [m.value for m in at.markdown if m.value.startswith("**Saliency**")]
    assert titles == ["**Saliency** · tb-page", "**Saliency** · tb-page-2"]
    at.text_area(key="attr_text").set_value("   ")
    at.button(key="attr_run").click().run()
    no_exceptions(at)
    assert any("empty" in e.value for e in at.error)


def test_generation_mode(models):
    at = app_test("views/attributions.py")
    at.query_params["model"] = "tg-page"
    at.run()
    no_exceptions(at)
    assert at.radio(key="attr_mode").value == "Generation"
    at.number_input(key="gen_new").set_value(3)
    at.number_input(key="gen_steps").set_value(4)
    at.button(key="gen_run").click().run()
    no_exceptions(at)
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    heat = [s for s in specs if s["data"][0]["type"] == "heatmap"]
    assert heat and len(heat[0]["data"][0]["y"]) == 3


def test_dataset_example_link_and_job(models):
    rows = "text,label\n" + "\n".join(f"review {i} was {'great' if i % 2 else 'bad'},{'pos' if i % 2 else 'neg'}"
                                      for i in range(8))
    info = data.import_dataset(LOCAL, "page-reviews", "r.csv", rows.encode())
    frame = data.load_frame(LOCAL, "page-reviews")
    row = frame.iloc[3]
    at = app_test("views/attributions.py")
    at.query_params.update({"model": "tb-page", "dataset": "page-reviews", "example": str(row["id"])})
    at.run()
    no_exceptions(at)
    assert at.text_area(key="attr_text").value == row["text"]
    at.radio(key="attr_mode").set_value("Dataset (background job)").run()
    at.number_input(key="ds_n").set_value(4)
    at.multiselect(key="ds_methods").set_value(["Saliency", "Feature Ablation"])
    at.button(key="ds_run").click().run()  # jobs run inline in tests
    no_exceptions(at)
    assert_faithfulness_verdict(at, "examples")


def test_dataset_mode_attributes_the_errors_of_a_benchmark_result(models):
    from llm_lab.bench import runner, suite as suites

    at = app_test("views/attributions.py")
    at.run()
    at.radio(key="attr_mode").set_value("Dataset (background job)").run()
    at.radio(key="ds_source").set_value("The errors of a benchmark result").run()
    no_exceptions(at)
    assert any("No finished classification benchmark" in i.value for i in at.info)

    rows = "text,label\n" + "\n".join(f"review {i} was {'great' if i % 2 else 'bad'},{'positive' if i % 2 else 'negative'}"
                                      for i in range(10))
    data.import_dataset(LOCAL, "bench-reviews", "r.csv", rows.encode(), recipe=data.Recipe(train=1.0, validation=0.0))
    suite = suites.parse("name: pg\ntasks:\n  - name: sent\n    type: classification\n    dataset: bench-reviews\n", "t")
    (result,) = runner.run_suite(LOCAL, suite, ["tb-page"])
    errors = sum(not r["correct"] for r in result.per_example)
    assert errors > 0
    __import__("streamlit").cache_data.clear()  # lists are cached for 3 s; the test does not wait
    at = app_test("views/attributions.py")
    at.run()
    at.radio(key="attr_mode").set_value("Dataset (background job)").run()
    at.radio(key="ds_source").set_value("The errors of a benchmark result").run()
    assert at.selectbox(key="ds_result").value.startswith("tb-page · pg/sent")
    at.multiselect(key="ds_methods").set_value(["Saliency"])
    at.button(key="ds_run").click().run()
    no_exceptions(at)
    said = [c.value.replace("\\", "") for c in at.caption]  # plain() escapes Markdown's characters
    assert any(f"tb-page on the errors of pg/sent ({errors} examples)" in c for c in said), said
    assert any("nothing to compare" in i.value for i in at.info)  # one method: no "most faithful"


def _faith(comp, suff):
    return {"comprehensiveness": float(np.mean(comp)), "sufficiency": float(np.mean(suff)),
            "curves": {"comprehensiveness": list(comp), "sufficiency": list(suff)},
            "fractions": [0.1, 0.2, 0.3, 0.4, 0.5], "p_full": 0.5}


@pytest.mark.parametrize("case", ["clear", "noise"])
def test_page_names_the_most_faithful_only_beyond_the_noise(models, monkeypatch, case):
    """A clear lead at every deletion step names a winner; scores of 1e-4 that differ by noise name none,
    and are shown with their digits (never 0.000)."""
    from llm_lab.explain import faithfulness

    clear = {"ig": _faith([0.40, 0.45, 0.50, 0.55, 0.60], [0.05, 0.04, 0.03, 0.02, 0.01]),
             "ablation": _faith([0.10, 0.12, 0.15, 0.18, 0.20], [0.30, 0.25, 0.20, 0.15, 0.10])}
    noise = {"ig": _faith([1.1e-4, 0.9e-4, 1.2e-4, 0.8e-4, 1.0e-4], [1.0e-4] * 5),
             "ablation": _faith([0.9e-4, 1.1e-4, 0.8e-4, 1.2e-4, 1.05e-4], [1.0e-4] * 5)}
    monkeypatch.setattr(faithfulness, "for_attribution",
                        lambda loaded, a, fractions=None: (clear if case == "clear" else noise)[a.method])
    at = app_test("views/attributions.py")
    at.query_params.update({"model": "tb-page", "text": "a dull and boring plot"})
    at.run()
    at.multiselect(key="attr_methods").set_value(["Integrated Gradients (layer IG on embeddings)", "Feature Ablation"])
    at.button(key="attr_run").click().run()
    no_exceptions(at)
    assert_faithfulness_verdict(at, "deletion steps")
    if case == "clear":
        assert any("Most faithful" in s.value and "Integrated Gradients" in s.value for s in at.success)
    else:
        assert any("cannot be told apart on this input" in i.value for i in at.info)
        assert not any("Most faithful" in s.value for s in at.success)
        metrics = [m.value for m in at.metric]
        assert "1.00e-04" in metrics and "0.000" not in metrics
        assert any(c.value.startswith("95% CI [") and "n=5 deletion steps" in c.value for c in at.caption)


def test_generation_of_a_chat_model_attributes_its_template_unless_raw(tmp_path):
    from llm_lab import registry
    from tests.gguf_tiny import write_tiny_llama

    info = write_tiny_llama(tmp_path / "chat.gguf")
    registry.register(LOCAL, registry.ModelEntry("chat-page", "local", str(info["path"]), "causal-lm"))
    at = app_test("views/attributions.py")
    at.query_params.update({"model": "chat-page", "text": "hi", "system": "Be brief."})
    at.run()
    no_exceptions(at)
    assert at.toggle(key="gen_raw").value is False and at.text_input(key="gen_system").value == "Be brief."
    at.number_input(key="gen_new").set_value(2)
    at.number_input(key="gen_steps").set_value(4)
    at.button(key="gen_run").click().run()
    no_exceptions(at)
    prompt_tokens = at.session_state["gen_result"]["prompt_tokens"]
    assert "<|im_start|>" in prompt_tokens and "system" in "".join(prompt_tokens)
    at.toggle(key="gen_raw").set_value(True).run()
    at.button(key="gen_run").click().run()
    no_exceptions(at)
    assert "<|im_start|>" not in at.session_state["gen_result"]["prompt_tokens"]
