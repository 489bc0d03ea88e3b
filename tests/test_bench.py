"""Benchmark suites: YAML validation, runner correctness across batch sizes, cache, resume, bad input."""
import json
import math

import numpy as np
import pytest
import torch

from llm_lab import batching, data, jobs
from llm_lab.access import LOCAL
from llm_lab.bench import cache, leaderboard, runner, suite as suites
from llm_lab.errors import JobCancelled
from llm_lab.explain.links import attribution_link
from tests.conftest import ROOT

REVIEWS = [("great product, works perfectly", "positive"), ("terrible, it broke after a day", "negative"),
           ("I love it", "positive"), ("awful customer service and a cracked lid when it arrived at my door", "negative"),
           ("does exactly what it says, very happy with the purchase overall", "positive"), ("meh", "negative"),
           ("the best kettle I have owned", "positive"), ("stopped working", "negative"),
           ("fine", "positive"), ("would not buy again, the handle melted on the second use and smelled", "negative"),
           ("five stars", "positive"), ("returned it", "negative")]
DOCS = ["A tokenizer cuts text into pieces the model knows.",
        "The validation split is for choosing settings such as the learning rate; " * 2,
        "Short.", "Perplexity is the exponential of the mean negative log-likelihood per token."]
DOCS = [d.strip() for d in DOCS]  # the store strips white space


def _csv(rows, header):
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode()


@pytest.fixture
def binary_reviews():
    data.import_dataset(LOCAL, "c-reviews", "r.csv", _csv(REVIEWS, ["text", "label"]), {"text": "text", "label": "label"},
                        data.Recipe(train=1.0, validation=0.0))
    return "c-reviews"


@pytest.fixture
def docs():
    data.import_dataset(LOCAL, "c-docs", "d.csv", _csv([(d,) for d in DOCS], ["text"]), {"text": "text"},
                        data.Recipe(train=1.0, validation=0.0))
    return "c-docs"


def _suite(text: str):
    return suites.parse(text, "test")


def cls_suite(dataset, **extra):
    lines = "".join(f"    {k}: {v}\n" for k, v in extra.items())
    return _suite(f"name: t\ntasks:\n  - name: sent\n    type: classification\n    dataset: {dataset}\n{lines}")


# ---------------------------------------------------------------- YAML
@pytest.mark.parametrize("text, expected", [
    ("name: s\ntasks:\n  - name: a\n    type: classification\n    dataset: d\n    colums: {text: text}\n",
     "line 6, field `tasks.0.colums`: unknown task field"),
    ("name: s\ntasks:\n  - name: a\n    type: clasification\n    dataset: d\n", "line 4, field `tasks.0.type`"),
    ("name: s\ntasks:\n  - name: a\n    type: generation\n    dataset: d\n    metrics: [accuracy]\n",
     "line 6, field `tasks.0.metrics.0`: metric 'accuracy' does not apply to a generation task"),
    ("name: s\ntasks:\n  - name: a\n    type: classification\n    dataset: d\n    limit: -3\n",
     "line 6, field `tasks.0.limit`"),
    ("name: s\ntasks:\n  - name: a\n    type: classification\n    dataset: d\n    prompt: 'Q: {question}'\n",
     "line 6, field `tasks.0.prompt`: placeholder(s) {question}"),
    ("name: s\ntasks: [\n  {name: a, type: speed\n", "is not valid YAML (line"),
    ("name: s\ntasks:\n  - name: a\n    type: speed\n    dataset: d\n  - name: a\n    type: speed\n    dataset: d\n",
     "line 6, field `tasks.1.name`: task name 'a' is used twice"),
    ("name: s\ntasks:\n  - name: a\n    type: multiple_choice\n    dataset: d\n", "line 3, field `tasks.0.choices`"),
    ("name: s\ntasks:\n  - name: a\n    type: generation\n    dataset: d\n    generation: {max_new_tokens: 0}\n",
     "line 6, field `tasks.0.generation`: max_new_tokens must be at least 1"),
    ("tasks: []\n", "field `name`"),
    ("", "is empty"),
])
def test_yaml_validation_names_line_and_field(text, expected):
    with pytest.raises(suites.SuiteError) as err:
        suites.parse(text, "test", "s.yaml")
    assert expected in str(err.value), str(err.value)


