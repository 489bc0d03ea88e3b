"""Issue 12, Benchmarks page: fingerprints of the weights' bytes (two fine-tunes of one model are two models),
model rows that share a name, the split a task scores, the HTML report button, the run shown after a job."""
import hashlib
import json
import os
import shutil

import numpy as np
import pytest

from llm_lab import data, jobs, registry
from llm_lab.access import LOCAL
from llm_lab.bench import cache, fingerprint, jobs as bench_jobs, leaderboard, plots, report, runner, suite as suites
from llm_lab.registry import ModelEntry
from tests.conftest import app_test, no_exceptions
from tests.test_bench import REVIEWS, _csv, _direct_probs, cls_suite


@pytest.fixture
def binary_reviews():
    """The 12 reviews of test_bench, every row in the train split (no test split)."""
    data.import_dataset(LOCAL, "c-reviews", "r.csv", _csv(REVIEWS, ["text", "label"]), {"text": "text", "label": "label"},
                        data.Recipe(train=1.0, validation=0.0))
    return "c-reviews"


def _copy_with_one_weight_changed(src, dst, name="classifier.bias", delta=3.0):
    """`dst`: `src` with one value of one tensor changed; same tensor names, shapes, dtypes, file size."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    weights = load_file(dst / "model.safetensors")
    weights[name] = weights[name].clone()
    weights[name][0] += delta
    save_file(weights, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


def _header(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return f.read(n)


def _tiny_run(dataset, models, limit=6, **extra):
    extra = dict(extra, **({"limit": limit} if limit else {}))
    fields = "".join(f", {k}: {v}" for k, v in extra.items())
    text = f"name: t\ntasks:\n  - {{name: sent, type: classification, dataset: {dataset}{fields}}}\n"
    job_id = bench_jobs.submit(LOCAL, text, models)
    assert jobs.get(LOCAL, job_id)["status"] == "succeeded", jobs.get(LOCAL, job_id)["error"]
    return job_id


# ---------------------------------------------------------------- 1. fingerprints and names
def test_one_changed_weight_is_another_model_and_is_not_served_the_others_cached_result(tiny_bert, binary_reviews,
                                                                                     tmp_path):
    a = shutil.copytree(tiny_bert, tmp_path / "ft-1")
    b = _copy_with_one_weight_changed(tiny_bert, tmp_path / "ft-4")
    # what the old fingerprint read (config, tokenizer, file sizes, safetensors headers) is the same in both
    assert (a / "model.safetensors").stat().st_size == (b / "model.safetensors").stat().st_size
    assert _header(a / "model.safetensors") == _header(b / "model.safetensors")
    registry.register(LOCAL, ModelEntry("ft-1ep", "local", str(a), "classifier"))
    registry.register(LOCAL, ModelEntry("ft-4ep", "local", str(b), "classifier"))

    job_id = _tiny_run(binary_reviews, ["ft-1ep", "ft-4ep"], limit=12)
    log = "\n".join(jobs.logs(LOCAL, job_id))
    assert "ft-4ep / sent: done" in log and "cached" not in log, log
    assert fingerprint.folder_fingerprint(str(a)) != fingerprint.folder_fingerprint(str(b))
    results = leaderboard.run_results(LOCAL, cache.get_run(LOCAL, job_id))
    first, second = results
    assert [r.model for r in results] == ["ft-1ep", "ft-4ep"] and first.key != second.key
    assert not first.cached and not second.cached
    assert first.repro.model_fingerprint != second.repro.model_fingerprint
    # each model's numbers are its own: against a plain transformers forward of each folder
    texts = [t for t, _ in REVIEWS]
    for result, folder in ((first, a), (second, b)):
        expected = _direct_probs(folder, texts)
        np.testing.assert_allclose([r["confidence"] for r in result.per_example], expected.max(axis=1), atol=2e-4)
    assert [r["confidence"] for r in first.per_example] != [r["confidence"] for r in second.per_example]
    assert leaderboard.wide_table(results).shape[0] == 2

    # a second run of both: each is served its own cached result
    again = runner.run_suite(LOCAL, suites.parse(jobs.get(LOCAL, job_id)["params"]["suite_text"]), ["ft-1ep", "ft-4ep"])
    assert [r.cached for r in again] == [True, True] and [r.key for r in again] == [first.key, second.key]
    assert [r.model for r in again] == ["ft-1ep", "ft-4ep"]


def test_weight_digests_are_cached_and_read_again_when_a_file_changes(tiny_bert, tmp_path, monkeypatch):
    from safetensors.torch import load_file, save_file

    folder = shutil.copytree(tiny_bert, tmp_path / "m")
    (folder / "training_args.bin").write_bytes(b"trainer settings")  # not weights: left out
    adapter = folder / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"adapter v1")
    (adapter / "adapter_config.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(b"pickled weights")
    names = [p.relative_to(folder).as_posix() for p in fingerprint.model_files(folder)]
    assert {"model.safetensors", "pytorch_model.bin", "config.json", "adapter/adapter_model.safetensors",
            "adapter/adapter_config.json"} <= set(names) and "training_args.bin" not in names
    weights = folder / "model.safetensors"
    assert fingerprint.file_digest(weights) == hashlib.sha256(weights.read_bytes()).hexdigest()

    reads = []
    real = fingerprint._hash_file
    monkeypatch.setattr(fingerprint, "_hash_file", lambda path: reads.append(path.name) or real(path))
    before = fingerprint.folder_fingerprint(str(folder))
    fingerprint._DIGESTS.clear()
    reads.clear()
    assert fingerprint.folder_fingerprint(str(folder)) == before and len(reads) == len(names)
    reads.clear()
    for _ in range(3):
        assert fingerprint.folder_fingerprint(str(folder)) == before
    assert reads == []  # asked again: a stat per file, nothing read

    # one value rewritten (same size, header and names), with another mtime: only that file is read again
    old_mtime = weights.stat().st_mtime_ns
    tensors = load_file(weights)
    key = next(iter(tensors))
    tensors[key] = tensors[key].clone()
    tensors[key].view(-1)[0] += 1.0
    save_file(tensors, weights, metadata={"format": "pt"})
    os.utime(weights, ns=(old_mtime + 5_000_000_000, old_mtime + 5_000_000_000))
    changed = fingerprint.folder_fingerprint(str(folder))
    assert changed != before and reads == ["model.safetensors"]
    # an adapter's weights are part of it too; a Trainer's settings pickle is not
    (adapter / "adapter_model.safetensors").write_bytes(b"adapter v2")
    assert fingerprint.folder_fingerprint(str(folder)) != changed
    now = fingerprint.folder_fingerprint(str(folder))
    (folder / "training_args.bin").write_bytes(b"other trainer settings")
    assert fingerprint.folder_fingerprint(str(folder)) == now


def test_an_adapter_folders_fingerprint_covers_its_base(tiny_bert, tmp_path):
    """An adapter-only folder (no model.safetensors) is loaded over its base: the base's weights count too."""
    from types import SimpleNamespace

    base = shutil.copytree(tiny_bert, tmp_path / "base")
    registry.register(LOCAL, ModelEntry("fp-base", "local", str(base), "classifier"))
    adapter = tmp_path / "adapter-only"
    adapter.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        if (base / name).exists():
            shutil.copy(base / name, adapter / name)
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "fp-base"}))
    (adapter / "adapter_model.safetensors").write_bytes(b"lora weights")
    entry = ModelEntry("fp-adapter", "local", str(adapter), "classifier")
    assert registry.adapter_base(LOCAL, entry) == str(base)
    loaded = SimpleNamespace(entry=entry, head="classifier", dtype="float32", head_is_new=False,
                             model=SimpleNamespace(config=SimpleNamespace(_name_or_path=str(base))))
    before = fingerprint.model_fingerprint(loaded, LOCAL)
    assert before != fingerprint.model_fingerprint(loaded)  # without an actor the base is not resolved
    _copy_with_one_weight_changed(tiny_bert, tmp_path / "changed")
    shutil.copy(tmp_path / "changed" / "model.safetensors", base / "model.safetensors")
    assert fingerprint.model_fingerprint(loaded, LOCAL) != before


