"""Contamination: evaluation rows found in training data (exact and near duplicates) checked against a plain
set-of-tuples loop, the threshold boundary, and the runner's checks for a model trained here and a named dataset."""
import random

import pytest
import torch

from llm_lab import data, paths
from llm_lab.access import LOCAL
from llm_lab.bench import contamination as cont, runner, suite as suites
from llm_lab.train import TrainConfig, export, runner as train_runner
from tests.test_bench import _csv
from tests.test_train import Reporter

WORDS = ("kettle mug lid handle spout base cable switch light water tea cup steam plate glass "
         "metal blue red quiet loud fast slow small large warm cold new old good bad").split()


def sentence(rng, n=14):
    return " ".join(rng.choice(WORDS) for _ in range(n))


def plain_overlap(text, train_texts, n):
    """The share of `text`'s word n-grams (tuples) found in any training text: the test's own loop."""
    def grams(t):
        words = cont.normalise(t).split()
        return [tuple(words)] if len(words) < n else [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    seen = {g for t in train_texts for g in grams(t)}
    mine = grams(text)
    return sum(g in seen for g in mine) / len(mine)


def test_normalise():
    assert cont.normalise("  Hello,   WORLD!!\n it's_fine ") == "hello world it s fine"


def test_planted_rows_are_found_exact_and_near_and_a_clean_set_finds_nothing():
    rng = random.Random(0)
    train = [sentence(rng, 20) for _ in range(200)]
    clean = [f"unrelated words number {i} about nothing in particular here today" for i in range(30)]
    exact = train[5].upper().replace(" ", "  ") + "!"             # same text after normalising
    words = train[9].split()
    near = " ".join(words[:16] + ["zebra"] + words[17:])           # one word of 20 changed
    far = " ".join(words[:6] + ["zebra"] + words[7:13] + ["yak"] + words[14:])
    evals = clean + [exact, near, far]
    report = cont.check(range(100, 100 + len(evals)), evals, range(len(train)), train, training="t")
    expected = {i: plain_overlap(t, train, 8) for i, t in enumerate(evals)}
    assert report.checked == len(evals) and report.exact == 1
    assert report.near == sum(v >= 0.5 for i, v in expected.items() if evals[i] != exact)
    flagged = {f.id: f for f in report.flagged}
    assert flagged[130].kind == "exact" and flagged[130].train_id == 5 and flagged[130].overlap == 1.0
    assert flagged[131].kind == "near" and flagged[131].train_id == 9
    assert flagged[131].overlap == pytest.approx(expected[31], abs=1e-4) and 0.5 <= expected[31] < 1
    assert 132 not in flagged and expected[32] < 0.5  # two words changed: too few 8-grams left
    clean_report = cont.check(range(30), clean, range(len(train)), train)
    assert clean_report.clean and clean_report.flagged == [] and "none of the 30" in clean_report.note()


def test_threshold_boundary_and_short_texts():
    train = ["a b c", "x y"]
    # 4 bigrams, 2 of them (a b, b c) in training: exactly 0.5
    assert cont.check([1], ["a b c d e"], [0, 1], train, n=2, threshold=0.5).near == 1
    assert cont.check([1], ["a b c d e"], [0, 1], train, n=2, threshold=0.51).near == 0
    assert plain_overlap("a b c d e", train, 2) == 0.5
    # shorter than n words: the whole text is one gram, found only as a whole
    assert cont.check([1], ["x y"], [0, 1], train, n=8).exact == 1
    assert cont.check([1], ["b c"], [0, 1], train, n=8).clean
    report = cont.check([1], ["a b c d e"], [0, 1], train, n=2)
    assert report.threshold == 0.5 and report.n == 2 and "(≥50% of its 2-grams)" in report.note()
    assert cont.ContaminationReport.from_dict(report.to_dict()) == report
    with pytest.raises(cont.ContaminationError):
        cont.check([1], ["a"], [0], ["a"], threshold=0)


def _dataset(name, rows, recipe):
    data.import_dataset(LOCAL, name, "d.csv", _csv(rows, ["text", "label"]), {"text": "text", "label": "label"},
                        recipe)


def _expected_exact(frame_eval, frame_train):
    train = {cont.normalise(t) for t in frame_train["text"]}
    return sum(cont.normalise(t) in train for t in frame_eval["text"])


def test_a_named_dataset_is_checked(tiny_bert):
    rng = random.Random(1)
    train_rows = [(sentence(rng), "positive" if i % 2 else "negative") for i in range(40)]
    test_rows = [(train_rows[3][0].upper(), "positive"), (sentence(rng), "negative"), (sentence(rng), "positive")]
    _dataset("c-train", train_rows, data.Recipe(train=1.0, validation=0.0))
    _dataset("c-test", test_rows, data.Recipe(train=1.0, validation=0.0))
    s = suites.parse("name: t\ntasks:\n  - {name: sent, type: classification, dataset: c-test, split: all, "
                     "contamination: c-train, contamination_split: train}\n", "test")
    (res,) = runner.run_suite(LOCAL, s, [str(tiny_bert)], use_cache=False)
    assert res.status == "ok", res.error
    found = res.details["contamination"]
    assert (found["checked"], found["exact"], found["near"], found["source"]) == (3, 1, 0, "named")
    assert found["flagged"][0]["text"] == train_rows[3][0].upper() and found["threshold"] == 0.5 and found["n"] == 8
    assert any("1 of 3 evaluation rows also appear in dataset 'c-train', train split" in n for n in res.notes)
    missing = suites.parse("name: t\ntasks:\n  - {name: sent, type: classification, dataset: c-test, "
                           "contamination: nope}\n", "test")
    (bad,) = runner.run_suite(LOCAL, missing, [str(tiny_bert)], use_cache=False)
    assert bad.status == "error" and "nope" in bad.error


def test_a_model_trained_here_is_checked_against_its_own_training_rows(tiny_bert, monkeypatch):
    """Rows 40-49 repeat rows 0-9 (in capitals): those that the split put in test while their twin is in
    train are exact duplicates of the model's training data; no other row is."""
    rng = random.Random(2)
    rows = [(sentence(rng), "positive" if i % 2 else "negative") for i in range(40)]
    rows += [(t.upper(), l) for t, l in rows[:10]]
    _dataset("leaky", rows, data.Recipe(train=0.6, validation=0.2, seed=2, drop_duplicates=False))
    torch.manual_seed(0)
    cfg = TrainConfig(task="classify", model=str(tiny_bert), dataset="leaky", name="leaky-clf", max_steps=1,
                      batch_size=8, logging_steps=1, warmup=0.0)
    trained = train_runner.train(LOCAL, cfg, Reporter(), paths.subdir("jobs", "c1"))
    export.finish(LOCAL, cfg, trained, "job-c")
    expected = _expected_exact(data.load_frame(LOCAL, "leaky", "test"), data.load_frame(LOCAL, "leaky", "train"))
    assert expected > 0  # the seed puts some twins on both sides
    s = suites.parse("name: t\ntasks:\n  - {name: sent, type: classification, dataset: leaky}\n", "test")
    (res,) = runner.run_suite(LOCAL, s, ["leaky-clf"], use_cache=False)
    assert res.status == "ok", res.error
    found = res.details["contamination"]
    assert found["source"] == "trained" and found["exact"] == expected and found["checked"] == res.repro.rows
    assert any(n.startswith(f"{expected} of {res.repro.rows} test rows also appear in the training data of "
                            "leaky-clf (dataset 'leaky', train split, 30 rows) (exact)") for n in res.notes)
    (again,) = runner.run_suite(LOCAL, s, ["leaky-clf"])
    assert again.cached and again.details["contamination"] == found
    # a result stored before the check existed gets it when served from the cache
    from dataclasses import replace

    stored = runner.cache.get
    old = lambda actor, key: replace(stored(actor, key), details={})  # noqa: E731
    monkeypatch.setattr(runner.cache, "get", old)
    (served,) = runner.run_suite(LOCAL, s, ["leaky-clf"])
    assert served.cached and served.details["contamination"] == found
    # a model LLM Lab did not train: no check, no note
    (plain,) = runner.run_suite(LOCAL, s, [str(tiny_bert)], use_cache=False)
    assert "contamination" not in plain.details and not any("Contamination" in n for n in plain.notes)


def test_a_builtin_models_training_rows_are_reproduced_from_its_record():
    """minilm-sentiment was trained by LLM Lab on demo-reviews' train split (it has a validation split, so nothing
    was held out): the rows reproduced are as many as its record says it trained on, all of the train split."""
    from llm_lab import registry

    entry = next(e for e in registry.builtin_models() if e.name == "minilm-sentiment")
    record = cont.training_record(entry)
    ids, texts, what, caveats = cont.training_rows(LOCAL, entry)
    assert len(ids) == record["dataset"]["train_rows"] == 114 and caveats == []
    assert what == "dataset 'demo-reviews', train split, 114 rows"
    assert set(ids) == set(data.load_frame(LOCAL, "demo-reviews", "train")["id"])
    assert cont.training_rows(LOCAL, registry.ModelEntry("x", "local", "/nonexistent", "classifier")) is None


def test_rows_held_out_for_evaluation_are_not_training_rows():
    from llm_lab import registry

    rng = random.Random(4)
    _dataset("d40", [(sentence(rng), "ab"[i % 2]) for i in range(40)], data.Recipe(train=1.0, validation=0.0))
    entry = registry.ModelEntry("m", "trained", "/nonexistent", "classifier", meta={
        "dataset": {"dataset": "d40", "fingerprint": "an older version"},
        "hyperparameters": {"task": "classify", "dataset": "d40", "eval_fraction": 0.25, "seed": 4}})
    ids, _, what, caveats = cont.training_rows(LOCAL, entry)
    train = data.load_frame(LOCAL, "d40", "train")
    held = set(train.loc[train.sample(n=10, random_state=4).index, "id"])  # how training draws them
    assert set(ids) == set(train["id"]) - held and len(ids) == 30
    assert "less the rows held out for evaluation" in what and "changed after m was trained" in caveats[0]
    deleted = registry.ModelEntry("m", "trained", "/x", "classifier", meta=dict(entry.meta, hyperparameters={
        "task": "classify", "dataset": "gone"}))
    with pytest.raises(cont.ContaminationError, match="'gone', which cannot be read"):
        cont.training_rows(LOCAL, deleted)
