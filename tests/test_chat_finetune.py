"""Fine-tuning the chat model on prompt/completion pairs through its chat template (issue 23).

A dataset's own `split` column is kept; a chat model's training examples are its chat template's prompt, the
answer and the end-of-turn token, the loss on the answer only; after training, the base's and the fine-tuned
model's answers to held-out prompts are stored side by side with chrF; LoRA on the demo instructions makes the
chat model answer "In short: …".
"""
import argparse
import csv
import io
import shlex
import time

import pytest
import torch

from llm_lab import data, inference, jobs, paths, registry, store, train
from llm_lab.access import LOCAL, SYSTEM, scope
from llm_lab.errors import DataError
from llm_lab.generation import GenerationSettings
from llm_lab.train import TrainConfig, before_after, data_prep, modeling, runner
from llm_lab.train.cli import config_from_args, register
from llm_lab.train.config import CHAT_DEFAULTS, task_defaults
from tests.conftest import app_test, no_exceptions
from tests.gguf_tiny import write_tiny_llama
from tests.test_train import Reporter, one_thread  # noqa: F401  one thread: tiny models, a busy machine


def qa_csv(splits: list[str], header: str = "prompt,reference,split") -> bytes:
    rows = [header] + [f"Question number {i}?,Answer number {i}.,{s}" for i, s in enumerate(splits)]
    return "\n".join(rows).encode()


# ---------------------------------------------------------------- the split column
def test_a_split_column_is_kept_row_by_row():
    given = ["train", "Train", "TEST", "validation", "train", " test ", "train", "Validation", "train", "train"]
    recipe = data.Recipe(train=0.5, validation=0.25, seed=3)  # fractions a random split would follow: unused
    info = data.import_dataset(LOCAL, "given", "g.csv", qa_csv(given), recipe=recipe)
    frame = data.load_frame(LOCAL, "given")
    expected = {f"Question number {i}?": s.strip().lower() for i, s in enumerate(given)}
    assert {p: s for p, s in zip(frame["prompt"], frame["split"])} == expected
    assert info.splits == {"train": 6, "validation": 2, "test": 2} and info.roles == {"prompt": "prompt",
                                                                                        "reference": "reference"}
    assert info.report["split_column"] == "split" and "split" not in info.roles


def test_a_split_column_is_never_guessed_as_the_label():
    raw = data.read_table("r.csv", b"review,Split\n" + b"\n".join(
        f"review {i},{'train' if i % 3 else 'test'}".encode() for i in range(12)))
    assert data.guess_roles(raw) == {"text": "review"}  # three values: the label guess would take it
    frame, _, report = data.prepare("r.csv", b"", raw=raw)
    assert frame["split"].tolist() == ["test" if i % 3 == 0 else "train" for i in range(12)]
    assert report["split_column"] == "Split"


def test_a_split_column_with_other_values_is_refused():
    """Refused, not ignored: a random split in its place would train on the rows its author held out."""
    with pytest.raises(DataError) as caught:
        data.import_dataset(LOCAL, "odd", "o.csv", qa_csv(["train", "train", "dev", "test", ""]))
    message = str(caught.value)
    assert "'split'" in message and "2 row(s)" in message and "'dev'" in message and "(empty)" in message
    assert "data row 3" in message and "train, validation and test" in message and "rename the column" in message
    assert "odd" not in [d.name for d in data.list_datasets(LOCAL)]


def test_a_split_column_mapped_to_a_role_is_that_role():
    payload = b"text,split\n" + b"\n".join(f"text {i},{'a' if i % 2 else 'b'}".encode() for i in range(20))
    info = data.import_dataset(LOCAL, "mapped", "m.csv", payload, roles={"text": "text", "label": "split"})
    assert info.label_names == ["a", "b"] and sum(info.splits.values()) == 20 and "split_column" not in info.report


def test_the_demo_instructions_keep_the_csvs_splits():
    rows = list(csv.DictReader(io.StringIO((data.DEMO_DIR / "instructions.csv").read_text())))
    frame = data.load_frame(LOCAL, "demo-instructions")
    assert dict(zip(frame["prompt"], frame["split"])) == {r["prompt"]: r["split"] for r in rows}
    assert data.get(LOCAL, "demo-instructions").splits == {"train": 130, "validation": 15, "test": 15}
    assert frame["reference"].str.startswith("In short: ").all()


# ---------------------------------------------------------------- chat-templated examples (tiny GGUF chat model)
@pytest.fixture
def tiny_chat(tmp_path):
    return write_tiny_llama(tmp_path / "tiny-chat.gguf")["path"]