def test_model_rows_that_share_a_name_stay_apart(tiny_bert, binary_reviews, tmp_path):
    b = _copy_with_one_weight_changed(tiny_bert, tmp_path / "other")
    s = cls_suite(binary_reviews, limit=6)
    (ra,) = runner.run_suite(LOCAL, s, [str(tiny_bert)])
    (rb,) = runner.run_suite(LOCAL, s, [str(b)])
    rb.model = ra.model  # two different models shown under one name
    results = [ra, rb]
    wide = leaderboard.wide_table([r.summary() for r in results])
    assert list(wide["model"]) == [ra.model, f"{ra.model} (2)"]  # two rows, not one
    assert list(wide["sent · accuracy (value)"]) == [ra.metrics["accuracy"], rb.metrics["accuracy"]]
    table = leaderboard.drilldown(results, "sent")
    assert not [c for c in table.columns if c.endswith(("_x", "_y"))], list(table.columns)
    assert list(table[f"{ra.model} (2): confidence"]) == [r["confidence"] for r in rb.per_example]
    fig = plots.per_class_f1(results, "sent")
    assert [t.name for t in fig.data] == [ra.model, f"{ra.model} (2)"]
    bars = plots.task_bars([r.summary() for r in results])
    assert [t.name for t in bars.data] == [ra.model, f"{ra.model} (2)"]
    assert f"{ra.model} (2)" in report.html_report(results)


