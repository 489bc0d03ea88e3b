"""Knowledge distillation (llm_lab/train/distill.py): the student starts as the chosen teacher layers, its loss is
the one written down (checked against an independent computation), and a distillation runs as a training job that
registers a smaller student with its teacher as the parent."""
import argparse
import json
import math

import pytest
import torch

from llm_lab import jobs, registry, train
from llm_lab.access import LOCAL
from llm_lab.errors import DataError, LabError, ModelError
from llm_lab.train import TrainConfig, distill
from tests.conftest import app_test, no_exceptions
from tests.test_train import add_dataset, one_thread, sentiment_csv  # noqa: F401 - one_thread: autouse fixture


@pytest.fixture(scope="module")
def bert4(tmp_path_factory):
    """A 4-layer tiny BERT classifier (negative/positive) and a second one with other weights."""
    from llm_lab.tiny import make_tiny_bert

    root = tmp_path_factory.mktemp("distill")
    return (make_tiny_bert(root / "t4", layers=4, seed=0), make_tiny_bert(root / "t4b", layers=4, seed=1))


@pytest.fixture(scope="module")
def gpt4(tmp_path_factory):
    from llm_lab.tiny import make_tiny_gpt2

    return make_tiny_gpt2(tmp_path_factory.mktemp("distill_gpt") / "g4", n_layer=4)


def _bert(folder):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(folder).eval()


def _args(tmp_path):
    from transformers import TrainingArguments

    return TrainingArguments(output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none", disable_tqdm=True,
                             remove_unused_columns=False, label_names=["labels"])


def _trainer(tmp_path, student, teacher, **kw):
    return distill.DistillTrainer(model=student, args=_args(tmp_path), teacher=teacher, **kw)


def test_layers_are_spread_from_the_first_to_the_last():
    assert distill.pick_layers(6, 3) == [0, 3, 5]          # the first, the last, the rest evenly between
    assert distill.pick_layers(12, 6) == [0, 2, 4, 7, 9, 11]
    assert distill.pick_layers(6, 2) == [0, 5] and distill.pick_layers(6, 1) == [5]
    assert distill.pick_layers(4, 3) == [0, 2, 3]
    assert distill.pick_layers(6, 3, "every") == [0, 2, 4]  # DistilBERT's every other layer
    assert distill.pick_layers(6, 2, "last") == [4, 5] and distill.pick_layers(6, 2, [5, 1]) == [1, 5]
    for bad in ((6, 6), (6, 0), (6, 7)):
        with pytest.raises(ModelError, match="fewer layers"):
            distill.pick_layers(*bad)


def test_student_starts_as_the_chosen_teacher_layers(bert4, gpt4):
    from transformers import AutoModelForCausalLM

    teacher = _bert(bert4[0])
    student = distill.student_from_teacher(teacher, 2)
    assert student.config.num_hidden_layers == 2 and len(student.bert.encoder.layer) == 2
    assert teacher.config.num_hidden_layers == 4  # the teacher's config is untouched
    t_state, s_state = teacher.state_dict(), student.state_dict()
    for key, value in s_state.items():
        source = key
        if key.startswith("bert.encoder.layer."):
            i, rest = key.removeprefix("bert.encoder.layer.").split(".", 1)
            source = f"bert.encoder.layer.{[0, 3][int(i)]}.{rest}"
        assert torch.equal(value, t_state[source]), key
        assert value.data_ptr() != t_state[source].data_ptr()  # its own copy: training it leaves the teacher alone
    assert {k for k in s_state if not k.startswith("bert.encoder.layer.")} == \
        {k for k in t_state if not k.startswith("bert.encoder.layer.")}  # embeddings, pooler, head: all copied

    gpt = AutoModelForCausalLM.from_pretrained(gpt4).eval()
    small = distill.student_from_teacher(gpt, 3, pick="last")
    assert small.config.n_layer == 3
    for i, j in enumerate([1, 2, 3]):
        for (name, a), (_, b) in zip(small.transformer.h[i].named_parameters(), gpt.transformer.h[j].named_parameters()):
            assert torch.equal(a, b), name
    assert torch.equal(small.lm_head.weight, gpt.lm_head.weight) and torch.equal(small.transformer.ln_f.weight,
                                                                                 gpt.transformer.ln_f.weight)
    assert [block.attn.layer_idx for block in small.transformer.h] == [0, 1, 2]  # its own cache slots
    small.eval()
    ids = torch.tensor([[5, 6, 7, 8]])
    assert small.generate(ids, max_new_tokens=3, do_sample=False).shape == (1, 7)


