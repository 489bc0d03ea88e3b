"""Training on CPU with tiny models: each task's loss falls, saved models reload and predict the same,
and every fault gives a clear message with nothing half-written in the registry."""
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from llm_lab.access import LOCAL
from llm_lab import data, jobs, paths, inference, registry
from llm_lab.errors import DataError, LabError, ModelError
from llm_lab.train import TrainConfig, data_prep, export, runner


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one thread is as fast, and immune to a busy machine's oversubscription."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
POS = ["great", "wonderful", "excellent", "lovely", "superb", "fine"]
NEG = ["terrible", "awful", "dreadful", "boring", "poor", "bad"]


class Reporter:
    """Stands in for a JobContext: collects what the callback reports."""

    def __init__(self):
        self.points, self.lines, self.last = [], [], None

    def progress(self, done, total, message="", force=False, **stats):
        self.last = (done, total, stats)

    def metric(self, step, **values):
        self.points.append((step, values))

    def log(self, line):
        self.lines.append(line)

    def series(self, name):
        return [v[name] for _, v in self.points if name in v]


def sentiment_csv(n=120, labels=("neg", "pos"), seed=0) -> bytes:
    rng = random.Random(seed)
    rows = ["text,label"]
    for i in range(n):
        words = POS if i % 2 else NEG
        rows.append(f"{rng.choice(words)} {rng.choice(words)} story number {i},{labels[i % 2]}")
    return "\n".join(rows).encode()


def add_dataset(name, payload, filename="d.csv", **kw):
    return data.import_dataset(LOCAL, name, filename, payload, **kw)


def fast(**kw) -> dict:
    base = dict(epochs=4.0, batch_size=16, learning_rate=2e-2, logging_steps=1, warmup=0.0, seed=0)
    return dict(base, **kw)


def falls(values) -> bool:
    head, tail = np.mean(values[:3]), np.mean(values[-3:])
    return tail < head


@pytest.mark.parametrize("labels", [("neg", "pos"), ("0", "1")], ids=["string-labels", "int-labels"])
def test_classifier_loss_falls_and_reload_predicts_the_same(tiny_bert, labels):
    add_dataset("sent", sentiment_csv(labels=labels))
    cfg = TrainConfig(task="classify", model=str(tiny_bert), dataset="sent", name="clf-" + labels[0], **fast())
    rep = Reporter()
    trained = runner.train(LOCAL, cfg, rep, paths.subdir("jobs", "t1"))
    losses = rep.series("train_loss")
    assert len(losses) == trained.stats["steps"] and falls(losses), losses
    assert rep.series("lr") and rep.series("eval_accuracy") and rep.series("eval_f1")
    assert trained.metrics["eval_accuracy"] >= 0.9
    texts = ["great lovely story", "awful boring story", "fine superb"]
    model = trained.model.eval()
    enc = trained.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        before = torch.softmax(model(**enc).logits, -1).numpy()
    result = export.finish(LOCAL, cfg, trained, "job-x")
    entry = registry.resolve(LOCAL, result["model"])
    assert entry.source == "trained" and entry.parent == str(tiny_bert) and entry.labels == list(labels)
    assert entry.meta["dataset"]["fingerprint"] == data.get(LOCAL, "sent").fingerprint
    assert entry.meta["hyperparameters"]["learning_rate"] == 2e-2 and entry.meta["job_id"] == "job-x"
    loaded = registry.load(LOCAL, result["model"], head="classifier")
    assert loaded.labels == list(labels) and not loaded.head_is_new
    np.testing.assert_allclose(inference.classify(loaded, texts).probs, before, atol=1e-5)
    card = (paths.home() / "models" / result["model"] / "README.md").read_text()
    assert "Reproduce" in card and "--learning-rate 0.02" in card and "eval_accuracy" in card
    # the held-out accuracy with its Wilson interval (as statsmodels computes it) and n, kept with the model
    from statsmodels.stats.proportion import proportion_confint

    acc = trained.evaluation["intervals"]["eval_accuracy"]
    n = len(trained.prepared.eval)
    assert acc["n"] == n and acc["value"] == pytest.approx(trained.metrics["eval_accuracy"])
    low, high = proportion_confint(round(acc["value"] * n), n, method="wilson")
    assert (acc["low"], acc["high"]) == (pytest.approx(low), pytest.approx(high))
    f1 = trained.evaluation["intervals"]["eval_f1"]
    assert f1["value"] == pytest.approx(trained.metrics["eval_f1"])
    # BCa, or where every resample agrees (all right) the Wilson fallback: never a collapsed [1.000, 1.000]
    assert f1["method"] in ("BCa bootstrap", "Wilson interval (every resample equal)") and f1["low"] < f1["high"]
    assert "head is new" in trained.evaluation["note"] and entry.meta["evaluation"] == trained.evaluation
    assert f"n={n}" in card and "Wilson" in card


