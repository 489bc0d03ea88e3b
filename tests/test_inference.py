"""The inference layer: every feature runs a model through the same calls, so one input gets one answer.

A ~400-token review (longer than the 256 tokens Compare used to read, shorter than MiniLM's 512) goes through the
Models page's "Try it", Compare, a benchmark, `serve /v1/classify` and an attribution; a causal LM's greedy text
through Compare, Arena, the generation task and `serve`; perplexity through the language-modelling task, the model
card's measurement and `loglikelihood_rolling`. An AST check fails when a module outside `llm_lab/inference`
calls a model itself.
"""
import ast
import io
import random
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llm_lab import capabilities as caps, data, inference, registry
from llm_lab.access import LOCAL
from llm_lab.errors import ModelError
from tests.conftest import ROOT, app_test, no_exceptions

SENTENCES = [
    "I bought this blender for my small kitchen and used it every morning for a month.",
    "The motor is strong, the jar is easy to clean and the lid closes tightly.",
    "Smoothies come out smooth even with frozen fruit, which surprised me.",
    "The buttons are clearly labelled and the speed dial turns without effort.",
    "It is louder than my old one, but not so loud that it wakes the house.",
    "Customer service answered my question about the warranty within a day.",
]


def long_review(sentences: int) -> str:
    return " ".join(SENTENCES[i % len(SENTENCES)] for i in range(sentences))


@pytest.fixture(scope="module")
def sentiment():
    return registry.load(LOCAL, "minilm-sentiment")


def _csv(frame: pd.DataFrame) -> bytes:
    buf = io.StringIO()
    frame.to_csv(buf, index=False)
    return buf.getvalue().encode()


def _bench(dataset: str, model: str, task_yaml: str):
    from llm_lab.bench import runner, suite

    spec = suite.parse(f"name: same\ntasks:\n  - name: t\n    dataset: {dataset}\n    split: all\n{task_yaml}", "t")
    (result,) = runner.run_suite(LOCAL, spec, [model], use_cache=False)
    assert result.status == "ok", result.error
    return result


# ---------------------------------------------------------------- one answer for one input
def test_a_long_review_gets_the_same_label_and_probability_everywhere(sentiment):
    from fastapi.testclient import TestClient

    from llm_lab.compare import runs
    from llm_lab.explain import attributions
    from llm_lab.serve.app import create_app

    text = long_review(22)
    ref = inference.classify(sentiment, [text])
    assert 300 < ref.tokens.original[0] < 512 and not ref.tokens.truncated(0)  # Compare used to cut it at 256
    label, prob = ref.predicted(0)

    comparison = runs.run(LOCAL, "classification", ["minilm-sentiment", "minilm"], runs.make_inputs([text]))
    row = comparison.outputs["minilm-sentiment"].rows[0]
    assert row["label"] == label and row["prob"] == pytest.approx(prob, abs=1e-5)

    other = next(x for x in sentiment.labels if x != label)
    rows = pd.DataFrame({"text": [text, "It broke on the first day."], "label": [label, other]})
    data.import_dataset(LOCAL, "long-one", "l.csv", _csv(rows), {"text": "text", "label": "label"})
    result = _bench("long-one", "minilm-sentiment", "    type: classification\n")
    example = result.per_example[0]
    assert example["prediction"] == label and example["confidence"] == pytest.approx(prob, abs=1e-4)

    with TestClient(create_app(sentiment, None, names=["minilm-sentiment"])) as client:
        body = client.post("/v1/classify", json={"input": [text]}).json()
    assert body["data"][0]["label"] == label
    assert body["data"][0]["probabilities"][label] == pytest.approx(prob, abs=1e-5)

    explained = attributions.attribute(sentiment, text, "saliency")
    assert explained.predicted[0] == label and explained.predicted[1] == pytest.approx(prob, abs=1e-5)
    assert explained.target_label == label  # "Why?" explains the prediction Compare shows

    at = app_test("views/models.py")
    at.query_params["model"] = "minilm-sentiment"
    at.run()
    at.text_area(key="m_cls_text").set_value(text)
    at.button(key="m_classify").click().run()
    no_exceptions(at)
    shown = [m.value for m in at.markdown if m.value.startswith("Prediction:")]
    assert shown == [f"Prediction: **{label}** ({prob:.1%})"]