def test_builtin_suites_parse_and_save_roundtrip():
    names = suites.builtin_names()
    assert {"demo-classifier", "demo-causal-lm"} <= set(names)
    for name in names:
        s = suites.load(LOCAL, name)
        assert s.tasks and s.source == "builtin"
    built = suites.to_yaml("mine", [{"name": "x", "type": "speed", "dataset": "demo-docs", "limit": 5}])
    saved = suites.save(LOCAL, built)
    assert suites.load(LOCAL, "mine").tasks[0].limit == 5 and saved.source == "saved"
    with pytest.raises(suites.SuiteError, match="built-in suite"):
        suites.save(LOCAL, built.replace("name: mine", "name: demo-classifier"))


# ---------------------------------------------------------------- classification
def _direct_probs(model_dir, texts, max_length=128):
    """Independent computation: one example at a time, no padding, plain transformers."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    out = []
    with torch.no_grad():
        for t in texts:
            enc = tok(t, return_tensors="pt", truncation=True, max_length=max_length)
            out.append(torch.softmax(model(**enc).logits, -1)[0].numpy())
    return np.array(out)


def test_classification_matches_direct_forward_for_every_batch_size(tiny_bert, binary_reviews):
    s = cls_suite(binary_reviews)
    expected = _direct_probs(tiny_bert, [t for t, _ in REVIEWS])
    outputs = []
    for bs in (1, 3, 32):
        (res,) = runner.run_suite(LOCAL, s, [str(tiny_bert)], use_cache=False, batch_size=bs)
        assert res.status == "ok", res.error
        rows = res.per_example
        conf = np.array([r["confidence"] for r in rows])
        np.testing.assert_allclose(conf, expected.max(axis=1), atol=2e-4)
        labels = ["negative", "positive"]
        assert [r["prediction"] for r in rows] == [labels[i] for i in expected.argmax(axis=1)]
        outputs.append(res)
    for other in outputs[1:]:
        assert other.metrics == pytest.approx(outputs[0].metrics, abs=1e-9)
    res = outputs[0]
    truth = [l for _, l in REVIEWS]
    preds = [r["prediction"] for r in res.per_example]
    assert res.metrics["accuracy"] == pytest.approx(np.mean([p == t for p, t in zip(preds, truth)]))
    h = res.headline
    assert h.name == "accuracy" and h.low <= h.value <= h.high and h.higher_is_better
    repro = res.repro
    assert repro.dataset_hash == data.get(LOCAL, binary_reviews).content_hash
    assert len(repro.model_fingerprint) == 20 and repro.environment["packages"]["torch"]
    assert repro.seed == 0 and repro.suite_version == "1"


def test_cache_hit_and_new_key_on_changed_task(tiny_bert, binary_reviews):
    s = cls_suite(binary_reviews)
    (first,) = runner.run_suite(LOCAL, s, [str(tiny_bert)])
    (again,) = runner.run_suite(LOCAL, s, [str(tiny_bert)])
    assert not first.cached and again.cached and again.key == first.key
    assert again.per_example == first.per_example
    (other,) = runner.run_suite(LOCAL, cls_suite(binary_reviews, limit=5), [str(tiny_bert)])
    assert other.key != first.key and not other.cached and len(other.per_example) == 5


def test_interrupted_run_resumes_where_it_stopped(tiny_bert, binary_reviews):
    s = cls_suite(binary_reviews, batch_size=2)
    calls = []

    def stop_after_two_batches(done, total, message="", **kw):
        calls.append(done)
        if len(calls) == 3:  # start + two batches
            raise JobCancelled()

    with pytest.raises(JobCancelled):
        runner.run_suite(LOCAL, s, [str(tiny_bert)], progress=stop_after_two_batches)
    partial_files = list(cache.partial_dir().glob("*.json"))
    assert len(partial_files) == 1 and len(json.loads(partial_files[0].read_text())) == 4
    (resumed,) = runner.run_suite(LOCAL, s, [str(tiny_bert)])
    assert resumed.stats["resumed_outputs"] == 4
    assert not list(cache.partial_dir().glob("*.json"))
    (fresh,) = runner.run_suite(LOCAL, s, [str(tiny_bert)], use_cache=False)
    assert [r["confidence"] for r in resumed.per_example] == pytest.approx([r["confidence"] for r in fresh.per_example], abs=1e-5)


def test_auto_batch_size_halves_on_out_of_memory():
    seen = []

    def forward(batch):
        if len(batch) > 5:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        seen.extend(batch)
        return batch

    size = batching.run_batched(list(range(100)), np.arange(100), forward, 64)
    assert size == 4 and sorted(seen) == list(range(100))  # 64 -> 32 -> 16 -> 8 -> 4, then kept
    seen.clear()
    budget = batching.run_batched(list(range(100)), np.full(100, 10), forward, 64, token_budget=640)
    assert budget == 4 and sorted(seen) == list(range(100))  # the token budget halves with the batch
    with pytest.raises(ValueError):
        batching.run_batched([0, 1], [1, 1], lambda b: (_ for _ in ()).throw(ValueError("bug")), 8)


# ---------------------------------------------------------------- bad input: one task fails, the rest runs
def test_bad_inputs_give_clear_messages_and_the_suite_goes_on(tiny_bert, tiny_gpt2, binary_reviews, docs):
    text = f"""name: bad