def test_prompt_completion_masks_the_prompt(tiny_gpt2):
    add_dataset("qa", b"prompt,reference\n" + b"\n".join(
        f"What is {i} plus one?,{i + 1}".encode() for i in range(30)))
    cfg = TrainConfig(task="causal-lm", model=str(tiny_gpt2), dataset="qa", max_length=64)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_gpt2)
    prepared = data_prep.causal(LOCAL, cfg, tok)
    assert prepared.info["format"] == "prompt-completion"
    row = prepared.train[0]
    frame = data.load_frame(LOCAL, "qa", "train")
    n_prompt = len(tok(frame["prompt"][0])["input_ids"])
    completion = tok(" " + frame["reference"][0])["input_ids"] + [tok.eos_token_id]
    assert row["labels"][:n_prompt] == [-100] * n_prompt
    assert row["labels"][n_prompt:] == completion == row["input_ids"][n_prompt:]


def test_causal_lm_full_finetune_loss_falls(tiny_gpt2):
    lines = [f"def add_{i}(x): return x + {i}" for i in range(60)]
    add_dataset("code", ("text\n" + "\n".join(lines)).encode())
    cfg = TrainConfig(task="causal-lm", model=str(tiny_gpt2), dataset="code", name="lm-full", **fast(epochs=2.0))
    rep = Reporter()
    trained = runner.train(LOCAL, cfg, rep, paths.subdir("jobs", "t2"))
    assert falls(rep.series("train_loss"))
    assert math.isclose(trained.metrics["eval_perplexity"], math.exp(trained.metrics["eval_loss"]), rel_tol=1e-6)
    # perplexity's BCa interval over the held-out rows, and the base on the same rows (paired)
    ppl = trained.evaluation["intervals"]["eval_perplexity"]
    assert ppl["value"] == pytest.approx(trained.metrics["eval_perplexity"]) and ppl["n"] == len(trained.prepared.eval)
    assert ppl["low"] < ppl["value"] < ppl["high"] and ppl["method"] == "BCa bootstrap"
    base = trained.evaluation["base"]
    loaded = registry.load(LOCAL, str(tiny_gpt2), head="causal-lm", device="cpu", dtype="float32")
    base_loss = runner.held_out_loss(loaded.model, loaded.tokenizer, trained.prepared.eval.rows)["eval_loss"]
    assert base["value_a"] == pytest.approx(math.exp(base_loss), rel=1e-5)
    assert base["value_b"] == pytest.approx(ppl["value"]) and base["test"] == "paired permutation"
    assert base["model_a"] == str(tiny_gpt2) and base["verdict"]


