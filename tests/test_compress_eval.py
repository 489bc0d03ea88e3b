"""Compress-then-evaluate: the paired statistics on cases with known answers, the evaluation job end to end on
tiny models (inline job mode), its numbers against independent computations, the Pareto chart."""
import json
import math
import shutil
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from llm_lab.stats import equivalence as stats

Z90 = 1.6448536269514722   # the 95% quantile of the standard normal: the two-sided 90% interval


# ---------------------------------------------------------------- McNemar
def exact_mcnemar(r: int, w: int) -> float:
    """The two-sided exact McNemar p-value written out: twice the binomial(r + w, 1/2) tail at min(r, w)."""
    n = r + w
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(r, w) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


@pytest.mark.parametrize("r,w", [(0, 0), (1, 0), (5, 5), (10, 2), (2, 10), (30, 18), (0, 7), (100, 70)])
def test_mcnemar_is_the_exact_binomial_sum(r, w):
    assert stats.mcnemar_exact(r, w) == pytest.approx(exact_mcnemar(r, w), rel=1e-10, abs=1e-15)
    parent = [True] * r + [False] * w + [True] * 20 + [False] * 5
    variant = [False] * r + [True] * w + [True] * 20 + [False] * 5
    out = stats.paired(parent, variant)
    assert (out.right_to_wrong, out.wrong_to_right) == (r, w)
    assert out.mcnemar_p == pytest.approx(exact_mcnemar(r, w), rel=1e-10, abs=1e-15)


def test_flips_and_identical_predictions_are_counted_like_a_plain_tally():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, 500)
    parent_pred = np.where(rng.random(500) < 0.8, labels, rng.integers(0, 3, 500))
    variant_pred = np.where(rng.random(500) < 0.9, parent_pred, rng.integers(0, 3, 500))
    out = stats.paired(parent_pred == labels, variant_pred == labels, parent_pred, variant_pred)
    tally = Counter(zip((parent_pred == labels).tolist(), (variant_pred == labels).tolist()))
    assert out.both_right == tally[(True, True)] and out.both_wrong == tally[(False, False)]
    assert out.right_to_wrong == tally[(True, False)] and out.wrong_to_right == tally[(False, True)]
    assert out.identical == int((parent_pred == variant_pred).sum())
    assert out.identical_share == pytest.approx(float(np.mean(parent_pred == variant_pred)))
    assert out.parent_accuracy == pytest.approx(float(np.mean(parent_pred == labels)))
    assert out.variant_accuracy == pytest.approx(float(np.mean(variant_pred == labels)))
    assert out.difference == pytest.approx(out.variant_accuracy - out.parent_accuracy)


# ---------------------------------------------------------------- the equivalence verdict
def test_identical_predictions_on_many_examples_are_equivalent():
    correct = [True] * 2400 + [False] * 600
    out = stats.paired(correct, correct, margin=0.01)
    assert out.verdict == stats.EQUIVALENT
    # no discordant pair: the interval is ±z²/(n + z²) (Tango's score interval with r = w = 0)
    half = Z90 ** 2 / (3000 + Z90 ** 2)
    assert out.low == pytest.approx(-half, rel=1e-6) and out.high == pytest.approx(half, rel=1e-6)
    assert out.identical is None and out.mcnemar_p == 1.0


def test_many_right_to_wrong_flips_are_worse():
    parent = [True] * 900 + [False] * 100
    variant = [False] * 100 + [True] * 800 + [False] * 100       # 100 right→wrong, none back: −10 points
    out = stats.paired(parent, variant, margin=0.01)
    assert out.verdict == stats.WORSE
    assert out.difference == pytest.approx(-0.10) and out.high < -0.01
    assert out.mcnemar_p == pytest.approx(2 / 2 ** 100)


def test_few_examples_are_inconclusive_even_when_identical():
    correct = [True] * 5 + [False] * 5   # ten identical predictions at 50%: a point interval would call it equivalent
    out = stats.paired(correct, correct, margin=0.01)
    assert out.verdict == stats.INCONCLUSIVE
    assert out.high == pytest.approx(Z90 ** 2 / (10 + Z90 ** 2), rel=1e-6)
    # with no flip the interval is ±z²/(n + z²): inside ±1 point from n = 268 (99 z² = 267.9) on
    assert out.more_needed == 268
    assert stats.paired([True] * 134 + [False] * 134, [True] * 134 + [False] * 134).verdict == stats.EQUIVALENT
    assert stats.paired([True] * 133 + [False] * 134, [True] * 133 + [False] * 134).verdict == stats.INCONCLUSIVE
    assert "inconclusive (more data needed)" in out.summary() and "±1 points" in out.summary()