def test_a_text_longer_than_the_context_is_cut_alike_and_every_feature_says_so(sentiment):
    from llm_lab.compare import runs
    from llm_lab.explain import attributions

    text = long_review(40)
    ref = inference.classify(sentiment, [text])
    assert ref.tokens.truncated(0) and len(ref.tokens.ids[0]) == 512 == ref.tokens.limit
    assert f"has {ref.tokens.original[0]} tokens" in ref.notes()[0] and "only the first 512" in ref.notes()[0]
    label, prob = ref.predicted(0)

    row = runs.run(LOCAL, "classification", ["minilm-sentiment", "minilm"], runs.make_inputs([text])).outputs[
        "minilm-sentiment"].rows[0]
    assert (row["label"], pytest.approx(prob, abs=1e-5)) == (label, row["prob"])
    assert "only the first 512" in row["note"]
    explained = attributions.attribute(sentiment, text, "saliency")
    assert explained.predicted[1] == pytest.approx(prob, abs=1e-5)
    assert len(explained.tokens) == 512 and "only the first 512" in explained.notes[0]

    # a caller may ask for fewer tokens, and the result says so
    short = inference.classify(sentiment, [text], max_length=64)
    assert len(short.tokens.ids[0]) == 64 and "at most 64" in short.notes()[0]


def test_batching_and_resuming_do_not_change_a_classification(sentiment):
    texts = [long_review(n) for n in (1, 3, 9, 2, 30, 5, 1)]
    alone = np.stack([inference.classify(sentiment, [t]).probs[0] for t in texts])
    together = inference.classify(sentiment, texts, batch_size=2)
    np.testing.assert_allclose(together.probs, alone, atol=1e-5)
    seen = []
    part = inference.classify(sentiment, texts, positions=[4, 1], on_batch=lambda rows, p: seen.extend(rows))
    assert sorted(seen) == [1, 4] and np.isnan(part.probs[0]).all()
    np.testing.assert_allclose(part.probs[[1, 4]], alone[[1, 4]], atol=1e-5)


def test_a_causal_lm_writes_the_same_greedy_text_everywhere():
    from fastapi.testclient import TestClient

    from llm_lab.compare import arena, runs
    from llm_lab.generation import GenerationSettings
    from llm_lab.serve.app import create_app

    lm = registry.load(LOCAL, "tiny-gpt")
    prompt = "def read_lines(path):"
    settings = GenerationSettings(max_new_tokens=12)
    expected = inference.generate(lm, [prompt], settings)[0].text
    assert expected.strip()

    compared = runs.run(LOCAL, "generation", ["tiny-gpt", "small-gpt"], runs.make_inputs([prompt]), settings)
    assert compared.outputs["tiny-gpt"].rows[0]["text"] == expected
    streamed = [p for p in inference.stream(lm, prompt, settings) if isinstance(p, str)]
    assert "".join(streamed) == expected
    battle = arena.new_battle(LOCAL, ["tiny-gpt", "small-gpt"], prompt, settings, rng=random.Random(0))
    side = "a" if battle["model_a"] == "tiny-gpt" else "b"
    assert battle[f"output_{side}"] == expected

    data.import_dataset(LOCAL, "one-prompt", "p.csv", _csv(pd.DataFrame({"prompt": [prompt], "reference": ["x"]})),
                        {"prompt": "prompt", "reference": "reference"})
    result = _bench("one-prompt", "tiny-gpt", "    type: generation\n    generation: {max_new_tokens: 12}\n")
    assert result.per_example[0]["prediction"] == expected.strip()

    with TestClient(create_app(lm, None, names=["tiny-gpt"])) as client:
        body = client.post("/v1/completions", json={"prompt": prompt, "max_tokens": 12, "temperature": 0}).json()
    assert body["choices"][0]["text"] == expected


