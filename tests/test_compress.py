"""Compressed variants: each method's outputs against an independent computation, the registry opening them,
the refusals, and the same recipe giving the same weights."""
import copy
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from llm_lab import capabilities, cli, data, jobs, inference, registry
from llm_lab.access import LOCAL
from llm_lab.bench import fingerprint
from llm_lab.compress import heads, onnx_export
from llm_lab.compress.recipes import make_variant, methods
from llm_lab.errors import ModelError

TEXTS = ["I loved it.", "Terrible product, it broke after one day and support never answered.", "meh",
         "The battery lasts two days; the screen is sharp but the speaker is weak.", "Would buy again!"]
INT8_TOLERANCE = 0.02   # |logit difference| allowed to int8 on the tiny BERT (its logits span about ±0.3)


@pytest.fixture
def tb(tiny_bert):
    """The tiny BERT classifier registered as `tb`."""
    registry.register(LOCAL, registry.ModelEntry("tb", "local", str(tiny_bert), "classifier"))
    return "tb"


@pytest.fixture
def tg(tiny_gpt2):
    registry.register(LOCAL, registry.ModelEntry("tg", "local", str(tiny_gpt2), "causal-lm"))
    return "tg"


def torch_logits(name: str, texts=TEXTS) -> np.ndarray:
    """The parent's logits from its own PyTorch forward (not through the compress package)."""
    loaded = registry.load(LOCAL, name, device="cpu", dtype="float32")
    enc = loaded.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        return loaded.model(**enc).logits.numpy()