def test_lora_trains_adapters_and_merges_on_export(tiny_gpt2):
    lines = [f"The value of item {i} is {i * 2}." for i in range(60)]
    add_dataset("vals", ("text\n" + "\n".join(lines)).encode())
    cfg = TrainConfig(task="causal-lm", model=str(tiny_gpt2), dataset="vals", name="lm-lora", lora=True, lora_r=4,
                      **fast(epochs=2.0, learning_rate=2e-2))
    rep = Reporter()
    trained = runner.train(LOCAL, cfg, rep, paths.subdir("jobs", "t3"))
    assert trained.stats["trainable_parameters"] < trained.stats["parameters"] / 4
    assert falls(rep.series("train_loss"))
    ids = trained.tokenizer(["The value of item 7 is"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        before = trained.model.eval()(input_ids=ids).logits
    result = export.finish(LOCAL, cfg, trained, None)
    folder = paths.home() / "models" / result["model"]
    assert (folder / "adapter" / "adapter_config.json").exists()
    from safetensors import safe_open

    with safe_open(folder / "model.safetensors", "pt") as f:
        assert not any("lora" in k for k in f.keys())
    loaded = registry.load(LOCAL, result["model"], head="causal-lm")
    with torch.no_grad():
        after = loaded.model(input_ids=ids).logits
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)
    with safe_open(folder / "adapter" / "adapter_model.safetensors", "pt") as f:  # saved before the merge
        assert any("lora_A" in k for k in f.keys())


def test_adapter_only_classifier_is_kilobytes_and_reloads_over_its_base(tiny_bert):
    """A LoRA classifier saved as adapter + head (how minilm-sentiment ships) predicts what the trained model did."""
    registry.register(LOCAL, registry.ModelEntry("bert-base-tiny", "local", str(tiny_bert), "classifier"))
    add_dataset("sent", sentiment_csv())
    cfg = TrainConfig(task="classify", model="bert-base-tiny", dataset="sent", name="clf-adapter", lora=True,
                      lora_r=4, lora_targets=["query", "value"], adapter_only=True, **fast(learning_rate=5e-2))
    trained = runner.train(LOCAL, cfg, Reporter(), paths.subdir("jobs", "ta"))
    texts = ["great lovely story", "awful boring story", "fine superb"]
    model = trained.model.eval()
    enc = trained.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        before = torch.softmax(model(**enc).logits, -1).numpy()
    result = export.finish(LOCAL, cfg, trained, None)
    folder = Path(result["folder"])
    assert not (folder / "model.safetensors").exists()
    # other tools read adapter_config.json: the base's folder; LLM Lab keeps its registry name in llm_lab.json
    assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_bert.resolve())
    assert json.loads((folder / "llm_lab.json").read_text())["adapter_base"] == "bert-base-tiny"
    loaded = registry.load(LOCAL, "clf-adapter")
    assert loaded.head == "classifier" and not loaded.head_is_new and loaded.labels == ["neg", "pos"]
    np.testing.assert_allclose(inference.classify(loaded, texts).probs, before, atol=1e-5)


def test_a_fine_tune_that_changed_nothing_is_not_registered(tiny_gpt2):
    lines = [f"The value of item {i} is {i * 2}." for i in range(60)]
    add_dataset("vals", ("text\n" + "\n".join(lines)).encode())
    cfg = TrainConfig(task="causal-lm", model=str(tiny_gpt2), dataset="vals", name="lm-twin", lora=True, lora_r=4,
                      **fast(epochs=1.0, learning_rate=1e-12))
    trained = runner.train(LOCAL, cfg, Reporter(), paths.subdir("jobs", "tw"))
    with pytest.raises(ModelError, match="changed nothing"):
        export.finish(LOCAL, cfg, trained, None)
    assert "lm-twin" not in [e.name for e in registry.list_models(LOCAL)]