tasks:
  - {{name: ok, type: classification, dataset: {binary_reviews}}}
  - {{name: unknown-labels, type: classification, dataset: demo-reviews}}
  - {{name: no-column, type: classification, dataset: {docs}}}
  - {{name: empty-split, type: classification, dataset: {binary_reviews}, split: test}}
  - {{name: no-lm-head, type: language_modeling, dataset: {docs}}}
  - {{name: missing-dataset, type: speed, dataset: nope}}
"""
    results = runner.run_suite(LOCAL, _suite(text), [str(tiny_bert)])
    by = {r.task: r for r in results}
    assert by["ok"].status == "ok"
    assert "'neutral'" in by["unknown-labels"].error and "label_map" in by["unknown-labels"].error
    assert "has no label (column 'label')" in by["no-column"].error
    assert "no rows in split 'test'" in by["empty-split"].error
    assert "needs log-probabilities of a given text" in by["no-lm-head"].error
    assert "No dataset named 'nope'" in by["missing-dataset"].error
    (gpt_cls,) = runner.run_suite(LOCAL, cls_suite(binary_reviews), [str(tiny_gpt2)])
    assert "causal LM without a sequence-classification head" in gpt_cls.error
    table = leaderboard.text_table(results)
    assert "errors:" in table and "unknown-labels" in table


def test_empty_generation_is_an_error_for_that_task(tiny_gpt2, monkeypatch):
    from llm_lab import generation
    from llm_lab.bench.tasks import generation as gen_task

    def silent(loaded, prompts, settings):
        return [generation.GenerationResult(p, "", 0, 0.01, 0.0, None) for p in prompts]

    monkeypatch.setattr(gen_task, "generate", silent)
    s = _suite("name: g\ntasks:\n  - {name: answers, type: generation, dataset: demo-prompts, limit: 3}\n")
    (res,) = runner.run_suite(LOCAL, s, [str(tiny_gpt2)])
    assert res.status == "error" and "produced no text for any of the 3 prompts" in res.error


# ---------------------------------------------------------------- causal LM tasks
def _direct_logliks(model_dir, text):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    ids = [tok.bos_token_id] + tok(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0, :-1], -1)
    return logp.gather(-1, torch.tensor(ids[1:]).unsqueeze(-1)).squeeze(-1).numpy()


def test_perplexity_matches_direct_computation_and_batch_size(tiny_gpt2, docs):
    s = _suite(f"name: lm\ntasks:\n  - {{name: ppl, type: language_modeling, dataset: {docs}}}\n")
    per_text = [_direct_logliks(tiny_gpt2, d) for d in DOCS]
    expected = math.exp(-np.concatenate(per_text).mean())
    values = []
    for bs in (1, 4):
        (res,) = runner.run_suite(LOCAL, s, [str(tiny_gpt2)], use_cache=False, batch_size=bs)
        assert res.status == "ok", res.error
        values.append(res.metrics["perplexity"])
    assert values[0] == pytest.approx(expected, rel=1e-4) and values[1] == pytest.approx(expected, rel=1e-4)
    nbytes = sum(len(d.encode()) for d in DOCS)
    assert res.metrics["bits_per_byte"] == pytest.approx(-np.concatenate(per_text).sum() / math.log(2) / nbytes, rel=1e-4)
    # windows shorter than the long text: disjoint windows (lm-eval's scheme) and a sliding window
    short = _suite(f"name: lm\ntasks:\n  - {{name: ppl, type: language_modeling, dataset: {docs}, max_length: 16}}\n")
    slide = _suite(f"name: lm\ntasks:\n  - {{name: ppl, type: language_modeling, dataset: {docs}, max_length: 16, stride: 4}}\n")
    (a,) = runner.run_suite(LOCAL, short, [str(tiny_gpt2)])
    (b,) = runner.run_suite(LOCAL, slide, [str(tiny_gpt2)])
    assert a.metrics["tokens"] == b.metrics["tokens"] == len(np.concatenate(per_text))
    assert a.metrics["perplexity"] != pytest.approx(expected, rel=1e-6)  # less context per token than one pass


def test_lm_windows_score_every_token_once():
    from llm_lab.inference.loglikelihood import windows

    ids = list(range(10, 47))
    for context, stride in ((8, 8), (8, 3), (64, 64)):
        ws = windows(ids, 0, context, stride)
        scored = [t for inp, tgt, n in ws for t in tgt[-n:]]
        assert scored == ids
        assert all(len(inp) <= context and len(inp) == len(tgt) for inp, tgt, n in ws)
        for inp, tgt, n in ws:
            assert inp[1:] == tgt[:-1]


def test_multiple_choice_and_generation_on_tiny_gpt(tiny_gpt2, binary_reviews):
    s = _suite(f"""name: mc