def test_a_clearly_better_variant_is_not_equivalent_either():
    parent = [False] * 200 + [True] * 800
    variant = [True] * 1000
    assert stats.paired(parent, variant, margin=0.05).verdict == stats.BETTER


def test_the_margin_decides_between_equivalent_and_inconclusive():
    parent = [True] * 1000 + [False] * 1000
    variant = [False] * 10 + [True] * 990 + [True] * 10 + [False] * 990   # 10 flips each way
    assert stats.paired(parent, variant, margin=0.05).verdict == stats.EQUIVALENT
    narrow = stats.paired(parent, variant, margin=0.003)
    assert narrow.verdict == stats.INCONCLUSIVE
    # at the same flip rates (0.5% each way), the interval fits inside ±0.3 points from `more_needed` on
    m = narrow.more_needed
    assert m > 2000
    for size, inside in ((m, True), (m - 1, False)):
        low, high = stats.tango_interval(size, 0.005 * size, 0.005 * size, 0.90)
        assert (-0.003 < low and high < 0.003) == inside


def _constrained_q_numerically(n, w, r, delta):
    """The maximum-likelihood right→wrong probability under difference `delta`, by maximising the multinomial
    likelihood numerically (independent of the closed form in stats._constrained_q)."""
    from scipy.optimize import minimize_scalar

    rest = n - w - r

    def nll(q):
        pw, pr = q + delta, q
        other = 1 - pw - pr
        if pw <= 0 or pr <= 0 or other <= 0:
            return np.inf
        return -(w * math.log(pw) + r * math.log(pr) + (rest * math.log(other) if rest else 0.0))

    lo, hi = max(0.0, -delta) + 1e-12, (1 - delta) / 2 - 1e-12
    return minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-12}).x


@pytest.mark.parametrize("n,w,r", [(50, 2, 12), (200, 9, 4), (1000, 30, 31), (40, 0, 3)])
def test_tango_interval_ends_where_the_score_test_rejects(n, w, r):
    """At each end of the 90% interval the score statistic, with the constrained MLE found numerically, is ±z."""
    low, high = stats.tango_interval(n, w, r, 0.90)
    for bound, expected in ((low, Z90), (high, -Z90)):
        q = _constrained_q_numerically(n, w, r, bound)
        assert q == pytest.approx(stats._constrained_q(n, w, r, bound), abs=1e-6)
        z = (w - r - n * bound) / math.sqrt(n * (2 * q + bound * (1 - bound)))
        assert z == pytest.approx(expected, abs=1e-4)
    assert low < (w - r) / n < high


@pytest.mark.parametrize("n,w,r,margin,alpha", [(300, 4, 6, 0.05, 0.05), (120, 3, 1, 0.05, 0.05),
                                                 (500, 10, 12, 0.03, 0.05), (500, 10, 12, 0.02, 0.05),
                                                 (80, 0, 0, 0.05, 0.025), (1000, 40, 25, 0.02, 0.05),
                                                 (200, 1, 9, 0.02, 0.05), (400, 30, 2, 0.03, 0.05)])
def test_the_verdict_is_the_two_one_sided_tests_p_values(n, w, r, margin, alpha):
    """TOST the other way round: the p-values of H0 "worse by the margin or more" and H0 "better by the margin or
    more", each from Tango's score statistic with the constrained MLE found numerically, both below alpha exactly
    when the verdict is "equivalent"; one of them at or above 1 − alpha decides "worse" or "better"."""
    from scipy.stats import norm

    def z(delta):
        q = _constrained_q_numerically(n, w, r, delta)
        return (w - r - n * delta) / math.sqrt(n * (2 * q + delta * (1 - delta)))

    p_not_worse = 1 - norm.cdf(z(-margin))    # H0: difference ≤ −margin
    p_not_better = norm.cdf(z(margin))        # H0: difference ≥ +margin
    parent = [True] * r + [False] * w + [True] * (n - w - r)
    variant = [False] * r + [True] * w + [True] * (n - w - r)
    out = stats.paired(parent, variant, margin=margin, alpha=alpha)
    assert (out.verdict == stats.EQUIVALENT) == (p_not_worse < alpha and p_not_better < alpha)
    assert (out.verdict == stats.WORSE) == (p_not_worse > 1 - alpha)
    assert (out.verdict == stats.BETTER) == (p_not_better > 1 - alpha)