def test_pretrain_from_scratch_loss_falls_and_generates():
    cfg = TrainConfig(task="pretrain", name="gpt-mini", preset="1M", max_steps=12, batch_size=8, learning_rate=3e-3,
                      warmup=0.0, logging_steps=1, eval_fraction=0.02,
                      arch=dict(n_embd=32, n_layer=1, n_head=2, vocab_size=300, n_positions=64))
    job_id = jobs.submit(LOCAL, "llm_lab.train:run", cfg.as_dict(), "pretrain")
    job = jobs.get(LOCAL, job_id)
    assert job["status"] == "succeeded", job["error"]
    losses = [m["value"] for m in jobs.metrics(LOCAL, job_id) if m["name"] == "train_loss"]
    assert len(losses) == 12 and falls(losses)
    assert math.log(300) - 0.3 < losses[0] < math.log(300) + 0.5  # starts near uniform over the vocabulary
    loaded = registry.load(LOCAL, "gpt-mini")
    assert loaded.head == "causal-lm" and loaded.model.config.n_positions == 64 and len(loaded.tokenizer) == 300
    assert job["result"]["stats"]["steps"] == 12 and job["result"]["metrics"]["eval_loss"] < losses[0]
    assert not (paths.home() / "jobs" / job_id / "checkpoints").exists()  # freed once the model is saved


# ---------------------------------------------------------------- bad input and faults
def test_dataset_without_the_mapped_columns(tiny_bert):
    add_dataset("nolabel", b"text\n" + b"\n".join(f"line {i}".encode() for i in range(20)))
    cfg = TrainConfig(task="classify", model=str(tiny_bert), dataset="nolabel")
    with pytest.raises(DataError, match="no column mapped to label"):
        runner.train(LOCAL, cfg, Reporter(), paths.subdir("jobs", "t4"))


def test_one_class_in_training_rows():
    import pandas as pd

    frame = pd.DataFrame({"text": ["a", "b", "c"], "label": ["x", "x", "x"]})
    with pytest.raises(DataError, match="single class"):
        data_prep.label_names(LOCAL, TrainConfig(dataset="whatever"), frame)


def test_too_few_rows_for_the_split(tiny_bert):
    add_dataset("tiny", b"text,label\nok good,pos\nbad no,neg\nfine yes,pos\nawful,neg",
                recipe=data.Recipe(train=1.0, validation=0.0))
    cfg = TrainConfig(task="classify", model=str(tiny_bert), dataset="tiny")
    with pytest.raises(DataError, match="too few to train and hold"):
        runner.train(LOCAL, cfg, Reporter(), paths.subdir("jobs", "t5"))


def test_base_model_without_the_needed_head(tiny_bert):
    add_dataset("txt", b"text\n" + b"\n".join(f"some words {i}".encode() for i in range(20)))
    job_id = jobs.submit(LOCAL, "llm_lab.train:run", TrainConfig(task="causal-lm", model=str(tiny_bert),
                                                              dataset="txt").as_dict(), "bad head")
    job = jobs.get(LOCAL, job_id)
    assert job["status"] == "failed" and "without a causal language-model head" in job["error"]


def test_out_of_memory_halves_the_batch_then_gives_up(tiny_bert, monkeypatch):
    from transformers import Trainer

    add_dataset("sent", sentiment_csv(40))
    real = Trainer.training_step
    limit = {"batch": 4}

    def step(self, model, inputs, *a, **kw):
        if inputs["input_ids"].shape[0] > limit["batch"]:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, model, inputs, *a, **kw)

    monkeypatch.setattr(Trainer, "training_step", step)
    rep = Reporter()
    cfg = TrainConfig(task="classify", model=str(tiny_bert), dataset="sent", **fast(epochs=1.0))
    trained = runner.train(LOCAL, cfg, rep, paths.subdir("jobs", "t6"))
    assert (trained.stats["batch_size"], trained.stats["grad_accum"]) == (4, 4)  # same effective batch of 16
    assert sum("Out of memory: retrying" in line for line in rep.lines) == 2
    limit["batch"] = 0
    job_id = jobs.submit(LOCAL, "llm_lab.train:run", dict(cfg.as_dict(), name="oom"), "oom")
    job = jobs.get(LOCAL, job_id)
    assert job["status"] == "failed" and "Out of memory even with a batch of 1" in job["error"]
    assert "oom" not in [e.name for e in registry.list_models(LOCAL)]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_bert, monkeypatch):
    from transformers import Trainer

    add_dataset("sent", sentiment_csv())
    real = Trainer.training_step

    def step(self, model, inputs, *a, **kw):
        if self.state.global_step >= 5:
            return torch.tensor(float("nan"))
        return real(self, model, inputs, *a, **kw)

    monkeypatch.setattr(Trainer, "training_step", step)
    cfg = TrainConfig(task="classify", model=str(tiny_bert), dataset="sent", name="nan-model", save_steps=2,
                      **fast(epochs=2.0))
    job_id = jobs.submit(LOCAL, "llm_lab.train:run", cfg.as_dict(), "nan")
    job = jobs.get(LOCAL, job_id)
    assert job["status"] == "failed" and "NaN" in job["error"] and "checkpoint-4" in job["error"]
    kept = runner.checkpoints(paths.home() / "jobs" / job_id / "checkpoints")
    assert [p.name for p in kept][0] == "checkpoint-4"
    assert "nan-model" not in [e.name for e in registry.list_models(LOCAL)]
    assert not (paths.home() / "models" / "nan-model").exists()