def _expected_cls(student_logits, teacher_logits, labels, T, alpha):
    """The loss written out per example with explicit softmaxes (no log_softmax, no F.kl_div): the soft term over
    every row, the gold one over the rows with a label (an augmented row has none: -100)."""
    total_kd, total_ce, gold = 0.0, 0.0, 0
    for s, t, y in zip(student_logits.double(), teacher_logits.double(), labels.tolist()):
        p_t = torch.exp(t / T) / torch.exp(t / T).sum()
        p_s = torch.exp(s / T) / torch.exp(s / T).sum()
        total_kd += float((p_t * torch.log(p_t / p_s)).sum())
        if y != -100:
            total_ce += float(-torch.log(torch.exp(s[y]) / torch.exp(s).sum()))
            gold += 1
    return alpha * T * T * total_kd / len(labels) + (1 - alpha) * total_ce / gold


def _cls_batch():
    from transformers import AutoTokenizer

    from llm_lab.registry import minilm_dir

    tok = AutoTokenizer.from_pretrained(minilm_dir())
    enc = tok(["a great film", "boring and far too long, dreadful", "fine", "[MASK] film"], padding=True,
              return_tensors="pt")
    return dict(enc, labels=torch.tensor([1, 0, 1, -100]))  # the last: an augmented row, the teacher's labels only


def test_the_students_loss_is_the_distillation_loss_of_its_teacher(tmp_path, bert4):
    teacher, other = _bert(bert4[0]), _bert(bert4[1])
    with torch.no_grad():  # random tiny models are nearly uniform: sharpen their heads so the teachers differ
        for model in (teacher, other):
            model.classifier.weight.mul_(40)
    student = distill.student_from_teacher(teacher, 2).eval()  # eval: no dropout, so forward passes agree
    with torch.no_grad():  # move the student away from the teacher, so the KL term is not ~0
        for p in student.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    batch = _cls_batch()
    features = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        s_logits, t_logits, o_logits = student(**features).logits, teacher(**features).logits, other(**features).logits
    T, alpha = 2.0, 0.3
    trainer = _trainer(tmp_path, student, teacher, temperature=T, alpha=alpha)
    with torch.no_grad():
        loss = float(trainer.compute_loss(student, dict(batch)))
    expected = _expected_cls(s_logits, t_logits, batch["labels"], T, alpha)
    assert abs(loss - expected) < 1e-5, (loss, expected)

    # another teacher, another loss (and the one computed from that teacher's logits)
    with torch.no_grad():
        loss_other = float(_trainer(tmp_path, student, other, temperature=T, alpha=alpha).compute_loss(student, dict(batch)))
    assert abs(loss_other - _expected_cls(s_logits, o_logits, batch["labels"], T, alpha)) < 1e-5
    assert abs(loss_other - loss) > 1e-3

    # alpha = 0: the student's own cross-entropy, as transformers computes it with the labels (-100 ignored)
    with torch.no_grad():
        plain = float(_trainer(tmp_path, student, teacher, temperature=T, alpha=0.0).compute_loss(student, dict(batch)))
        own = float(student(**batch).loss)
    assert abs(plain - own) < 1e-5
    # a training step moves the student only: the teacher runs without gradients
    student.train()
    _trainer(tmp_path, student, teacher, temperature=T, alpha=alpha).compute_loss(student, dict(batch)).backward()
    assert teacher.training is False and all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None for p in student.classifier.parameters())