def test_a_copy_under_another_name_is_served_the_cached_result_under_its_own_name(tiny_bert, binary_reviews):
    registry.register(LOCAL, ModelEntry("copy-a", "local", str(tiny_bert), "classifier"))
    registry.register(LOCAL, ModelEntry("copy-b", "local", str(tiny_bert), "classifier"))
    job_id = _tiny_run(binary_reviews, ["copy-a", "copy-b"])
    results = leaderboard.run_results(LOCAL, cache.get_run(LOCAL, job_id))
    assert [r.model for r in results] == ["copy-a", "copy-b"] and results[0].key == results[1].key
    assert any("Computed for copy-a" in n for n in results[1].notes)
    assert "copy-b / sent: cached" in "\n".join(jobs.logs(LOCAL, job_id))
    assert list(leaderboard.wide_table(results)["model"]) == ["copy-a", "copy-b"]


# ---------------------------------------------------------------- 2. the split a task scores
@pytest.fixture
def split_reviews():
    """The 12 reviews, half of them (stratified) in the test split, none in validation."""
    data.import_dataset(LOCAL, "s-reviews", "r.csv", _csv(REVIEWS, ["text", "label"]), {"text": "text", "label": "label"},
                        data.Recipe(train=0.5, validation=0.0))
    return "s-reviews"


def test_a_task_scores_the_test_split_by_default_and_says_so(tiny_bert, split_reviews, binary_reviews, tmp_path,
                                                             capsys):
    from llm_lab import cli

    test_rows = data.load_frame(LOCAL, split_reviews, "test").sort_values("id")
    assert 0 < len(test_rows) < len(REVIEWS)
    (res,) = runner.run_suite(LOCAL, cls_suite(split_reviews), [str(tiny_bert)])
    assert res.repro.split == "test" and res.repro.rows == len(test_rows) and res.repro.dataset_rows == len(REVIEWS)
    assert [r["id"] for r in res.per_example] == test_rows["id"].tolist()
    # the accuracy is that of the test rows only, from an independent forward pass
    probs = _direct_probs(tiny_bert, test_rows["text"].tolist())
    truth = test_rows["label"].map({"negative": 0, "positive": 1}).to_numpy()
    assert res.metrics["accuracy"] == pytest.approx(float(np.mean(probs.argmax(axis=1) == truth)))
    assert res.scored == f"{split_reviews}: test split, {len(test_rows)} of {len(REVIEWS)} rows"

    # the split is part of the cache key: every row, or the train split, is another result
    (whole,) = runner.run_suite(LOCAL, cls_suite(split_reviews, split="all"), [str(tiny_bert)])
    (train,) = runner.run_suite(LOCAL, cls_suite(split_reviews, split="train"), [str(tiny_bert)])
    assert len({res.key, whole.key, train.key}) == 3 and not whole.cached and not train.cached
    assert (whole.repro.split, whole.repro.rows, train.repro.split) == ("all", len(REVIEWS), "train")
    (again,) = runner.run_suite(LOCAL, cls_suite(split_reviews), [str(tiny_bert)])
    assert again.cached and again.key == res.key and again.repro.split == "test"
    spec = cls_suite(split_reviews).tasks[0]
    keys = {runner.result_key("m", "d", spec, {}, split=s) for s in ("test", "all", "train")}
    assert len(keys) == 3

    # a dataset without a test split is scored whole, and the result says so
    (nosplit,) = runner.run_suite(LOCAL, cls_suite(binary_reviews), [str(tiny_bert)])
    assert nosplit.repro.split == "all" and nosplit.repro.rows == len(REVIEWS)
    assert any("has no test split" in n for n in nosplit.notes)
    # a split the dataset does not have is an error for that task, naming the splits it has
    (missing,) = runner.run_suite(LOCAL, cls_suite(split_reviews, split="validation"), [str(tiny_bert)])
    assert not missing.ok and "no rows in split 'validation'" in missing.error

    # shown: the long table (CSV), the CLI's output, the report
    long = leaderboard.long_table([res.summary(), whole.summary()])
    assert list(long["split"]) == ["test", "all"] and list(long["rows"]) == [len(test_rows), len(REVIEWS)]
    suite_file = tmp_path / "s.yaml"
    suite_file.write_text(f"name: cli\ntasks:\n  - {{name: sent, type: classification, dataset: {split_reviews}}}\n")
    assert cli.main(["bench", "--suite", str(suite_file), "--model", str(tiny_bert)]) == 0
    printed = capsys.readouterr().out
    assert f"rows scored:\n  sent: {split_reviews}: test split, {len(test_rows)} of {len(REVIEWS)} rows" in printed
    assert f"test split, {len(test_rows)} of {len(REVIEWS)} rows" in report.html_report([res])