def test_disk_full_leaves_nothing_half_written(tiny_bert, monkeypatch):
    from pathlib import Path

    from transformers import PreTrainedModel

    add_dataset("sent", sentiment_csv(40))
    real = PreTrainedModel.save_pretrained
    where = {"fail": "export"}

    def full(self, folder, *a, **kw):
        is_checkpoint = "checkpoint-" in str(folder)
        if (where["fail"] == "checkpoint") != is_checkpoint:
            return real(self, folder, *a, **kw)
        (Path(folder) / "model.safetensors").write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", full)
    for fail in ("export", "checkpoint"):
        where["fail"] = fail
        cfg = TrainConfig(task="classify", model=str(tiny_bert), dataset="sent", name="full-disk", **fast(epochs=1.0))
        job = jobs.get(LOCAL, jobs.submit(LOCAL, "llm_lab.train:run", cfg.as_dict(), "disk"))
        assert job["status"] == "failed" and "disk is full" in job["error"], (fail, job["error"])
        assert "full-disk" not in [e.name for e in registry.list_models(LOCAL)]
        assert [p.name for p in (paths.home() / "models").iterdir()] == []
        if fail == "checkpoint":  # the half-written checkpoint is not taken for a good one
            assert runner.checkpoints(paths.home() / "jobs" / job["id"] / "checkpoints") == []


def test_name_taken_and_bad_settings_are_refused_before_queueing(tiny_bert):
    from llm_lab import train

    add_dataset("sent", sentiment_csv(20))
    registry.register(LOCAL, registry.ModelEntry("taken", "local", str(tiny_bert), "classifier"))
    with pytest.raises(ModelError, match="exists already"):
        train.submit(LOCAL, TrainConfig(task="classify", model=str(tiny_bert), dataset="sent", name="taken"))
    with pytest.raises(LabError, match="learning rate must be positive"):
        train.submit(LOCAL, TrainConfig(task="classify", model=str(tiny_bert), dataset="sent", learning_rate=0))
    with pytest.raises(LabError, match="n_embd"):
        train.submit(LOCAL, TrainConfig(task="pretrain", arch={"n_embd": 30, "n_head": 4}))
    assert jobs.list_jobs(LOCAL) == []