def test_causal_distillation_is_over_next_tokens_and_leaves_out_padding(tmp_path, gpt4):
    from transformers import AutoModelForCausalLM

    teacher = AutoModelForCausalLM.from_pretrained(gpt4).eval()
    student = distill.student_from_teacher(teacher, 2).eval()
    ids = torch.tensor([[11, 12, 13, 14, 15], [21, 22, 23, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    labels = torch.tensor([[-100, -100, 13, 14, 15], [21, 22, 23, -100, -100]])  # a prompt, and padding
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    T, alpha = 3.0, 0.6
    with torch.no_grad():
        s = student(input_ids=ids, attention_mask=mask).logits.double()
        t = teacher(input_ids=ids, attention_mask=mask).logits.double()
        loss = float(_trainer(tmp_path, student, teacher, temperature=T, alpha=alpha, causal=True)
                     .compute_loss(student, dict(batch)))
        own = float(student(**batch).loss)
        ce0 = float(_trainer(tmp_path, student, teacher, temperature=T, alpha=0.0, causal=True)
                    .compute_loss(student, dict(batch)))
    kd, ce, n = 0.0, 0.0, 0
    for row in range(2):
        for pos in range(4):  # the logits at pos predict the token at pos + 1
            target = int(labels[row, pos + 1])
            if target == -100:
                continue
            p_t, p_s = torch.softmax(t[row, pos] / T, -1), torch.softmax(s[row, pos] / T, -1)
            kd += float((p_t * (p_t.log() - p_s.log())).sum())
            ce += float(-torch.log_softmax(s[row, pos], -1)[target])
            n += 1
    assert n == 5  # row 0: 3 completion tokens; row 1: 2 (its first token predicts nothing, padding is out)
    assert abs(loss - (alpha * T * T * kd / n + (1 - alpha) * ce / n)) < 1e-5
    assert abs(ce0 - own) < 1e-5  # alpha = 0: the causal LM's own loss


def test_augmented_copies_keep_special_tokens_and_have_no_gold_label():
    from transformers import AutoTokenizer

    from llm_lab.registry import minilm_dir

    tok = AutoTokenizer.from_pretrained(minilm_dir())
    rows = [{"input_ids": ids, "attention_mask": [1] * len(ids), "labels": 1}
            for ids in tok(["the battery easily lasts a week of commuting and more", "bad"])["input_ids"]]
    copies = distill.augment_rows(rows, 6, tok, seed=3)
    assert copies == distill.augment_rows(rows, 6, tok, seed=3) and len(copies) == 12  # deterministic
    for i, row in enumerate(copies):
        source = rows[i // 6]["input_ids"]
        assert row["labels"] == -100 and row["attention_mask"] == [1] * len(row["input_ids"])
        assert row["input_ids"][0] == tok.cls_token_id and row["input_ids"][-1] == tok.sep_token_id
        assert len(row["input_ids"]) <= len(source)
        assert set(row["input_ids"]) <= set(source) | {tok.mask_token_id}
    long = [r["input_ids"] for r in copies[:6]]
    assert any(tok.mask_token_id in ids for ids in long) and len({tuple(ids) for ids in long}) > 1


def _teacher(tiny_folder, name="teacher4"):
    registry.register(LOCAL, registry.ModelEntry(name, "local", str(tiny_folder), "classifier"))
    return name


def test_a_distillation_job_registers_a_smaller_student_with_its_teacher(bert4):
    teacher = _teacher(bert4[0])
    add_dataset("sent", sentiment_csv(labels=("negative", "positive"), n=40))
    cfg = TrainConfig(task="classify", model=teacher, dataset="sent", name="student1", distill=True,
                      student_layers=1, temperature=3.0, alpha=0.7, augment=1, epochs=1.0, batch_size=8,
                      learning_rate=1e-3, logging_steps=1, max_length=32)
    job_id = train.submit(LOCAL, cfg)  # inline in tests: done when it returns
    job = jobs.get(LOCAL, job_id)
    assert job["status"] == "succeeded", job["error"]
    assert job["title"].startswith("Distil classifier: teacher4 → 1 layers")
    entry = registry.resolve(LOCAL, "student1")
    assert entry.parent == teacher and entry.head == "classifier" and entry.labels == ["negative", "positive"]
    assert entry.meta["distillation"] == {"teacher": teacher, "teacher_layers": 4, "student_layers": 1,
                                          "layers_kept": [3], "temperature": 3.0, "alpha": 0.7,
                                          "teacher_parameters": sum(p.numel() for p in _bert(bert4[0]).parameters())}
    assert "--distill-from teacher4 --student-layers 1 --temperature 3 --alpha 0.7 --augment 1" in entry.meta["command"]
    assert entry.meta["dataset"]["augmented_rows"] == entry.meta["dataset"]["train_rows"]  # one copy each
    loaded = registry.load(LOCAL, "student1", device="cpu")
    assert loaded.info()["layers"] == 1 and loaded.labels == ["negative", "positive"]
    # the live curves carry the two terms beside the training loss
    names = {m["name"] for m in jobs.metrics(LOCAL, job_id)}
    assert {"train_loss", "kd_loss", "ce_loss", "eval_accuracy"} <= names
    points = {(m["step"], m["name"]): m["value"] for m in jobs.metrics(LOCAL, job_id)}
    step = min(s for s, n in points if n == "kd_loss")
    assert abs(points[(step, "train_loss")] - (0.7 * points[(step, "kd_loss")] + 0.3 * points[(step, "ce_loss")])) < 2e-3
    card = (registry.resolve(LOCAL, "student1").location + "/README.md")
    assert "distilled | from `teacher4` (4 layers): its layers 3 kept" in open(card).read()


class _Stop(Exception):
    pass


class _Reporter:
    """A JobContext stand-in; `stop_at`: raise there, as a killed worker stops a run."""

    def __init__(self, stop_at=None):
        self.stop_at, self.lines = stop_at, []

    def progress(self, done, total, message="", force=False, **stats):
        if self.stop_at is not None and done >= self.stop_at:
            raise _Stop()

    def metric(self, step, **values):
        pass

    def log(self, line):
        self.lines.append(line)


def test_an_interrupted_distillation_resumes_from_its_checkpoint_to_the_same_student(bert4):
    from llm_lab import paths
    from llm_lab.train import runner

    teacher = _teacher(bert4[0])
    add_dataset("sentr", sentiment_csv(labels=("negative", "positive"), n=24))
    cfg = TrainConfig(task="classify", model=teacher, dataset="sentr", distill=True, student_layers=2, augment=1,
                      max_steps=6, save_steps=3, batch_size=8, learning_rate=1e-3, eval_fraction=0.0)
    whole = runner.train(LOCAL, cfg, _Reporter(), paths.subdir("jobs", "whole"))
    workdir = paths.subdir("jobs", "cut")
    with pytest.raises(_Stop):
        runner.train(LOCAL, cfg, _Reporter(stop_at=5), workdir)
    again = _Reporter()
    resumed = runner.train(LOCAL, cfg, again, workdir, resume=True)
    assert "Resuming from checkpoint-3" in again.lines and resumed.stats["steps"] == 6
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_a_causal_lm_student_is_distilled_registered_and_generates(gpt4):
    lines = [f"def add_{i}(x): return x + {i}" for i in range(40)]
    add_dataset("code", ("text\n" + "\n".join(lines)).encode())
    registry.register(LOCAL, registry.ModelEntry("gpt4", "local", str(gpt4), "causal-lm"))
    cfg = TrainConfig(task="causal-lm", model="gpt4", dataset="code", name="gpt-student", distill=True,
                      student_layers=2, epochs=1.0, batch_size=8, learning_rate=1e-3, logging_steps=1, max_length=32)
    job_id = train.submit(LOCAL, cfg)
    job = jobs.get(LOCAL, job_id)
    assert job["status"] == "succeeded", job["error"]
    # eval_loss is the student's own loss on the held-out rows (one batch here), not the distillation loss
    from llm_lab.train import data_prep

    student = registry.load(LOCAL, "gpt-student", device="cpu", dtype="float32")
    held = data_prep.causal(LOCAL, cfg, student.tokenizer).eval.rows
    with torch.no_grad():
        own = float(student.model(**data_prep.CausalCollator(student.tokenizer.pad_token_id, 0)(held)).loss)
    assert len(held) <= 16 and abs(job["result"]["metrics"]["eval_loss"] - own) < 1e-4
    assert abs(job["result"]["metrics"]["eval_perplexity"] - math.exp(own)) < 1e-2 * math.exp(own)
    entry = registry.resolve(LOCAL, "gpt-student")
    assert entry.parent == "gpt4" and entry.meta["distillation"]["layers_kept"] == [0, 3]
    assert {"kd_loss", "ce_loss", "eval_perplexity"} <= {m["name"] for m in jobs.metrics(LOCAL, job_id)}
    loaded = registry.load(LOCAL, "gpt-student", device="cpu")
    assert loaded.head == "causal-lm" and loaded.info()["layers"] == 2
    ids = loaded.tokenizer("def add_", return_tensors="pt")["input_ids"]
    assert loaded.model.generate(ids, max_new_tokens=4, do_sample=False).shape[1] == ids.shape[1] + 4


def test_distillation_refuses_what_it_cannot_do(bert4, tiny_bert):
    teacher = _teacher(bert4[0])
    add_dataset("sent3", sentiment_csv(labels=("neg", "pos"), n=20))
    with pytest.raises(DataError, match="not among the teacher teacher4's"):
        train.submit(LOCAL, TrainConfig(task="classify", model=teacher, dataset="sent3", distill=True,
                                        student_layers=1, epochs=1.0))
    add_dataset("sent2", sentiment_csv(labels=("negative", "positive"), n=20))
    with pytest.raises(ModelError, match="fewer layers than its teacher"):
        train.submit(LOCAL, TrainConfig(task="classify", model=teacher, dataset="sent2", distill=True, student_layers=4))
    for bad, message in ((dict(lora=True), "LoRA off"), (dict(alpha=1.5), "Alpha"), (dict(temperature=0), "temperature must be positive")):
        with pytest.raises(LabError, match=message):
            TrainConfig(task="classify", model=teacher, dataset="sent2", distill=True, **bad).validate()
    registry.register(LOCAL, registry.ModelEntry("encoder4", "local", str(tiny_bert), "encoder"))
    with pytest.raises(ModelError, match="made as an encoder, not a classifier"):
        train.submit(LOCAL, TrainConfig(task="classify", model="encoder4", dataset="sent2", distill=True,
                                        student_layers=1))
    with pytest.raises(LabError, match="pretraining"):
        TrainConfig(task="pretrain", distill=True).validate()


def test_the_cli_flag_and_the_reproduce_command():
    from llm_lab.train.cli import add_train_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_train_arguments(parser, "classify")
    cfg = config_from_args(parser.parse_args(["--distill-from", "minilm-sentiment", "--data", "demo-reviews",
                                              "--student-layers", "2", "--temperature", "4", "--alpha", "0.9"]),
                           "classify")
    assert (cfg.distill, cfg.model, cfg.student_layers, cfg.temperature, cfg.alpha) == \
        (True, "minilm-sentiment", 2, 4.0, 0.9)
    command = cfg.to_cli()
    assert command.startswith("python -m llm_lab train classify --distill-from minilm-sentiment ")
    again = config_from_args(parser.parse_args(command.split()[5:]), "classify")
    assert again == cfg
    with pytest.raises(LabError, match="two models"):
        config_from_args(parser.parse_args(["--distill-from", "a", "--model", "b", "--data", "x"]), "classify")


def test_the_train_page_offers_distillation_and_submits_it(monkeypatch):
    monkeypatch.setattr(jobs, "_enqueue", lambda job_id: None)  # queued, not run: the config is what is checked
    at = app_test("views/train.py").run()
    at.toggle(key="t_distill").set_value(True).run()
    no_exceptions(at)
    assert at.selectbox(key="t_model_classify_distill").value == "minilm-sentiment"  # the teacher by default
    at.selectbox(key="t_model_classify_distill").set_value("minilm").run()
    assert any("minilm was made as an encoder, not a classifier" in c.value for c in at.caption)  # said before Start
    at.selectbox(key="t_model_classify_distill").set_value("minilm-sentiment").run()
    at.number_input(key="t_st_layers").set_value(2)
    at.number_input(key="t_temp").set_value(4.0)
    at.number_input(key="t_alpha").set_value(0.8)
    assert at.number_input(key="t_augment").value == 4  # the measured default
    at.number_input(key="t_augment").set_value(2)
    at.run()
    no_exceptions(at)
    assert any("keeps minilm-sentiment's layers 0, 5 (of 6)" in c.value for c in at.caption)
    assert not [t for t in at.toggle if t.key == "t_lora"]  # a student is trained in full
    assert any("--distill-from minilm-sentiment" in c.value and "--student-layers 2" in c.value for c in at.code)
    assert any("teacher" in c.value for c in at.caption if "Estimate" in c.value)
    at.button(key="t_start").click().run()
    no_exceptions(at)
    job = jobs.list_jobs(LOCAL)[0]
    cfg = TrainConfig.from_params(job["params"])
    assert (cfg.distill, cfg.model, cfg.student_layers, cfg.temperature, cfg.alpha, cfg.augment, cfg.lora) == \
        (True, "minilm-sentiment", 2, 4.0, 0.8, 2, False)
    assert (cfg.epochs, cfg.learning_rate) == (3.0, 1e-4)  # the distillation defaults
    assert json.loads(at.query_params["form"][0] if isinstance(at.query_params["form"], list)
                      else at.query_params["form"])["t_distill"] is True  # kept in the address like the rest