def test_perplexity_is_one_number_in_the_benchmark_the_model_card_and_loglikelihood_rolling():
    from llm_lab import lm_quality

    lm = registry.load(LOCAL, "tiny-gpt")
    text = lm_quality.held_out_text(3000)
    rolled = inference.loglikelihood_rolling(lm, [text])[0]
    ppl = inference.perplexity([rolled])
    assert len(rolled.logprobs) == len(lm.tokenizer(text, add_special_tokens=False)["input_ids"])
    assert lm_quality.perplexity(lm, text)["perplexity"] == pytest.approx(ppl, rel=1e-6)

    data.import_dataset(LOCAL, "held-out", "h.csv", _csv(pd.DataFrame({"text": [text]})), {"text": "text"})
    result = _bench("held-out", "tiny-gpt", "    type: language_modeling\n")
    assert result.metrics["perplexity"] == pytest.approx(ppl, rel=1e-6)

    # an independent computation: one forward pass per window, plain torch
    import torch

    ids = [inference.start_token(lm.tokenizer)] + lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    context, nll = lm.capabilities.max_context, 0.0
    with torch.inference_mode():
        for a in range(1, len(ids), context):
            b = min(a + context, len(ids))
            window = torch.tensor([ids[max(0, b - 1 - context):b]])
            logits = lm.model(input_ids=window[:, :-1]).logits[0, -(b - a):].float()
            nll += float(torch.nn.functional.cross_entropy(logits, window[0, -(b - a):], reduction="sum"))
    assert ppl == pytest.approx(float(np.exp(nll / (len(ids) - 1))), rel=1e-5)


def test_loglikelihood_of_a_continuation_and_whether_it_is_greedy():
    lm = registry.load(LOCAL, "tiny-gpt")
    prompt = "def read_lines(path):"
    greedy = inference.generate(lm, [prompt], inference_settings(4))[0]
    (mine, other) = inference.loglikelihood(lm, [(prompt, greedy.text), (prompt, " zebra crossing")])
    assert mine.greedy and not other.greedy and mine.logprob > other.logprob
    assert mine.logprob == pytest.approx(greedy.mean_logprob * greedy.new_tokens, abs=1e-3)


def inference_settings(n: int):
    from llm_lab.generation import GenerationSettings

    return GenerationSettings(max_new_tokens=n)


def test_an_endpoint_answers_generate_only_and_the_others_give_the_one_message():
    from llm_lab import endpoints

    endpoints.add(LOCAL, "far-llm", "http://127.0.0.1:9/v1", "m")
    far = registry.load(LOCAL, "far-llm")
    for call in (lambda: inference.loglikelihood(far, [("a", " b")]),
                 lambda: inference.loglikelihood_rolling(far, ["a b c"]),
                 lambda: inference.classify(far, ["a"])):
        with pytest.raises(ModelError, match="does not apply to far-llm, an OpenAI-compatible endpoint"):
            call()


def test_an_encoder_embeds_per_layer_and_pools_like_sentence_transformers():
    minilm = registry.load(LOCAL, "minilm")
    texts = ["A cat sleeps on the sofa.", "A kitten naps on the couch, all afternoon long."]
    last = inference.embed(minilm, texts).vectors
    layers = inference.embed(minilm, texts, all_layers=True).vectors
    assert layers.shape == (2, minilm.model.config.num_hidden_layers + 1, last.shape[1])
    np.testing.assert_allclose(layers[:, -1], last, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(last, axis=1), 1.0, atol=1e-5)


# ---------------------------------------------------------------- no feature runs a model by itself
MODEL_INPUTS = {"input_ids", "inputs_embeds", "attention_mask"}
MODEL_NAMES = {"model", "base", "teacher", "generate"}
# Where a model is called outside llm_lab/inference, and why that is not a feature running a model:
ALLOWED = {
    "llm_lab/compress/onnx_export.py": "the wrapper the ONNX exporter traces into the graph",
    "llm_lab/train/distill.py": "the student's forward inside Trainer's training step (the teacher goes through "
                                "inference.forward)",
}


MODULES = {"model", "base", "teacher", "student"}  # names a model object goes by
NOT_MODELS = {"self", "report", "backend"}  # `report.model(name)` (a report's row), `backend.model(name)` (a load)


def _terminal(node) -> str:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""