def test_job_params_round_trip_and_old_params_still_read(monkeypatch):
    from llm_lab.train import history, resources

    cfg = TrainConfig(task="causal-lm", model="tiny-gpt", dataset="docs", lora=True, lora_targets=["c_attn"],
                      batch_size=4, max_length=64, arch={"n_layer": 2})
    assert TrainConfig.from_params(cfg.to_params()) == cfg
    assert TrainConfig.from_params(__import__("json").loads(__import__("json").dumps(cfg.to_params()))) == cfg
    # params stored by another version: an unknown setting is dropped, a missing one takes its default
    old = TrainConfig.from_params({"task": "pretrain", "preset": "1M", "retired_setting": 1})
    assert old == TrainConfig(task="pretrain", preset="1M")
    with pytest.raises(LabError, match="Unknown training setting"):
        TrainConfig.from_dict({"retired_setting": 1})  # what the worker runs stays strict
    job = {"id": "j1", "status": "succeeded", "params": dict(cfg.to_params(), retired_setting=1), "title": "t",
           "created_at": 1700000000.0, "result": {"model": "lm-1", "metrics": {"eval_loss": 1.23456},
                                                   "stats": {"device": "cpu", "samples_per_s": 8.0}}}
    pretrain = {"id": "j2", "status": "failed", "params": {"task": "pretrain", "preset": "1M"}, "title": "p",
                "created_at": 1700000000.0, "result": None}
    monkeypatch.setattr(jobs, "list_jobs", lambda *a, **k: [job, pretrain])
    row, pre = history.runs(LOCAL)
    assert (row["task"], row["name"], row["base"], row["dataset"], row["batch"], row["loss"]) == \
        ("causal-lm", "lm-1", "tiny-gpt", "docs", 4, 1.2346)
    assert (pre["base"], pre["dataset"], pre["epochs"]) == ("GPT-2 1M", "pydoc", 3.0)
    assert resources._measured_rate(LOCAL, cfg, "cpu") == 8.0
    assert resources._measured_rate(LOCAL, TrainConfig.from_params(dict(cfg.to_params(), batch_size=8)), "cpu") is None


def test_checkpoint_and_log_cadence():
    sched = runner.schedule(TrainConfig(epochs=3, logging_steps=4, save_steps=5), n_train=100, batch_size=8,
                            grad_accum=1)
    assert sched["steps_per_epoch"] == 13 and sched["total_steps"] == 39
    assert sched["save_steps"] == 8  # rounded up to a logged (NaN-checked) step


def test_direct_entry_point_builds_distributed_arguments():
    """`accelerate launch`/torchrun run llm_lab.train's main; under a 2-process environment its
    TrainingArguments carry the world size and DDP settings (the multi-GPU path constructs)."""
    from llm_lab.train.__main__ import build_parser
    from llm_lab.train.cli import config_from_args

    args = build_parser().parse_args(["classify", "--model", "minilm", "--data", "reviews", "--epochs", "1",
                                      "--batch-size", "32", "--precision", "bf16"])
    cfg = config_from_args(args, args.task)
    assert (cfg.task, cfg.dataset, cfg.batch_size, cfg.precision) == ("classify", "reviews", 32, "bf16")
    sched = runner.schedule(cfg, n_train=1000, batch_size=32, grad_accum=1, world_size=2)
    assert sched["steps_per_epoch"] == 16  # 1000 rows / (32 × 2 processes)
    targs = runner.training_args(cfg, paths.subdir("jobs", "ddp"), 1000, True)
    assert targs.ddp_find_unused_parameters is False and targs.per_device_train_batch_size == 32
    assert not targs.bf16  # no GPU here: mixed precision falls back to fp32 instead of failing


@pytest.mark.slow
def test_torchrun_two_processes_train_one_model(tmp_path):
    """The multi-process path for real: torchrun starts 2 CPU processes (gloo DDP) on llm_lab.train."""
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, LLM_LAB_HOME=str(tmp_path / "home"), OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "llm_lab.train", "pretrain", "--preset", "1M", "--max-steps", "3", "--batch-size", "4",
         "--arch", "n_embd=32,n_layer=1,n_head=2,vocab_size=300,n_positions=64", "--name", "ddp-gpt"],
        cwd=Path(__file__).resolve().parent.parent, env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "× 2 process(es)" in out.stderr
    result = json.loads(out.stdout[out.stdout.index("{"):])
    assert result["registered"] and result["stats"]["steps"] == 3


def test_classification_metrics_match_the_projects_metric_modules():
    from llm_lab import metrics
    from llm_lab.train.task_metrics import accuracy_f1

    pred, ref = [0, 1, 2, 2, 1, 0, 2], [0, 1, 1, 2, 1, 2, 2]
    ours = accuracy_f1(pred, ref)
    assert ours["accuracy"] == pytest.approx(metrics.compute("accuracy", pred, ref)["accuracy"]) == 5 / 7
    assert ours["f1"] == pytest.approx(metrics.compute("f1", pred, ref, average="macro")["f1"])