def onnx_logits(folder: str, tokenizer, texts=TEXTS) -> np.ndarray:
    """ONNX Runtime run directly on the variant's graph."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(Path(folder) / "model.onnx"), providers=["CPUExecutionProvider"])
    enc = tokenizer(texts, padding=True, return_tensors="np")
    feed = {i.name: enc[i.name].astype(np.int64) for i in session.get_inputs()}
    return session.run(["logits"], feed)[0]


def weights_hash(folder: str) -> str:
    """sha256 over the tensors of a variant folder (safetensors tensors, or the ONNX graph's initializers)."""
    h = hashlib.sha256()
    folder = Path(folder)
    if (folder / "model.onnx").exists():
        import onnx
        from onnx import numpy_helper

        for t in sorted(onnx.load(str(folder / "model.onnx")).graph.initializer, key=lambda t: t.name):
            h.update(t.name.encode() + numpy_helper.to_array(t).tobytes())
        return h.hexdigest()
    from safetensors.torch import load_file

    state = load_file(str(folder / "model.safetensors"))
    for key in sorted(state):
        h.update(key.encode() + state[key].numpy().tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------- ONNX and int8
def test_onnx_export_matches_torch_and_the_registry_opens_it_without_gradients(tb, tmp_path):
    entry = make_variant(LOCAL, tb, "onnx", name="tb-onnx")
    assert entry.parent == "tb" and entry.source == "trained"
    assert entry.meta["recipe"] == {"method": "onnx", "params": {"dataset": None}}
    assert entry.meta["checks"]["max_abs_diff"] <= 1e-4 and entry.meta["checks"]["argmax_agreement"] == 1.0
    parent = torch_logits(tb)
    loaded = registry.load(LOCAL, "tb-onnx")
    direct = onnx_logits(entry.location, loaded.tokenizer)
    assert np.abs(direct - parent).max() <= 1e-4
    # inference.classify through the registry gives ONNX Runtime's outputs (rows padded alike, one batch)
    probs = inference.classify(loaded, TEXTS, batch_size=len(TEXTS)).probs
    assert np.abs(probs - torch.softmax(torch.from_numpy(direct), -1).numpy()).max() <= 1e-6
    assert loaded.device == "cpu" and loaded.dtype == "float32" and loaded.labels == ["negative", "positive"]
    # the card counts the graph's weights: the parent's, less what the exporter folded into constants
    assert loaded.info()["parameters"] == pytest.approx(registry.load(LOCAL, tb).info()["parameters"], rel=0.01)
    # a classifier's graph opens as an encoder too: the parent's mean-pooled embeddings
    embedded = inference.embed(registry.load(LOCAL, "tb-onnx", head="encoder"), TEXTS).vectors
    assert np.abs(embedded - inference.embed(registry.load(LOCAL, tb, head="encoder"), TEXTS).vectors).max() <= 1e-5
    # the graph is the weights: benchmark results (cached by fingerprint) and loaded models (cached by weights
    # stamp) of two exports with other numbers are never mixed up
    other = tmp_path / "other"
    shutil.copytree(entry.location, other)
    with open(other / "model.onnx", "ab") as handle:
        handle.write(b"\0")
    assert fingerprint.folder_fingerprint(str(other)) != fingerprint.folder_fingerprint(entry.location)
    assert "model.onnx" in {name for name, *_ in registry.weights_stamp(entry.location)}
    # no gradients, no attention weights: Attributions and Attention refuse it with their usual message
    loaded = registry.load(LOCAL, "tb-onnx", attention=True)
    assert not loaded.capabilities.has(capabilities.GRADIENTS)
    assert not loaded.capabilities.has(capabilities.ATTENTION)
    with pytest.raises(ModelError, match="does not apply to tb-onnx opened as classifier: it needs attention"):
        registry.load_for(LOCAL, capabilities.needs("Attention", capabilities.ATTENTION), "tb-onnx", attention=True)
    with pytest.raises(ModelError, match="ONNX export"):
        make_variant(LOCAL, "tb-onnx", "fp16")


def test_an_export_that_does_not_match_is_not_registered(tb, monkeypatch, lab_home):
    monkeypatch.setattr(onnx_export, "FP32_TOLERANCE", -1.0)
    with pytest.raises(ModelError, match="does not match PyTorch"):
        make_variant(LOCAL, tb, "onnx", name="tb-onnx")
    assert "tb-onnx" not in {e.name for e in registry.list_models(LOCAL)}
    assert not [p for p in (lab_home / "models").iterdir() if p.name.startswith((".tb-onnx", "tb-onnx"))]


def test_int8_is_close_to_float_and_smaller(tb, tiny_bert):
    entry = make_variant(LOCAL, tb, "int8")
    assert entry.name == "tb-int8" and entry.meta["recipe"]["params"]["per_channel"] is True
    loaded = registry.load(LOCAL, entry.name)
    assert loaded.dtype == "int8"
    parent = torch_logits(tb)
    ours = onnx_logits(entry.location, loaded.tokenizer)
    assert np.abs(ours - parent).max() <= INT8_TOLERANCE
    margin = np.sort(parent, 1)[:, -1] - np.sort(parent, 1)[:, -2]
    clear = margin > 2 * INT8_TOLERANCE  # where the float model is not on the fence, int8 predicts the same
    assert (ours.argmax(1) == parent.argmax(1))[clear].all()
    # the tiny model's quantized matrices: 4 bytes a weight become 1 (embeddings stay float)
    assert entry.meta["bytes"] < 0.5 * entry.meta["parent_bytes"]
    assert entry.meta["parent_bytes"] == (tiny_bert / "model.safetensors").stat().st_size


def test_a_causal_lm_asked_for_int8_hears_what_works(tg):
    for method in ("int8", "onnx"):
        with pytest.raises(ModelError) as info:
            make_variant(LOCAL, tg, method)
        message = str(info.value)
        assert "tg is a causal LM" in message
        assert all(m in message for m in ("fp16", "bf16", "magnitude", "heads", "distillation"))
    assert [r.method for r in methods("causal-lm")] == ["fp16", "bf16", "magnitude", "heads"]


# ---------------------------------------------------------------- fp16 / bf16
def test_fp16_variant_opens_in_float16_and_the_cli_says_what_it_made(tb, capsys):
    assert cli.main(["compress", "make", tb, "--method", "fp16", "--name", "tb16"]) == 0
    out = capsys.readouterr().out
    assert "made tb16: fp16 variant of tb" in out and "weights on disk:" in out and "max_abs_diff" in out
    loaded = registry.load(LOCAL, "tb16", device="cpu")
    assert loaded.dtype == "float16" and next(loaded.model.parameters()).dtype == torch.float16
    parent = registry.load(LOCAL, tb, device="cpu", dtype="float32").model.state_dict()
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, parent[key].to(torch.float16)), key
    assert registry.load(LOCAL, "tb16", device="cpu", dtype="float32").dtype == "float32"  # asked for: honoured


# ---------------------------------------------------------------- magnitude pruning
def test_magnitude_pruning_reaches_the_sparsity_in_the_blocks_only(tb):
    entry = make_variant(LOCAL, tb, "magnitude", {"sparsity": 0.3})
    from safetensors.torch import load_file

    saved = load_file(str(Path(entry.location) / "model.safetensors"))
    parent = registry.load(LOCAL, tb, device="cpu", dtype="float32").model.state_dict()
    block = [k for k in saved if k.startswith("bert.encoder.layer.") and k.endswith(".weight") and saved[k].dim() == 2]
    zeros = sum(int((saved[k] == 0).sum()) for k in block)
    total = sum(saved[k].numel() for k in block)
    assert abs(zeros / total - 0.3) <= 0.01
    assert abs(entry.meta["checks"]["sparsity"] - zeros / total) < 1e-6
    # the smallest survive nowhere: every zeroed weight is at most the smallest kept one (in magnitude)
    kept = torch.cat([parent[k][saved[k] != 0].abs() for k in block])
    cut = torch.cat([parent[k][saved[k] == 0].abs() for k in block])
    assert cut.max() <= kept.min()
    for key in saved:
        if key not in block:
            assert torch.equal(saved[key], parent[key]), key
    assert any("do not shrink" in n for n in entry.meta["notes"])


# ---------------------------------------------------------------- attention heads
def test_head_importance_is_the_loss_increase_of_a_silenced_head(tb):
    loaded = registry.load(LOCAL, tb, device="cpu", dtype="float32")
    labels = ["positive", "negative", "negative", "positive", "positive"]
    importance = heads.head_importance(loaded, TEXTS, labels)
    enc = loaded.tokenizer(TEXTS, padding=True, truncation=True, max_length=128, return_tensors="pt")
    target = torch.tensor([1, 0, 0, 1, 1])

    def loss(model):
        with torch.inference_mode():
            return float(torch.nn.functional.cross_entropy(model(**enc).logits, target))

    size = loaded.model.config.hidden_size // loaded.model.config.num_attention_heads
    for layer in range(2):
        for h in range(2):
            # independent: zero the head's value rows, so its attention output is zero, without any hook
            model = copy.deepcopy(loaded.model)
            value = model.bert.encoder.layer[layer].attention.self.value
            with torch.no_grad():
                value.weight[h * size:(h + 1) * size] = 0
                value.bias[h * size:(h + 1) * size] = 0
            assert importance[layer][h] == pytest.approx(loss(model) - loss(loaded.model), abs=1e-5)


@pytest.mark.parametrize("fixture", ["tiny_bert", "tiny_gpt2"])
def test_a_pruned_head_is_really_gone(fixture, request):
    folder = request.getfixturevalue(fixture)
    head = "classifier" if fixture == "tiny_bert" else "causal-lm"
    registry.register(LOCAL, registry.ModelEntry("m", "local", str(folder), head))
    loaded = registry.load(LOCAL, "m", device="cpu", dtype="float32")
    full = loaded.model
    pruned = copy.deepcopy(full)
    heads.prune(pruned, {0: [1]})
    hidden, n_heads = full.config.hidden_size, full.config.num_attention_heads
    size = hidden // n_heads
    per_head = 3 * (hidden * size + size) + size * hidden  # q, k, v rows (and biases); the output's columns
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert count(full) - count(pruned) == per_head
    enc = loaded.tokenizer(TEXTS, padding=True, return_tensors="pt")
    last = lambda model: model(**enc, output_hidden_states=True).hidden_states[-1][enc["attention_mask"] == 1]
    with torch.inference_mode(), heads.masked(heads.layers(full)[0], 1):
        expected = last(full)
    with torch.inference_mode():
        assert (last(pruned) - expected).abs().max() <= 1e-5
        assert (last(pruned) - last(full)).abs().max() > 1e-2  # the head did matter


def test_a_head_pruned_variant_is_rebuilt_at_load(tb):
    rows = "".join(f"{t.replace(',', '')},{lab}\n" for t, lab in zip(TEXTS * 2, ["positive", "negative"] * 5))
    data.import_dataset(LOCAL, "pn", "pn.csv", ("text,label\n" + rows).encode())
    entry = make_variant(LOCAL, tb, "heads", {"heads": 1, "dataset": "pn", "samples": 8})
    assert entry.name == "tb-heads1"
    removed = entry.meta["pruned_heads"]
    assert sum(map(len, removed.values())) == 1 and entry.meta["importance_data"]["target"] == "gold labels"
    importance = entry.meta["importance"]
    (layer, [h]), = removed.items()
    assert importance[int(layer)][h] == min(min(row) for row in importance)  # the least important one went
    loaded = registry.load(LOCAL, entry.name, device="cpu", dtype="float32")
    assert not loaded.head_is_new and loaded.labels == ["negative", "positive"]
    parent = registry.load(LOCAL, tb, device="cpu", dtype="float32")
    expected = copy.deepcopy(parent.model)
    heads.prune(expected, {int(layer): [h]})
    assert loaded.info()["parameters"] == sum(p.numel() for p in expected.parameters())
    enc = loaded.tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        assert (loaded.model(**enc).logits - expected(**enc).logits).abs().max() <= 1e-6
        # the benchmark's and inference.classify's packed [CLS]-only forward (cls_forward) takes layers of fewer heads too
        probs = torch.softmax(expected(**enc).logits, -1).numpy()
    assert np.abs(inference.classify(loaded, TEXTS, batch_size=len(TEXTS)).probs - probs).max() <= 1e-5
    assert not loaded.capabilities.has(capabilities.ATTENTION)  # layers with different head counts


def test_a_head_pruned_causal_lm_still_generates(tg):
    from llm_lab.generation import GenerationSettings
    from llm_lab.inference import generate

    entry = make_variant(LOCAL, tg, "heads", {"heads": 1, "samples": 8})
    loaded = registry.load(LOCAL, entry.name, device="cpu", dtype="float32")
    assert loaded.capabilities.has(capabilities.CAUSAL_LM) and not loaded.head_is_new
    rows = generate(loaded, ["def add(a, b):"], GenerationSettings(max_new_tokens=5, do_sample=False))
    assert rows[0].text is not None


def test_every_layer_keeps_a_head(tb):
    with pytest.raises(ModelError, match="at most 2 can go"):
        make_variant(LOCAL, tb, "heads", {"heads": 3, "samples": 4})


# ---------------------------------------------------------------- rebuilding and the job
def test_the_same_recipe_gives_the_same_weights(tb):
    made = {}
    for method, params in [("magnitude", {"sparsity": 0.4}), ("heads", {"heads": 1, "samples": 8}), ("int8", {})]:
        first = made[method] = make_variant(LOCAL, tb, method, params)
        again = make_variant(LOCAL, tb, method, params)
        assert again.name == first.name + "-2"
        assert weights_hash(first.location) == weights_hash(again.location), method
        assert first.meta["recipe"] == again.meta["recipe"]
        assert first.meta["parent_fingerprint"] == again.meta["parent_fingerprint"]
        assert weights_hash(first.location) != weights_hash(registry.resolve(LOCAL, tb).location)
    # the default data (demo-reviews) has a label tb does not know: importance against tb's own predictions
    assert made["heads"].meta["importance_data"] == {"dataset": "demo-reviews", "rows": 8,
                                                      "target": "the parent's predictions"}
    assert "'neutral' is not one of tb's labels" in made["heads"].meta["notes"][0]


def test_the_job_makes_the_variant_as_who_submitted_it(tb):
    from llm_lab.compress import jobs as compress_jobs

    job_id = compress_jobs.submit(LOCAL, tb, "bf16", name="tb-bf16")
    job = jobs.get(LOCAL, job_id)
    assert job["status"] == "succeeded", job["error"]
    assert job["result"]["model"] == "tb-bf16" and job["fn"] == "llm_lab.compress.jobs:make"
    assert jobs.what(job["fn"]) == "compress"
    entry = registry.resolve(LOCAL, "tb-bf16")
    assert entry.parent == "tb" and entry.meta["recipe"]["method"] == "bf16"
    with pytest.raises(ModelError, match="has no parameter sparsity"):
        compress_jobs.submit(LOCAL, tb, "bf16", {"sparsity": 0.5})


# ---------------------------------------------------------------- refusals that say what to do
@pytest.mark.parametrize("name", ["/../outside/evil", "../outside/evil", "a/b", ".hidden", ""])
def test_a_variant_name_that_is_not_a_folder_name_is_refused_before_anything_is_written(tb, lab_home, name):
    """The name becomes the staging folder's and the model folder's name: "/../outside/evil" once made the recipe
    write its files in LLM_LAB_HOME/outside, next to the workspace's models, before the registry refused it."""
    from llm_lab.compress import jobs as compress_jobs

    (lab_home / "outside").mkdir(parents=True)
    with pytest.raises(ModelError, match="use letters, digits"):
        make_variant(LOCAL, tb, "fp16", name=name or " ")
    with pytest.raises(ModelError, match="use letters, digits"):  # the page's job: refused before it is queued
        compress_jobs.submit(LOCAL, tb, "fp16", name=name or " ")
    assert list((lab_home / "outside").iterdir()) == []
    assert not (lab_home / "models").exists() or list((lab_home / "models").iterdir()) == []
    assert jobs.list_jobs(LOCAL) == []
    assert [e.name for e in registry.list_models(LOCAL) if e.source == "trained"] == []


def test_an_endpoint_parent_is_refused_with_what_to_do(tb):
    from llm_lab import endpoints
    from llm_lab.compress import jobs as compress_jobs

    endpoints.add(LOCAL, "company-llm", "http://127.0.0.1:9/v1", "m")
    for make in (lambda: make_variant(LOCAL, "company-llm", "fp16"),
                 lambda: compress_jobs.submit(LOCAL, "company-llm", "fp16")):
        with pytest.raises(ModelError, match="company-llm is an OpenAI-compatible endpoint: its weights are on "
                                             "another server.*Compress a model whose weights LLM Lab loads"):
            make()
    assert jobs.list_jobs(LOCAL) == []


def test_bad_parameters_are_refused_with_what_to_give(tb, monkeypatch):
    cases = [("magnitude", {"sparsity": 1.5}, "sparsity must be a number above 0 and below 1 (share of the block "
                                              "weights set to zero); got 1.5."),
             ("magnitude", {"sparsity": 0}, "sparsity must be a number above 0 and below 1"),
             ("heads", {"samples": "many"}, "samples must be a whole number at least 4 and at most 2048 (how many "
                                            "texts measure importance); got 'many'."),
             ("heads", {"head_fraction": -0.5}, "head_fraction must be a number above 0 and below 1")]
    for method, params, message in cases:
        with pytest.raises(ModelError) as info:
            make_variant(LOCAL, tb, method, params)
        assert str(info.value).startswith(message), str(info.value)
    # more heads than the model can lose (2 layers of 2 heads, one kept in each): refused before importance is
    # measured (minutes on a real model), saying how many may go
    monkeypatch.setattr(heads, "head_importance", lambda *a, **k: pytest.fail("importance measured"))
    with pytest.raises(ModelError, match=r"Cannot remove 100 of 4 heads: every layer keeps at least one, so at most "
                                         r"2 can go\. Ask for heads 2 or fewer \(or a head_fraction of at most 0\.5\)"):
        make_variant(LOCAL, tb, "heads", {"heads": 100})
    with pytest.raises(ModelError, match="at most 2 can go"):
        make_variant(LOCAL, tb, "heads", {"head_fraction": 0.9})
    assert [e.name for e in registry.list_models(LOCAL) if e.source == "trained"] == []


def test_an_onnx_export_that_fails_says_so_and_what_to_do_and_leaves_nothing(tb, monkeypatch, lab_home):
    def broken(*args, **kwargs):
        raise RuntimeError("Unsupported operator aten::frobnicate\n<a long exporter trace>")

    monkeypatch.setattr(torch.onnx, "export", broken)
    for method in ("onnx", "int8"):
        with pytest.raises(ModelError) as info:
            make_variant(LOCAL, tb, method)
        assert str(info.value) == (
            "tb could not be exported to ONNX (RuntimeError: Unsupported operator aten::frobnicate), so no variant "
            "was made. The exporter does not handle every architecture: make an fp16, bf16, magnitude or heads "
            "variant instead (python -m llm_lab compress methods lists them).")
    assert [e.name for e in registry.list_models(LOCAL) if e.source == "trained"] == []
    assert list((lab_home / "models").iterdir()) == []  # the staging folders went with the failure


def test_an_onnx_graph_with_external_data_counts_its_weights_file(tb, monkeypatch, tmp_path):
    """A graph over 2 GB keeps its weights in model.onnx.data beside it: that file is the weights for the size,
    the benchmark cache's fingerprint and the registry's cache key (else two large exports of the same
    architecture had one fingerprint, and a result of one was served for the other)."""
    monkeypatch.setattr(onnx_export, "EXTERNAL_DATA_BYTES", 0)   # the tiny model's weights go to the data file
    entry = make_variant(LOCAL, tb, "onnx", name="tb-onnx-x")
    folder = Path(entry.location)
    data_file = folder / "model.onnx.data"
    assert data_file.stat().st_size > (folder / "model.onnx").stat().st_size
    assert entry.meta["bytes"] == data_file.stat().st_size + (folder / "model.onnx").stat().st_size
    assert "model.onnx.data" in {name for name, *_ in registry.weights_stamp(entry.location)}
    assert data_file in fingerprint.model_files(folder)
    other = tmp_path / "other"
    shutil.copytree(folder, other)
    raw = bytearray(data_file.read_bytes())
    raw[-1] ^= 0xFF
    (other / "model.onnx.data").write_bytes(bytes(raw))
    assert fingerprint.folder_fingerprint(str(other)) != fingerprint.folder_fingerprint(str(folder))
    loaded = registry.load(LOCAL, "tb-onnx-x")   # ONNX Runtime reads the data file beside the graph
    probs = inference.classify(loaded, TEXTS, batch_size=len(TEXTS)).probs
    assert np.abs(probs - torch.softmax(torch.from_numpy(torch_logits(tb)), -1).numpy()).max() <= 1e-5


# ---------------------------------------------------------------- a build killed midway
def _killed_make(parent: str, when: str) -> int:
    """make_variant in a forked copy of this process that SIGKILLs itself when the variant's folder moves into
    place (`at-move`) or right after (`after-move`, before the registry row commits); returns the signal."""
    import os
    import signal
    import time

    from llm_lab import store
    from tests.conftest import kill_when_moved_into_place

    pid = os.fork()
    if pid == 0:  # the child: never returns to pytest
        try:
            torch.set_num_threads(1)  # the parent's OpenMP pool does not survive a fork: run the recipe on one thread
            store._local.conns = {}
            kill_when_moved_into_place("tb-bf16", when)
            make_variant(LOCAL, parent, "bf16")
        finally:
            os._exit(1)
    deadline = time.monotonic() + 120
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:   # a child stuck after the fork fails the test instead of hanging it
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked build did not finish within 120 s")
        time.sleep(0.05)
    status = done[1]
    return os.WTERMSIG(status) if os.WIFSIGNALED(status) else -os.WEXITSTATUS(status)


@pytest.mark.parametrize("when", ["at-move", "after-move"])
def test_a_variant_build_killed_midway_registers_nothing_and_the_next_build_reclaims_it(tb, when, monkeypatch,
                                                                                       lab_home):
    import signal

    from llm_lab import store
    from llm_lab.train import export

    assert _killed_make(tb, when) == signal.SIGKILL
    assert [e.name for e in registry.list_models(LOCAL) if e.source == "trained"] == []
    models = lab_home / "models"
    left = [p.name for p in models.iterdir()]
    if when == "after-move":  # moved, not registered: marked as a save's own leftover
        assert left == ["tb-bf16"] and (models / "tb-bf16" / export.SAVING).exists()
    else:
        assert len(left) == 1 and left[0].startswith(".tb-bf16.partial-"), left
    monkeypatch.setattr(store, "PARTIAL_GRACE_S", 0.0)   # the killed build's staging folder is old enough now
    entry = make_variant(LOCAL, tb, "bf16")
    assert entry.name == "tb-bf16" and entry.location == str(models / "tb-bf16")   # reclaimed, not tb-bf16~2
    assert sorted(p.name for p in models.iterdir()) == ["tb-bf16"]
    assert not (models / "tb-bf16" / export.SAVING).exists()
    assert registry.load(LOCAL, "tb-bf16", device="cpu").dtype == "bfloat16"


def test_an_int8_result_is_cached_per_batch_size_and_a_float_one_is_not(tb):
    """Dynamic int8 quantizes activations per run: a row's outputs depend on the rows batched with it, so a
    benchmark result at one batch size is not served for another (a float model's is)."""
    from llm_lab.bench import runner
    from llm_lab.compress import evaluate

    entry = make_variant(LOCAL, tb, "int8")
    rows = "".join(f"{t.replace(',', '')},{lab}\n" for t, lab in zip(TEXTS * 2, ["positive", "negative"] * 5))
    data.import_dataset(LOCAL, "pn", "pn.csv", ("text,label\n" + rows).encode())
    suite = evaluate.build_suite(LOCAL, tb, "pn", split="all")
    spec = suite.tasks[0]
    first = runner.run_task(LOCAL, suite, spec, entry.name, batch_size=32)
    assert runner.run_task(LOCAL, suite, spec, entry.name, batch_size=32).cached
    other = runner.run_task(LOCAL, suite, spec, entry.name, batch_size=2)
    assert not other.cached and other.key != first.key
    assert (first.repro.settings["batch_size"], other.repro.settings["batch_size"]) == (32, 2)
    float_first = runner.run_task(LOCAL, suite, spec, tb, batch_size=32)
    assert runner.run_task(LOCAL, suite, spec, tb, batch_size=2).cached
    assert "batch_size" not in float_first.repro.settings