def _independent(tok, prompt: str, answer: str) -> tuple[list[int], list[int]]:
    """The example as the template writes a whole exchange: the answer's turn up to its end-of-turn token (the
    line break the template writes after it left out), the prompt's part unscored."""
    ids = lambda out: list(out["input_ids"] if hasattr(out, "keys") else out)
    user = [{"role": "user", "content": prompt}]
    asked = ids(tok.apply_chat_template(user, add_generation_prompt=True, tokenize=True))
    whole = ids(tok.apply_chat_template(user + [{"role": "assistant", "content": answer}], tokenize=True))
    assert whole[:len(asked)] == asked and tok.decode(whole[-2:]) == "<|im_end|>\n"
    return whole[:-1], [-100] * len(asked) + whole[len(asked):-1]


def test_chat_examples_equal_the_templates_own_exchange(tiny_chat):
    data.import_dataset(LOCAL, "qa", "qa.csv", qa_csv(["train"] * 6 + ["validation"] * 2))
    cfg = TrainConfig(task="causal-lm", model=str(tiny_chat), dataset="qa", max_length=128)
    tok = modeling.tokenizer_for(LOCAL, cfg.model)
    assert data_prep.end_of_turn(tok) == [tok.convert_tokens_to_ids("<|im_end|>")] == [tok.eos_token_id]
    prepared = data_prep.causal(LOCAL, cfg, tok)
    assert prepared.info["chat_template"] is True and prepared.info["format"] == "prompt-completion"
    frame = data.load_frame(LOCAL, "qa")
    for split, rows in (("train", prepared.train.rows), ("validation", prepared.eval.rows)):
        part = frame[frame["split"] == split]
        for row, prompt, answer in zip(rows, part["prompt"], part["reference"]):
            assert (row["input_ids"], row["labels"]) == _independent(tok, prompt, answer)


def test_a_long_chat_example_loses_the_start_of_its_prompt_never_its_answer(tiny_chat):
    data.import_dataset(LOCAL, "qa", "qa.csv", qa_csv(["train"] * 6))
    tok = modeling.tokenizer_for(LOCAL, str(tiny_chat))
    ids, labels = _independent(tok, "Question number 0?", "Answer number 0.")
    n_answer = sum(label != -100 for label in labels)
    cfg = TrainConfig(task="causal-lm", model=str(tiny_chat), dataset="qa", max_length=n_answer + 5, eval_fraction=0)
    row = data_prep.causal(LOCAL, cfg, tok).train.rows[0]
    assert row["input_ids"] == ids[-(n_answer + 5):] and row["labels"] == labels[-(n_answer + 5):]


def test_raw_prompts_and_the_command_that_asks_for_them(tiny_chat):
    data.import_dataset(LOCAL, "qa", "qa.csv", qa_csv(["train"] * 6))
    cfg = TrainConfig(task="causal-lm", model=str(tiny_chat), dataset="qa", chat_template=False, eval_fraction=0)
    tok = modeling.tokenizer_for(LOCAL, cfg.model)
    prepared = data_prep.causal(LOCAL, cfg, tok)
    prompt = tok("Question number 0?")["input_ids"]
    answer = tok(" Answer number 0.")["input_ids"] + [tok.eos_token_id]
    assert prepared.info["chat_template"] is False
    assert prepared.train.rows[0] == {"input_ids": prompt + answer, "labels": [-100] * len(prompt) + answer}
    command = cfg.to_cli()
    assert "--no-chat-template" in command and "--chat-template" not in command.replace("--no-chat-template", "")
    assert "--chat-template" not in TrainConfig(task="causal-lm", dataset="qa").to_cli()
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(shlex.split(command)[3:])
    assert config_from_args(args, "causal-lm") == cfg
    assert "chat_template" in cfg.relevant() and "chat_template" not in TrainConfig(dataset="qa").relevant()


def test_the_chat_models_defaults_hold_every_demo_example_whole(chat_model_file):
    """task_defaults for the chat model: its max_length holds every templated demo example, so none loses the
    start of its prompt; each ends with SmolLM2's end of turn (<|im_end|>, its EOS)."""
    defaults = task_defaults("causal-lm", lora=True, model=registry.CHAT_MODEL)
    assert defaults == CHAT_DEFAULTS["lora"] and task_defaults("causal-lm", lora=True)["model"] == "tiny-gpt"
    cfg = TrainConfig(task="causal-lm", model=registry.CHAT_MODEL, dataset="demo-instructions", lora=True, **defaults)
    tok = modeling.tokenizer_for(LOCAL, cfg.model)
    prepared = data_prep.causal(LOCAL, cfg, tok)
    rows = prepared.train.rows + prepared.eval.rows
    assert len(rows) == 145 and max(len(r["input_ids"]) for r in rows) < cfg.max_length
    assert tok.convert_ids_to_tokens(tok.eos_token_id) == "<|im_end|>"
    assert all(r["input_ids"][-1] == r["labels"][-1] == tok.eos_token_id for r in rows)
    system = tok.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False)
    assert "You are a helpful AI assistant named SmolLM" in system  # the template's own system turn, as inference
    assert all(tok.decode(r["input_ids"]).startswith(system.split("user")[0]) for r in rows)