tasks:
  - name: choice
    type: multiple_choice
    dataset: {binary_reviews}
    prompt: "Review: {{text}}\\nSentiment:"
    choices: [negative, positive]
  - name: answers
    type: generation
    dataset: demo-prompts
    limit: 4
    generation: {{max_new_tokens: 4}}
    metrics: [exact_match, chrf]
""")
    mc, gen = runner.run_suite(LOCAL, s, [str(tiny_gpt2)])
    assert mc.status == "ok" and gen.status == "ok", (mc.error, gen.error)
    row = mc.per_example[0]
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_gpt2)
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2).eval()
    ctx = tok(f"Review: {REVIEWS[0][0]}\nSentiment:")["input_ids"]
    cont = tok(" positive")["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ctx + cont])).logits[0], -1)
    direct = sum(float(logp[len(ctx) - 1 + k, c]) for k, c in enumerate(cont))
    assert row["loglik"]["positive"] == pytest.approx(direct, abs=1e-3)
    preds = [r["prediction"] for r in mc.per_example]
    assert mc.metrics["accuracy"] == pytest.approx(np.mean([p == l for p, (_, l) in zip(preds, REVIEWS)]))
    assert len(gen.per_example) == 4 and "chrf" in gen.metrics


# ---------------------------------------------------------------- typed results and their JSON
OLD_OK = {  # a result as the runner stored it before TaskResult: plain dict, headline with lower_is_better
    "key": "abc123", "model": "m", "suite": "s", "suite_version": "1", "suite_digest": "d1", "task": "ppl",
    "type": "language_modeling", "status": "ok", "error": None, "metrics": {"perplexity": 12.5, "tokens": 40},
    "details": {"context": 64, "stride": 64},
    "headline": {"name": "perplexity", "value": 12.5, "low": 11.0, "high": 14.0, "lower_is_better": True,
                 "confidence": 0.95, "n_resamples": 1000},
    "per_example": [{"id": 1, "text": "a", "tokens": 4, "nll": 9.1, "perplexity": 9.8}], "labels": None,
    "notes": ["a note"], "stats": {"examples": 1, "seconds": 0.1, "examples_per_s": 10.0, "resumed_outputs": 0},
    "seconds": 0.1, "created_at": 1700000000.0, "cached": False,
    "repro": {"model": "m", "model_source": "local", "model_location": "/x", "model_fingerprint": "f" * 20,
              "head": "causal-lm", "head_is_new": False, "dataset": "docs", "dataset_hash": "h", "dataset_fingerprint": "fp",
              "split": None, "rows": 1, "task_definition": {"name": "ppl"}, "task_hash": "th", "suite": "s",
              "suite_version": "1", "suite_digest": "d1", "seed": 0, "settings": {"device": "cpu", "dtype": "float32"},
              "environment": {"packages": {"torch": "2"}}},
}
OLD_ERROR = {"key": "err-1", "model": "m", "suite": "s", "suite_version": "1", "task": "cls", "type": "classification",
             "status": "error", "error": "no head", "metrics": {}, "headline": {}, "per_example": [], "notes": [],
             "created_at": 1700000001.0, "cached": False}


def _store_old(result: dict) -> None:
    """Write a result the way the old cache.put did (file + row with the summary dict)."""
    from llm_lab import store

    store.atomic_write_bytes(cache.results_dir() / f"{result['key']}.json", json.dumps(result).encode())
    head = result.get("headline") or {}
    summary = {k: v for k, v in result.items() if k != "per_example"}
    store.execute("INSERT OR REPLACE INTO bench_results (key, model, suite, task, type, status, headline_name, "
                  "headline, low, high, error, created_at, seconds, summary) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                  (result["key"], result["model"], result["suite"], result["task"], result["type"], result["status"],
                   head.get("name"), head.get("value"), head.get("low"), head.get("high"), result.get("error"),
                   result["created_at"], result.get("seconds"), store.to_json(summary)))


def test_task_result_json_round_trip():
    from llm_lab.bench.result import Headline, TaskResult

    r = TaskResult.from_dict(OLD_OK)
    assert r.headline == Headline("perplexity", 12.5, 11.0, 14.0, False, 0.95, 1000) and r.headline.lower_is_better
    assert r.repro.dataset == "docs" and r.repro.environment["packages"]["torch"] == "2" and r.ok
    again = TaskResult.from_dict(json.loads(json.dumps(r.to_dict())))
    assert again == r
    assert "per_example" not in r.to_dict(per_example=False) and r.summary().per_example == []
    err = TaskResult.from_dict(OLD_ERROR)
    assert err.headline is None and err.repro is None and not err.ok and err.error == "no head"
    assert TaskResult.from_dict(json.loads(json.dumps(err.to_dict()))) == err
    # keys a later version adds are kept and written back
    newer = TaskResult.from_dict(dict(OLD_OK, something_new={"x": 1}))
    assert newer.extra == {"something_new": {"x": 1}} and newer.to_dict()["something_new"] == {"x": 1}
    # a headline stored without any direction gets it from the metrics table
    assert not Headline.from_dict({"name": "latency_p50_ms", "value": 3.0}).higher_is_better
    assert Headline.from_dict({"name": "accuracy", "value": 0.5}).higher_is_better


def test_old_stored_results_still_load():
    _store_old(OLD_OK)
    _store_old(OLD_ERROR)
    hit = cache.get(LOCAL, "abc123")
    assert hit.metrics["perplexity"] == 12.5 and hit.headline.lower_is_better and len(hit.per_example) == 1
    assert cache.get(LOCAL, "err-1") is None  # errors are never served from the cache
    full = leaderboard.full_results(LOCAL, ["abc123", "err-1"])
    assert [r.status for r in full] == ["ok", "error"] and full[1].headline is None
    summaries = cache.summaries(LOCAL, ["abc123", "err-1"])
    assert summaries[0].per_example == [] and summaries[0].repro.model_fingerprint == "f" * 20
    long = leaderboard.long_table(summaries)
    assert list(long["lower_is_better"]) == [True, False] and long["value"].iloc[0] == 12.5
    assert leaderboard.higher_is_better(summaries) == {"ppl · perplexity (value)": False, "cls (value)": True}
    assert "errors:" in leaderboard.text_table(summaries)
    # stored again by this version, it reads back the same
    cache.put(LOCAL, hit)
    assert cache.get(LOCAL, "abc123") == hit and cache.summaries(LOCAL, ["abc123"])[0] == hit.summary()


def test_task_types_and_metric_directions():
    from llm_lab import metrics
    from llm_lab.bench.suite import TASK_TYPES

    assert TASK_TYPES["classification"].roles_needed == ("text", "label") and TASK_TYPES["classification"].headline == "accuracy"
    assert TASK_TYPES["generation"].default_metrics == ("exact_match", "chrf", "rouge")
    assert {n for n, t in TASK_TYPES.items() if t.model_needs.head == "causal-lm"} == {"language_modeling", "generation",
                                                                                  "multiple_choice", "lm_eval"}
    assert all(name == t.name for name, t in TASK_TYPES.items())
    with pytest.raises(Exception):
        TASK_TYPES["speed"].headline = "x"  # frozen
    assert not metrics.higher_is_better("perplexity") and not metrics.higher_is_better("peak_memory_mb")
    assert metrics.higher_is_better("accuracy") and metrics.higher_is_better("examples_per_s")


# ---------------------------------------------------------------- job, leaderboard, export, CLI
def test_job_leaderboard_drilldown_and_exports(tiny_bert, binary_reviews):
    from llm_lab.bench import jobs as bench_jobs, report

    text = f"name: j\ntasks:\n  - {{name: sent, type: classification, dataset: {binary_reviews}}}\n" \
           f"  - {{name: fast, type: speed, dataset: {binary_reviews}, limit: 4, repeats: 1}}\n"
    job_id = bench_jobs.submit(LOCAL, text, [str(tiny_bert)])
    done = jobs.get(LOCAL, job_id)
    assert done["status"] == "succeeded", done["error"]
    keys = bench_jobs.keys_of(LOCAL, done)
    assert cache.runs(LOCAL)[0]["id"] == job_id and len(keys) == 2
    results = leaderboard.full_results(LOCAL, keys)
    wide = leaderboard.wide_table(results)
    assert wide.shape[0] == 1 and any("sent" in c for c in wide.columns)
    errors = leaderboard.drilldown(results, "sent", "errors")
    model_col = f"{tiny_bert}: correct"
    assert not errors[model_col].any() and len(errors) == sum(not r["correct"] for r in results[0].per_example)
    link = errors.filter(like="attributions").iloc[0, 0] if len(errors) else attribution_link("m", dataset="d", example=3)
    assert link.startswith("/attributions?model=") and "example=" in link
    csv = leaderboard.export_csv(results).decode()
    assert csv.splitlines()[0].startswith("model,task,type,status,metric,value,low,high")
    html = report.html_report(results)
    assert "<script src=" not in html and "Plotly.newPlot" in html and "sent" in html


def test_cli_bench_writes_results_and_exit_code(tiny_bert, tiny_gpt2, binary_reviews, tmp_path, capsys):
    from llm_lab import cli

    suite_file = tmp_path / "s.yaml"
    suite_file.write_text(f"name: cli\ntasks:\n  - {{name: sent, type: classification, dataset: {binary_reviews}}}\n")
    out = tmp_path / "r.json"
    assert cli.main(["bench", "--suite", str(suite_file), "--model", str(tiny_bert), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "sent · accuracy" in printed
    saved = json.loads(out.read_text())["results"]
    assert saved[0]["status"] == "ok" and len(saved[0]["per_example"]) == len(REVIEWS)
    assert cli.main(["bench", "--suite", str(suite_file), "--model", str(tiny_gpt2)]) == 1
    assert cli.main(["bench", "--list"]) == 0


# ---------------------------------------------------------------- page
def test_benchmarks_page_runs_a_suite_and_shows_results(tiny_bert, binary_reviews):
    from tests.conftest import app_test, no_exceptions

    at = app_test("views/benchmarks.py").run()
    no_exceptions(at)
    assert any("No benchmark results yet" in i.value for i in at.info)
    at.radio(key="b_source").set_value("Build one").run()
    at.selectbox(key="b_type").set_value("classification")
    at.selectbox(key="b_dataset").set_value(binary_reviews)
    at.number_input(key="b_limit").set_value(6)
    at.button[0].click().run()  # the form's "Add task"
    no_exceptions(at)
    at.multiselect(key="b_models").set_value([str(tiny_bert)]) if str(tiny_bert) in at.multiselect(key="b_models").options else None
    assert at.session_state["b_built"][0]["limit"] == 6
    # run through the job system (inline in tests) with the model given by path
    from llm_lab.bench import jobs as bench_jobs

    job_id = bench_jobs.submit(LOCAL, suites.to_yaml("page", at.session_state["b_built"]), [str(tiny_bert)])
    at.query_params["bench_job"] = job_id
    at.run()
    no_exceptions(at)
    assert at.dataframe, "the leaderboard is shown"
    charts = at.get("plotly_chart")
    assert len(charts) >= 2
    spec = json.loads(charts[0].proto.spec)
    assert spec["data"][0]["y"][0] == pytest.approx(leaderboard.full_results(LOCAL, bench_jobs.keys_of(LOCAL, jobs.get(LOCAL, job_id)))[0].metrics["accuracy"])
    at.radio(key="b_dd_show").set_value("errors").run()
    no_exceptions(at)