def test_tango_interval_covers_the_true_difference_about_as_often_as_it_says():
    rng = np.random.default_rng(0)
    n, p_r, p_w = 150, 0.06, 0.03
    truth, hits, trials = p_w - p_r, 0, 400
    for _ in range(trials):
        cells = rng.multinomial(n, [p_r, p_w, 1 - p_r - p_w])
        low, high = stats.tango_interval(n, int(cells[1]), int(cells[0]), 0.90)
        hits += low <= truth <= high
    assert 0.86 <= hits / trials <= 0.95


def test_paired_refuses_unpaired_inputs():
    with pytest.raises(ValueError, match="paired"):
        stats.paired([True, False], [True])
    with pytest.raises(ValueError, match="margin"):
        stats.paired([True], [True], margin=0)


def test_a_comparison_round_trips_through_json():
    out = stats.paired([True, False, True, True], [True, True, False, True], [1, 0, 1, 1], [1, 1, 0, 1])
    assert stats.PairedComparison.from_dict(json.loads(json.dumps(out.to_dict()))) == out


# ---------------------------------------------------------------- the evaluation job on tiny models
LABELS = ("negative", "neutral", "positive")


def _copy_tokenizer(src: Path, dst: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (src / name).exists():
            shutil.copy(src / name, dst / name)


def build_family(root: Path) -> dict:
    """A tiny 3-label BERT classifier, an exact copy, and a 1-layer variant (its first layer kept, its head
    negated so that it disagrees with the parent often)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from llm_lab.tiny import make_tiny_bert

    parent = make_tiny_bert(root / "parent", labels=LABELS, seed=4)
    copy = root / "copy"
    shutil.copytree(parent, copy)
    model = AutoModelForSequenceClassification.from_pretrained(parent)
    model.bert.encoder.layer = model.bert.encoder.layer[:1]
    model.config.num_hidden_layers = 1
    with torch.no_grad():
        model.classifier.weight.mul_(-1)
    small = root / "small"
    model.save_pretrained(small)
    _copy_tokenizer(parent, small)
    return {"parent": parent, "copy": copy, "small": small}


def register_family(family: dict) -> dict:
    """tiny-parent, and its variants tiny-copy and tiny-small (registered with their parent and recipe)."""
    from llm_lab import registry
    from llm_lab.access import LOCAL
    from llm_lab.registry import ModelEntry

    registry.register(LOCAL, ModelEntry("tiny-parent", "local", str(family["parent"]), "classifier"))
    registry.register(LOCAL, ModelEntry("tiny-copy", "local", str(family["copy"]), "classifier",
                                        parent="tiny-parent", meta={"recipe": {"method": "copy", "params": {}}}))
    registry.register(LOCAL, ModelEntry("tiny-small", "local", str(family["small"]), "classifier",
                                        parent="tiny-parent", meta={"recipe": {"method": "layers", "params": {"keep": 1}}}))
    return family


@pytest.fixture(scope="module")
def tiny_family(tmp_path_factory):
    return build_family(tmp_path_factory.mktemp("family"))


@pytest.fixture
def registered(tiny_family):
    return register_family(tiny_family)


def _folder_size(folder: Path) -> int:
    import os

    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(folder) for f in files)


def test_the_evaluation_job_end_to_end(registered):
    from sklearn.metrics import accuracy_score

    from llm_lab import capabilities as caps, data, inference, jobs, registry
    from llm_lab.access import LOCAL
    from llm_lab.bench import cache
    from llm_lab.compress import evaluate

    job_id = evaluate.submit(LOCAL, "tiny-parent", ["tiny-copy", "tiny-small"], dataset="demo-reviews",
                             speed_examples=6, repeats=1, drift_examples=3, ig_steps=8, memory=False, margin=0.05)
    job = jobs.get(LOCAL, job_id)
    assert job["status"] == "succeeded", (job["error"], jobs.logs(LOCAL, job_id))
    report = evaluate.report_of(LOCAL, job_id)
    assert [m.name for m in report.models] == ["tiny-parent", "tiny-copy", "tiny-small"]
    assert report.main_task == "quality" and report.source["dataset"] == "demo-reviews"
    assert evaluate.Report.from_dict(json.loads(json.dumps(report.to_dict()))) == report  # what a refresh reads

    # the scored rows: the test split, predicted independently with predict.classify
    frame = data.load_frame(LOCAL, "demo-reviews", "test").sort_values("id")
    texts, gold = frame["text"].astype(str).tolist(), frame["label"].astype(str).tolist()
    predicted = {}
    for m in report.models:
        loaded = registry.load_for(LOCAL, caps.CLASSIFY, m.name)
        predicted[m.name] = [loaded.labels[i] for i in inference.classify(loaded, texts).probs.argmax(axis=1)]
        q = m.task("quality")
        assert q.rows == len(frame) == 14 and "test split" in q.scored
        rows = cache.get(LOCAL, q.key).per_example
        assert [r["prediction"] for r in rows] == predicted[m.name]
        assert q.metric == "accuracy" and q.value == pytest.approx(accuracy_score(gold, predicted[m.name]))
        assert q.low <= q.value <= q.high and q.intervals["f1"]["low"] <= q.intervals["f1"]["high"]
        assert m.size_bytes == _folder_size(registered[{"tiny-parent": "parent", "tiny-copy": "copy",
                                                        "tiny-small": "small"}[m.name]])
        assert m.speed.latency_p50_ms > 0 and m.speed.latency_p95_ms >= m.speed.latency_p50_ms
        assert m.speed.throughput > 0 and m.speed.examples == 6 and m.speed.batch_size == 32
        assert m.memory is None

    # flips against the parent, counted independently
    for name in ("tiny-copy", "tiny-small"):
        p = report.model(name).paired["quality"]
        pairs = Counter((a == g, b == g) for a, b, g in zip(predicted["tiny-parent"], predicted[name], gold))
        assert (p.right_to_wrong, p.wrong_to_right) == (pairs[(True, False)], pairs[(False, True)])
        assert p.identical == sum(a == b for a, b in zip(predicted["tiny-parent"], predicted[name]))
        assert p.mcnemar_p == pytest.approx(exact_mcnemar(p.right_to_wrong, p.wrong_to_right))
    copy = report.model("tiny-copy")
    assert copy.paired["quality"].identical_share == 1.0 and copy.paired["quality"].flips == 0
    assert copy.paired["quality"].verdict == stats.INCONCLUSIVE   # 14 examples cannot show ±5 points
    # the same weights explain the same way: rank correlation 1 on every sampled example
    assert copy.drift.status == "ok" and len(copy.drift.examples) == 3
    assert all(ex["spearman"] == pytest.approx(1.0) for ex in copy.drift.examples)
    small = report.model("tiny-small")
    assert small.drift.status == "ok" and small.drift.mean < 0.999
    assert small.recipe == {"method": "layers", "params": {"keep": 1}} and small.parent == "tiny-parent"
    # the quality results are a benchmark run under the job's id (the Benchmarks page opens it)
    run = cache.get_run(LOCAL, job_id)
    assert run["models"] == ["tiny-parent", "tiny-copy", "tiny-small"] and len(run["keys"]) == 3


def test_the_intervals_are_of_the_figures_the_benchmark_reports():
    """The classification task scores a row against the model output its label maps to, and averages macro-F1
    over the labels the scored data has: the report's accuracy and F1 (with their intervals) are those figures,
    computed here with scikit-learn, also when the model predicts a label the data lacks (a 3-label model on
    2-label data) or a label_map sends two labels to one output."""
    from sklearn.metrics import accuracy_score, f1_score

    from llm_lab.bench.result import TaskResult
    from llm_lab.compress import evaluate

    rng = np.random.default_rng(7)
    gold = rng.choice(["negative", "positive"], 60).tolist()
    pred = [g if rng.random() < 0.6 else rng.choice(["negative", "neutral", "positive"]) for g in gold]
    result = TaskResult(key="k", model="m", suite="s", task="t", type="classification", status="ok",
                        per_example=[{"id": i, "label": g, "prediction": p, "correct": g == p}
                                     for i, (g, p) in enumerate(zip(gold, pred))])
    assert "neutral" in pred
    out = evaluate._intervals(result)
    assert out["accuracy"]["value"] == pytest.approx(accuracy_score(gold, pred))
    assert out["f1"]["value"] == pytest.approx(f1_score(gold, pred, labels=["negative", "positive"], average="macro"))
    assert out["f1"]["low"] <= out["f1"]["value"] <= out["f1"]["high"]
    # label_map {neutral: positive}: a "neutral" row predicted "positive" is right (the task shows the output under
    # one of the two names)
    gold = ["neutral", "positive", "negative", "neutral", "negative", "positive"] * 5
    pred = ["positive", "positive", "negative", "negative", "positive", "positive"] * 5
    mapped = ["positive" if g == "neutral" else g for g in gold]
    result = TaskResult(key="k", model="m", suite="s", task="t", type="classification", status="ok",
                        per_example=[{"id": i, "label": g, "prediction": p, "correct": m == p}
                                     for i, (g, p, m) in enumerate(zip(gold, pred, mapped))])
    out = evaluate._intervals(result)
    assert out["accuracy"]["value"] == pytest.approx(accuracy_score(mapped, pred))
    assert out["f1"]["value"] == pytest.approx(f1_score(mapped, pred, average="macro"))


def test_peak_memory_is_measured_in_a_fresh_process(registered):
    from llm_lab.access import LOCAL
    from llm_lab.compress import measure

    mem = measure.probe_memory(LOCAL, "tiny-parent", "classification", ["a fine day", "a bad day"], 32)
    assert mem.error is None, mem.error
    assert mem.method.startswith("VmHWM") and mem.baseline_mb > 50
    # the tiny model's weights are well under a megabyte; its peak stays small but positive
    assert 0 < mem.loaded_mb <= mem.peak_mb < 200
    missing = measure.probe_memory(LOCAL, "no such model", "classification", ["x"], 32)
    assert missing.error and "'no such model' is neither a model in the registry" in missing.error


def test_attribution_drift_without_gradients_is_not_available(registered):
    """A variant whose capabilities lack gradients (an ONNX Runtime session) gets the capability check's answer."""
    from llm_lab import capabilities as caps, registry
    from llm_lab.access import LOCAL
    from llm_lab.compress.drift import attribution_drift

    parent = registry.load_for(LOCAL, caps.CLASSIFY, "tiny-parent")
    variant = registry.load_for(LOCAL, caps.CLASSIFY, "tiny-copy")
    no_grad = replace(variant, capabilities=replace(variant.capabilities,
                                                    provides=variant.capabilities.provides - {caps.GRADIENTS}))
    drift = attribution_drift(parent, no_grad, [{"id": 1, "text": "a fine day"}], n_steps=4)
    assert drift.status == "not available" and drift.reason.startswith("not available: no gradients")
    assert drift.examples == [] and drift.mean is None


def test_slower_and_larger_variants_are_warned_about():
    from llm_lab.compress.measure import larger_warning, slower_warning
    from llm_lab.compress.report import ModelReport, Speed

    parent = ModelReport("p", "parent", size_bytes=100, speed=Speed(latency_p50_ms=10.0, throughput=100.0))
    faster = ModelReport("f", "variant", size_bytes=50, speed=Speed(latency_p50_ms=5.0, throughput=200.0))
    noise = ModelReport("n", "variant", size_bytes=100, speed=Speed(latency_p50_ms=10.3, throughput=97.0))
    slower = ModelReport("s", "variant", size_bytes=120, speed=Speed(latency_p50_ms=14.0, throughput=60.0))
    assert slower_warning(faster, parent) is None and slower_warning(noise, parent) is None
    warn = slower_warning(slower, parent)
    assert "slower than its parent" in warn and "+40%" in warn and "-40%" in warn
    assert larger_warning(slower, parent) and larger_warning(faster, parent) is None


def test_models_timed_on_different_devices_are_said(registered):
    from llm_lab.compress.measure import mixed_devices
    from llm_lab.compress.report import ModelReport, Speed

    cpu = ModelReport("p", "parent", speed=Speed(latency_p50_ms=10.0, device="cpu", dtype="float32"))
    gpu = ModelReport("p", "parent", speed=Speed(latency_p50_ms=2.0, device="cuda", dtype="bfloat16"))
    int8 = ModelReport("v-int8", "variant", speed=Speed(latency_p50_ms=3.0, device="cpu", dtype="int8"))
    failed = ModelReport("v2", "variant", speed=Speed(error="out of memory"))
    assert mixed_devices([cpu, int8, failed]) is None
    note = mixed_devices([gpu, int8, failed])
    assert note.startswith("The models did not run on one device: p on cuda (bfloat16), v-int8 on cpu (int8). ")
    assert "evaluate with device cpu" in note


def test_a_job_of_another_kind_is_not_read_as_a_report(registered):
    from llm_lab.access import LOCAL
    from llm_lab.compress import evaluate, jobs as compress_jobs
    from llm_lab.errors import LabError

    job_id = compress_jobs.submit(LOCAL, "tiny-parent", "bf16", name="tiny-bf16")   # an address could name it
    with pytest.raises(LabError, match=f"Job {job_id} is a compress job, not a compress-then-evaluate run"):
        evaluate.report_of(LOCAL, job_id)


@pytest.mark.parametrize("settings,message", [
    ({"margin": 0}, "The equivalence margin must be between 0 and 100 points; got 0. Give the largest accuracy"),
    ({"margin": -0.01}, "The equivalence margin must be between 0 and 100 points; got -1."),
    ({"alpha": 0.5}, "The equivalence test's level alpha must be between 0 and 0.5; got 0.5. Give 0.05"),
    ({"repeats": 0}, "repeats (timing rounds) must be a whole number of at least 1; got 0."),
    ({"speed_examples": 2.5}, "speed_examples (texts timed) must be a whole number of at least 1; got 2.5."),
    ({"drift_examples": -1}, "drift_examples (attribution examples) must be a whole number of at least 0")])
def test_settings_it_cannot_use_are_refused_before_a_job_is_queued(registered, settings, message):
    from llm_lab import jobs
    from llm_lab.access import LOCAL
    from llm_lab.compress import evaluate
    from llm_lab.errors import LabError

    with pytest.raises(LabError) as info:
        evaluate.submit(LOCAL, "tiny-parent", ["tiny-copy"], dataset="demo-reviews", **settings)
    assert str(info.value).startswith(message), str(info.value)
    assert jobs.list_jobs(LOCAL) == []


def test_a_suite_and_a_dataset_are_not_both_given(registered):
    from llm_lab.access import LOCAL
    from llm_lab.compress import evaluate
    from llm_lab.errors import LabError

    with pytest.raises(LabError, match="pick one"):
        evaluate.submit(LOCAL, "tiny-parent", ["tiny-copy"])
    with pytest.raises(LabError, match="at least one variant"):
        evaluate.submit(LOCAL, "tiny-parent", ["tiny-parent"], dataset="demo-reviews")


# ---------------------------------------------------------------- the Pareto chart
def _report(points):
    from llm_lab.compress.report import ModelReport, Quality, Report, Speed

    models = []
    for name, role, latency, value, size, slower in points:
        models.append(ModelReport(name, role, size_bytes=size, speed=Speed(latency_p50_ms=latency),
                                  quality=[Quality("t", "classification", "accuracy", value, value - 0.05, value + 0.05)],
                                  slower=slower))
    return Report("p", [m.name for m in models[1:]], {"dataset": "d"}, 0.01, 0.05, "t", models)


def test_the_pareto_front_and_the_chart():
    from llm_lab.compress import plots

    report = _report([("p", "parent", 10.0, 0.90, 400, False), ("fast", "variant", 4.0, 0.88, 100, False),
                      ("dominated", "variant", 12.0, 0.85, 300, False), ("<b>slow</b>", "variant", 15.0, 0.91, 200, True)])
    front = plots.pareto_front(plots.points(report))
    assert [p["name"] for p in front] == ["fast", "p", "<b>slow</b>"]
    fig = plots.pareto(report)
    spec = json.loads(fig.to_json())
    traces = {t.get("name"): t for t in spec["data"]}
    assert traces["Pareto front"]["x"] == [4.0, 10.0, 15.0]
    assert traces["p"]["marker"]["symbol"] == "star" and traces["fast"]["marker"]["symbol"] == "circle"
    sizes = {n: traces[n]["marker"]["size"] for n in ("p", "fast")}
    assert sizes["p"] == plots.MAX_MARKER and sizes["fast"] == pytest.approx(plots.MAX_MARKER * 0.5)  # area ∝ size
    assert "&lt;b&gt;slow&lt;/b&gt;" in traces["&lt;b&gt;slow&lt;/b&gt;"]["name"]   # a name is shown as text
    assert [a["text"] for a in spec["layout"]["annotations"]] == ["slower than its parent"]


def test_a_busy_machine_is_said_with_the_timings(monkeypatch):
    from llm_lab.compress import measure

    monkeypatch.setattr(measure.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(measure.os, "getloadavg", lambda: (1.5, 1.0, 1.0))
    assert measure._busy() is None
    monkeypatch.setattr(measure.os, "getloadavg", lambda: (6.2, 5.0, 4.0))
    assert measure._busy().startswith("The machine was busy while the models were timed (load average 6.2 on 4 cores)")


def test_the_cli_evaluates_and_prints_the_table_and_the_report(registered, capsys):
    """`python -m llm_lab compress eval PARENT VARIANT… --dataset D`: the job's report, as a table or JSON."""
    from llm_lab import jobs
    from llm_lab.access import LOCAL
    from llm_lab.cli import main as cli
    from llm_lab.compress import evaluate

    assert cli(["compress", "eval", "tiny-parent", "tiny-copy", "--dataset", "demo-reviews", "--margin", "5",
                "--confidence", "90", "--no-memory", "--json"]) == 0
    out = capsys.readouterr().out
    job_id, report = out.split("\n", 1)[0], json.loads(out.split("\n", 1)[1])
    assert jobs.get(LOCAL, job_id)["fn"] == evaluate.JOB_FN
    assert report == evaluate.report_of(LOCAL, job_id).to_dict()
    assert report["margin"] == pytest.approx(0.05) and report["alpha"] == pytest.approx(0.05)
    assert [m["name"] for m in report["models"]] == ["tiny-parent", "tiny-copy"]
    assert cli(["compress", "eval", "tiny-parent", "tiny-copy", "--dataset", "demo-reviews", "--no-memory"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:3] == ["MODEL", "ROLE", "SIZE"] and lines[2].startswith("tiny-parent")
    assert lines[3].startswith("tiny-copy") and "100.0%" in lines[3]  # a copy predicts what its parent does
    with pytest.raises(SystemExit, match="percentage between 50 and 100"):
        cli(["compress", "eval", "tiny-parent", "tiny-copy", "--dataset", "demo-reviews", "--confidence", "0.95"])


def test_a_perfect_headline_gets_a_wilson_interval_and_its_n():
    """10 of 10 right: the report's accuracy is [0.722, 1.000] (Wilson, as statsmodels computes it) with n=10,
    not a bootstrap's collapsed [1.000, 1.000]; a result stored before `n` existed still reads back."""
    from statsmodels.stats.proportion import proportion_confint

    from llm_lab.bench.result import Headline, TaskResult
    from llm_lab.compress import evaluate
    from llm_lab.compress.report import ModelReport

    rows = [{"id": i, "label": "pos", "prediction": "pos", "correct": True} for i in range(10)]
    result = TaskResult(key="k", model="m", suite="s", task="t", type="classification", status="ok",
                        per_example=rows, metrics={"accuracy": 1.0},
                        headline=Headline(name="accuracy", value=1.0, low=1.0, high=1.0))
    q = evaluate._quality(result)
    low, high = proportion_confint(10, 10, method="wilson")
    assert (q.low, q.high) == (pytest.approx(low), pytest.approx(high)) and q.n == 10
    assert q.text() == "1.000 [0.722, 1.000] n=10" and q.method == "Wilson score interval"
    assert q.intervals["accuracy"]["n"] == 10 and "[" in q.text("f1")
    back = ModelReport.from_dict({"name": "m", "role": "parent", "quality": [
        {"task": "t", "type": "classification", "metric": "accuracy", "value": 0.5, "low": 0.3, "high": 0.7,
         "rows": 20}]})
    assert back.quality[0].text() == "0.500 [0.300, 0.700] n=20"