def test_demo_classifier_scores_the_held_out_reviews(tmp_path):
    """The report's case: demo-classifier on demo-reviews scored all 143 reviews, 114 of which train a model."""
    from llm_lab.tiny import make_tiny_bert

    model = make_tiny_bert(tmp_path / "tiny3", labels=("negative", "neutral", "positive"))
    info = data.get(LOCAL, "demo-reviews")
    assert info.splits["train"] > info.splits["test"] > 0
    sentiment, speed = runner.run_suite(LOCAL, suites.load(LOCAL, "demo-classifier"), [str(model)])
    assert sentiment.ok and speed.ok, (sentiment.error, speed.error)
    test_ids = data.load_frame(LOCAL, "demo-reviews", "test")["id"]
    assert sentiment.repro.split == "test" and len(sentiment.per_example) == info.splits["test"]
    assert sorted(r["id"] for r in sentiment.per_example) == sorted(test_ids.tolist())
    assert speed.repro.split == "all"  # speed measures time on any rows
    assert [t.split_shown for t in suites.load(LOCAL, "demo-classifier").tasks] == \
        ["test (default; all rows if none)", "all (speed)"]


def test_suite_split_must_be_text():
    with pytest.raises(suites.SuiteError, match="field `tasks.0.split`"):
        suites.parse("name: s\ntasks:\n  - {name: a, type: speed, dataset: d, split: [test]}\n")
    assert suites.parse("name: s\ntasks:\n  - {name: a, type: speed, dataset: d, split: all}\n").tasks[0].split == "all"


# ---------------------------------------------------------------- 3. and 4. the page
def _selected(at) -> str:
    return at.selectbox(key="b_run_pick").value


def test_html_report_is_built_when_asked_and_downloaded_without_errors(tiny_bert, split_reviews, monkeypatch):
    job_id = _tiny_run(split_reviews, [str(tiny_bert)], limit=None)
    built = []
    real = report.html_report
    monkeypatch.setattr(report, "html_report", lambda *a, **k: built.append(1) or real(*a, **k))
    at = app_test("views/benchmarks.py")
    at.query_params["result"] = job_id
    at.run()
    no_exceptions(at)
    assert _selected(at) == job_id and built == []  # not built until asked
    assert not [b for b in at.get("download_button") if b.label == "Download HTML report"]
    at.button(key="b_html_build").click().run()
    no_exceptions(at)
    assert built == [1]
    run_id, html = at.session_state["b_html_report"]
    assert run_id == job_id and html.startswith("<!doctype html>") and "test split" in html
    assert [b.label for b in at.get("download_button") if b.label == "Download HTML report"]
    at.button(key="b_html_build").click().run()  # built again: was "st.session_state['b_html'] is read-only"
    no_exceptions(at)
    next(b for b in at.get("download_button") if b.label == "Download HTML report").click().run()
    no_exceptions(at)
    at.radio(key="b_dd_show").set_value("errors").run()  # any later action: was "'bool' object is not subscriptable"
    no_exceptions(at)
    assert built == [1, 1]  # reruns do not rebuild it
    captions = " ".join(c.value for c in at.caption)
    assert "Rows scored:" in captions and "test split" in captions  # which rows the numbers are of


def test_the_run_that_just_finished_is_selected(tiny_bert, binary_reviews):
    registry.register(LOCAL, ModelEntry("tiny-pick", "local", str(tiny_bert), "classifier"))
    first = _tiny_run(binary_reviews, ["tiny-pick"], limit=3)
    at = app_test("views/benchmarks.py").run()
    no_exceptions(at)
    assert _selected(at) == first
    at.multiselect(key="b_models").set_value(["tiny-pick"])
    at.number_input(key="b_limit_run").set_value(4).run()
    at.button(key="b_run").click().run()  # jobs run inline in tests: it has finished when the page goes on
    no_exceptions(at)
    second = at.query_params["bench_job"]
    assert second != first and jobs.get(LOCAL, second)["status"] == "succeeded"
    assert _selected(at) == second
    at.selectbox(key="b_run_pick").set_value(first).run()  # the person looks at the older run: it stays
    assert _selected(at) == first
    at.number_input(key="b_limit_run").set_value(5).run()
    at.button(key="b_run").click().run()
    third = at.query_params["bench_job"]
    assert third not in (first, second) and _selected(at) == third

    # a new session on an address that shows an older run and watches a job that has finished since
    # (a reload while it ran): the watched job's run is shown, and the address follows
    fresh = app_test("views/benchmarks.py")
    fresh.query_params["result"] = first
    fresh.query_params["bench_job"] = second
    fresh.run()
    no_exceptions(fresh)
    assert _selected(fresh) == second and fresh.query_params["result"] == second