# ---------------------------------------------------------------- before and after
def test_chrf_and_its_interval_match_sacrebleu():
    from sacrebleu import corpus_chrf

    refs = ["In short: Rome is the capital.", "In short: 4.", "In short: water boils at 100 C.", "In short: no."]
    before = ["Rome.", "The answer is 4.", "It boils at 100 degrees.", "No."]
    after = ["In short: Rome is the capital.", "In short: 4.", "In short: it boils at 100 C.", "No."]
    found = before_after.measure("base", "tuned", ["q"] * 4, refs, before, after)
    for side, texts in (("before", before), ("after", after)):
        ci = found["intervals"][side]
        assert ci["value"] == pytest.approx(corpus_chrf(texts, [refs]).score) and ci["n"] == 4
        assert ci["low"] <= ci["value"] <= ci["high"]
    comparison = found["comparison"]
    assert comparison["difference"] == pytest.approx(corpus_chrf(after, [refs]).score
                                                     - corpus_chrf(before, [refs]).score)
    assert comparison["model_a"] == "base" and comparison["model_b"] == "tuned" and found["changed"] == 3
    assert "chrF" in before_after.summary(dict(found, split="test")) and "3 of 4 answers changed" in \
        before_after.summary(dict(found, split="test"))


def test_before_after_answers_the_test_prompts_through_the_chat_template(tiny_chat):
    splits = ["train"] * 8 + ["test"] * 3 + ["validation"] * 2
    data.import_dataset(LOCAL, "qa", "qa.csv", qa_csv(splits))
    cfg = TrainConfig(task="causal-lm", model=str(tiny_chat), dataset="qa", name="tuned")
    model, tok = modeling.causal_lm(LOCAL, cfg), modeling.tokenizer_for(LOCAL, cfg.model)
    same = before_after.compare(LOCAL, cfg, model, tok)
    assert same["prompts"] == [f"Question number {i}?" for i in (8, 9, 10)] and same["split"] == "test"
    base = registry.load(LOCAL, cfg.model, head="causal-lm", device="cpu", dtype="float32")
    settings = GenerationSettings(max_new_tokens=same["settings"]["max_new_tokens"])  # greedy, chat template on
    assert same["before"] == [r.text.strip() for r in inference.generate(base, same["prompts"], settings)]
    assert same["after"] == same["before"] and same["changed"] == 0  # the same weights answer the same
    assert same["comparison"]["difference"] == 0
    with torch.no_grad():  # another model: other answers, counted
        model.lm_head.weight.mul_(-1)
    other = before_after.compare(LOCAL, cfg, model, tok)
    assert other["before"] == same["before"] and other["changed"] == sum(
        a != b for a, b in zip(other["after"], other["before"])) > 0
    assert other["model"] == "tuned" and other["base"] == str(tiny_chat)
    card = "\n".join(before_after.card_lines(other))
    assert "## Before and after" in card and card.count("| Question number") == 3
    text = before_after.summary(other)
    assert text.startswith("Held-out answers (3 test prompts, greedy): chrF ")


def test_before_after_is_for_prompt_completion_fine_tunes_only(tiny_chat):
    data.import_dataset(LOCAL, "docs", "d.txt", b"\n".join(f"line {i}".encode() for i in range(20)))
    cfg = TrainConfig(task="causal-lm", model=str(tiny_chat), dataset="docs")
    assert before_after.compare(LOCAL, cfg, None, None) == {}
    assert before_after.summary({}) == "" and before_after.rows({}) == [] and before_after.card_lines({}) == []


# ---------------------------------------------------------------- the real chat model
def instructions_subset(train_rows: int, test_rows: int) -> bytes:
    """The demo instructions with fewer rows: the first `train_rows` training pairs, `test_rows` test pairs and
    two validation pairs (the held-out perplexity stays cheap)."""
    rows = list(csv.DictReader(io.StringIO((data.DEMO_DIR / "instructions.csv").read_text())))
    keep = {"train": train_rows, "test": test_rows, "validation": 2}
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["prompt", "reference", "split"])
    writer.writeheader()
    for row in rows:
        if keep[row["split"]] > 0:
            keep[row["split"]] -= 1
            writer.writerow(row)
    return out.getvalue().encode()