def _model_calls(path: Path) -> list[int]:
    """Lines of calls like `loaded.model(input_ids=…)`, `loaded.model(ids)`, `base(**enc)`, `student(ids)`,
    `model.generate(ids, …)`, `model.forward(ids)`."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        func, keywords = node.func, {k.arg for k in node.keywords}
        feeds = bool(keywords & MODEL_INPUTS) or None in keywords  # None: a **mapping of inputs
        name = _terminal(func)
        if isinstance(func, ast.Name):
            hit = name in MODULES or (name.endswith("_model") and feeds)
        elif name in ("generate", "forward"):
            owner = _terminal(func.value)
            hit = owner in MODULES or owner.endswith("model")
        elif name == "model":
            hit = feeds or _terminal(func.value) not in NOT_MODELS
        else:
            hit = (name in MODEL_NAMES or name.endswith("_model")) and feeds
        if hit:
            lines.append(node.lineno)
    return lines


def test_no_module_outside_the_inference_layer_calls_a_model():
    found = {}
    for path in sorted((ROOT / "llm_lab").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("llm_lab/inference/") or rel in ALLOWED:
            continue
        if lines := _model_calls(path):
            found[rel] = lines
    for folder in ("views", "ui"):
        for path in sorted((ROOT / folder).glob("*.py")):
            if lines := _model_calls(path):
                found[path.relative_to(ROOT).as_posix()] = lines
    assert not found, f"models called outside llm_lab/inference (use its calls or inference.forward): {found}"


def test_the_check_catches_a_model_call(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f(loaded, ids, enc):\n    loaded.model(input_ids=ids)\n    base(**enc)\n"
                     "    loaded.model.generate(input_ids=ids)\n    report.model('name')\n    loaded.model(ids)\n"
                     "    model.generate(ids, max_new_tokens=3)\n    student(ids)\n    model.forward(ids)\n"
                     "    server.generate(body)\n    self.model(self.parent)\n")
    assert _model_calls(probe) == [2, 3, 4, 6, 7, 8, 9]


def test_features_take_the_context_from_capabilities_not_their_own_numbers():
    """The 256/128/512 token caps each feature chose are gone: no `max_length=<number>` default outside training
    (whose max_length is a setting the user picks)."""
    pattern = re.compile(r"\bmax_(length|tokens): int( \| None)? = [1-9]\d*")  # 0 is "none yet", not a cap
    offenders = [p.relative_to(ROOT).as_posix() for p in (ROOT / "llm_lab").rglob("*.py")
                 if "train" not in p.parts and pattern.search(p.read_text())]
    assert not offenders, offenders
    assert caps.Capabilities("classifier", frozenset()).max_context == 512  # the fallback, decided in one place


def test_compare_shows_which_inputs_were_cut(sentiment):
    from llm_lab.compare import runs, tables

    texts = ["Great value.", long_review(40)]
    comparison = runs.run(LOCAL, "classification", ["minilm-sentiment", "minilm"], runs.make_inputs(texts))
    frame = tables.table(comparison)
    notes = frame["minilm-sentiment · input"].tolist()
    assert notes[0] == "" and "only the first 512 tokens are used" in notes[1]
    assert "only the first 512 tokens are used" in tables.to_html(comparison).decode()


def test_trainings_final_evaluation_runs_through_the_inference_layer(tiny_gpt2, monkeypatch):
    """Training's last evaluation of a language model is `inference.score_tokens` over the held-out rows: the mean
    log-likelihood of every scored token (checked against plain torch), so its perplexity means what the
    benchmark's does."""
    import torch

    from llm_lab import paths
    from llm_lab.train import TrainConfig, data_prep, runner
    from tests.test_train import Reporter, fast

    lines = [f"def add_{i}(x): return x + {i}" for i in range(40)]
    data.import_dataset(LOCAL, "code", "d.csv", ("text\n" + "\n".join(lines)).encode())
    calls, real = [], inference.score_tokens
    monkeypatch.setattr(inference, "score_tokens", lambda *a, **k: calls.append(len(a[1])) or real(*a, **k))
    cfg = TrainConfig(task="causal-lm", model=str(tiny_gpt2), dataset="code", name="lm-eval", **fast(epochs=1.0))
    trained = runner.train(LOCAL, cfg, Reporter(), paths.subdir("jobs", "inference-eval"))
    held = data_prep.causal(LOCAL, cfg, trained.tokenizer).eval.rows
    # the fine-tuned model, then its base on the same held-out rows (the paired comparison with the base)
    assert calls == [len(held), len(held)]
    assert trained.evaluation["base"]["n"] == len(held)
    nll, count = 0.0, 0
    trained.model.eval()
    with torch.inference_mode():
        for row in held:
            ids = torch.tensor([row["input_ids"]])
            logits = trained.model(input_ids=ids).logits[0, :-1].float()
            nll += float(torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum"))
            count += ids.shape[1] - 1
    assert trained.metrics["eval_tokens"] == count
    assert trained.metrics["eval_loss"] == pytest.approx(nll / count, rel=1e-5)
    assert trained.metrics["eval_perplexity"] == pytest.approx(np.exp(nll / count), rel=1e-5)