# ---------------------------------------------------------------- a save killed midway
def saved_model_inputs(path):
    """What export.finish needs, without training: the tiny classifier as the trained model."""
    import types

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model, tokenizer = AutoModelForSequenceClassification.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    with torch.no_grad():
        model.classifier.bias += 1.0  # "trained": its outputs differ from its parent's (export.check_changed)
    rows = [{"input_ids": tokenizer("a lovely story")["input_ids"]}]
    trained = types.SimpleNamespace(
        model=model, tokenizer=tokenizer, metrics={"eval_accuracy": 0.5}, stats={"steps": 1},
        prepared=types.SimpleNamespace(info={"dataset": "d", "fingerprint": "f", "train_rows": 4},
                                       labels=["negative", "positive"], train=types.SimpleNamespace(rows=rows)))
    return TrainConfig(task="classify", model=str(path), dataset="d", name="saved"), trained


def _killed_save(cfg, trained, when: str) -> int:
    """export.finish in a forked copy of this process (torch already loaded) that SIGKILLs itself when the
    model's folder moves into place (`at-move`) or right after (`after-move`); returns the signal."""
    import os

    from llm_lab import store
    from tests.conftest import kill_when_moved_into_place

    pid = os.fork()
    if pid == 0:  # the child: never returns to pytest
        try:
            store._local.conns = {}  # its own connection, not the parent's
            kill_when_moved_into_place("saved", when)
            export.finish(LOCAL, cfg, trained, None)
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.WTERMSIG(status) if os.WIFSIGNALED(status) else -os.WEXITSTATUS(status)


@pytest.mark.parametrize("when", ["at-move", "after-move"])
def test_a_model_save_killed_midway_leaves_nothing_the_next_save_does_not_reclaim(tiny_bert, when, monkeypatch):
    import os
    import signal

    from llm_lab import store

    cfg, trained = saved_model_inputs(tiny_bert)
    assert _killed_save(cfg, trained, when) == signal.SIGKILL
    assert "saved" not in [e.name for e in registry.list_models(LOCAL)]
    models = paths.home() / "models"
    left = [p.name for p in models.iterdir()]
    if when == "after-move":  # moved, not registered: marked as a save's own leftover
        assert left == ["saved"] and (models / "saved" / export.SAVING).exists()
    else:
        assert len(left) == 1 and left[0].startswith(".saved.partial-"), left

    monkeypatch.setattr(store, "PARTIAL_GRACE_S", 0.0)  # the killed save's staging folder is old enough now
    result = export.finish(LOCAL, cfg, trained, None)
    assert result["registered"] and result["folder"] == str(models / "saved")  # reclaimed, not saved~2
    assert sorted(p.name for p in models.iterdir()) == ["saved"]  # no staging folder left, no saved~2
    assert not (models / "saved" / export.SAVING).exists()
    entry = registry.resolve(LOCAL, "saved")
    assert entry.location == str(models / "saved") and entry.labels == ["negative", "positive"]
    assert registry.load(LOCAL, "saved", head="classifier").labels == ["negative", "positive"]
    assert os.environ["LLM_LAB_HOME"] == str(paths.home())


def test_an_unregistered_models_folder_is_never_reused(tiny_bert):
    """Only a save's own leftover (marked, named by no row) is reclaimed: a model removed from the registry
    keeps its folder, and the next model of that name goes beside it."""
    cfg, trained = saved_model_inputs(tiny_bert)
    first = export.finish(LOCAL, cfg, trained, None)
    registry.unregister(LOCAL, "saved")
    again = export.finish(LOCAL, cfg, trained, None)
    assert again["folder"] == first["folder"] + "~2" and Path(first["folder"], "config.json").exists()