def starts_in_short(answers: list[str]) -> float:
    return sum(a.startswith("In short:") for a in answers) / len(answers)


@pytest.mark.slow
def test_lora_on_the_instructions_changes_the_held_out_answers(chat_model_file):
    data.import_dataset(LOCAL, "instr", "instr.csv", instructions_subset(train_rows=32, test_rows=6))
    # 8 steps of 8 (two passes over 32 pairs) at a high constant rate: the style must show within a minute
    cfg = TrainConfig(task="causal-lm", model=registry.CHAT_MODEL, dataset="instr", name="smol-in-short",
                      lora=True, lora_r=8, lora_alpha=16, learning_rate=3e-3, batch_size=8, max_steps=8,
                      scheduler="constant", max_length=128, warmup=0.0, logging_steps=1, seed=0)
    trained = runner.train(LOCAL, cfg, Reporter(), paths.subdir("jobs", "chat"))
    assert trained.prepared.info["chat_template"] is True
    # kept by the run once runner.final_metrics calls before_after.compare; made here otherwise
    found = trained.evaluation.get("before_after") or before_after.compare(LOCAL, cfg, trained.model,
                                                                           trained.tokenizer)
    assert found["n"] == 6 and found["split"] == "test"
    assert starts_in_short(found["before"]) == 0, found["before"]  # SmolLM2 never answers so by itself
    assert starts_in_short(found["after"]) >= 0.5, found["after"]
    assert found["changed"] >= 3
    assert found["intervals"]["after"]["value"] > found["intervals"]["before"]["value"]


# ---------------------------------------------------------------- the Train page
def _finished_run(monkeypatch, result: dict) -> str:
    monkeypatch.setattr(jobs, "_enqueue", lambda job_id: None)  # queued, never run: its row is set below
    job_id = train.submit(LOCAL, TrainConfig(task="pretrain", name="shown-run", preset="1M", max_steps=20))
    scope(SYSTEM).update("jobs", {"status": "succeeded", "finished_at": time.time(), "result": store.to_json(result)},
                         "id=?", (job_id,))
    return job_id


def test_the_train_page_shows_the_answers_before_and_after(monkeypatch, tiny_gpt2):
    registry.register(LOCAL, registry.ModelEntry("shown", "trained", str(tiny_gpt2), "causal-lm"))
    found = before_after.measure("smollm2-chat", "shown", ["What is 2+2?", "Capital of Peru?"],
                                 ["In short: 4.", "In short: Lima."], ["2+2 is 4.", "Lima is the capital."],
                                 ["In short: 4.", "In short: Lima."])
    found.update(split="test")
    job_id = _finished_run(monkeypatch, {"model": "shown", "registered": True, "metrics": {},
                                         "evaluation": {"intervals": {}, "base": None, "note": "",
                                                        "before_after": found}})
    at = app_test("views/train.py")
    at.query_params["train_job"] = job_id
    at.run()
    no_exceptions(at)
    assert before_after.summary(found) in [t.value for t in at.text]
    tables = [d.value for d in at.dataframe if "after (shown)" in d.value.columns]
    assert len(tables) == 1 and list(tables[0].columns) == ["prompt", "reference", "before (smollm2-chat)",
                                                             "after (shown)"]
    table = tables[0]
    assert table["after (shown)"].tolist() == ["In short: 4.", "In short: Lima."]


def test_the_train_page_starts_the_chat_model_from_its_own_defaults(chat_model_file):
    at = app_test("views/train.py").run()
    at.radio(key="t_task").set_value("causal-lm").run()
    assert at.number_input(key="t_lr_causal-lm").value == 3e-4  # tiny-gpt's, as before
    at.selectbox(key="t_model_causal-lm").set_value(registry.CHAT_MODEL)
    at.selectbox(key="t_data_causal-lm").set_value("demo-instructions")
    at.toggle(key="t_lora").set_value(True).run()
    no_exceptions(at)
    chat = CHAT_DEFAULTS["lora"]
    assert at.number_input(key="t_lr_causal-lm_lora_chat").value == chat["learning_rate"]
    assert at.number_input(key="t_ep_causal-lm_chat").value == chat["epochs"]
    assert at.number_input(key="t_len_causal-lm_chat").value == chat["max_length"]
    command = " ".join(c.value for c in at.code)
    assert f"--model {registry.CHAT_MODEL} --data demo-instructions" in command and "--lora" in command
    assert f"--learning-rate {chat['learning_rate']}" in command and "chat-template" not in command
    at.toggle(key="t_raw").set_value(True).run()
    assert "--no-chat-template" in " ".join(c.value for c in at.code)
