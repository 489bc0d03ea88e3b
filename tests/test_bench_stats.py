"""Benchmarks' numbers with honest intervals: every metric, the stored probabilities, calibration, paired
comparisons, tiers, the metric picker, the exports and `bench compare` (issue 20)."""
import json
import re

import numpy as np
import pytest

from llm_lab import data
from llm_lab.access import LOCAL
from llm_lab.bench import compare, leaderboard, runner, suite as suites
from llm_lab.bench.result import Headline, TaskResult
from tests.test_bench import REVIEWS, _csv, binary_reviews  # noqa: F401 (a fixture)

CELL = re.compile(r"^-?\d+\.\d+ \[-?\d+\.\d+, -?\d+\.\d+\] n=\d+$")


@pytest.fixture
def split_reviews():
    """40 reviews with train, validation and test splits (the validation split fits the temperature)."""
    rows = [(f"{t} (#{i})", l) for i in range(4) for t, l in REVIEWS] + REVIEWS[:-8]
    data.import_dataset(LOCAL, "s-reviews", "r.csv", _csv(rows, ["text", "label"]), {"text": "text", "label": "label"},
                        data.Recipe(train=0.4, validation=0.3))
    return "s-reviews"


def _run(model, dataset, metrics="[accuracy, f1, precision, recall, roc_auc]", **extra):
    lines = "".join(f"    {k}: {v}\n" for k, v in extra.items())
    suite = suites.parse(f"name: t\ntasks:\n  - name: sent\n    type: classification\n    dataset: {dataset}\n"
                         f"    metrics: {metrics}\n{lines}", "test")
    (res,) = runner.run_suite(LOCAL, suite, [str(model)], use_cache=False)
    assert res.ok, res.error
    return res


def test_every_metric_has_an_interval_and_the_stored_probabilities_recompute_them(tiny_bert, split_reviews):
    from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score
    from statsmodels.stats.proportion import proportion_confint

    res = _run(tiny_bert, split_reviews)
    rows = res.per_example
    probs = np.array([r["probs"] for r in rows])
    assert probs.shape == (len(rows), 2) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    truth = np.array([res.labels.index(r["label"]) for r in rows])
    # the stored probabilities give back what the task reported (sklearn, independently)
    assert roc_auc_score(truth, probs[:, 1]) == pytest.approx(res.metrics["roc_auc"], abs=1e-9)
    assert brier_score_loss(truth, probs[:, 1]) == pytest.approx(res.metrics["brier"], abs=1e-9)
    assert log_loss(truth, probs, labels=[0, 1]) == pytest.approx(res.metrics["log_loss"], abs=1e-6)
    # ECE by hand: 15 equal-width bins of the top probability
    conf, right = probs.max(axis=1), probs.argmax(axis=1) == truth
    ece = 0.0
    for lo, hi in zip(np.linspace(0, 1, 16)[:-1], np.linspace(0, 1, 16)[1:]):
        m = (conf > lo) & (conf <= hi) if lo > 0 else (conf >= lo) & (conf <= hi)
        if m.any():
            ece += m.sum() / len(conf) * abs(right[m].mean() - conf[m].mean())
    assert res.metrics["ece"] == pytest.approx(ece, abs=1e-6)  # float32 probabilities, renormalised
    # every metric has an interval around its value, with n
    for name, value in res.metrics.items():
        i = res.intervals[name]
        assert i["n"] == len(rows) and i["low"] <= value + 1e-9 and value - 1e-9 <= i["high"], name
    k = int(right.sum())
    assert (res.intervals["accuracy"]["low"], res.intervals["accuracy"]["high"]) == pytest.approx(
        proportion_confint(k, len(rows), method="wilson"))
    assert res.headline.n == len(rows) and res.headline.method == "Wilson score interval"
    cal = res.details["calibration"]
    assert 0.05 <= cal["temperature"] <= 20 and cal["temperature_rows"] > 0 and cal["after"]["log_loss"]["value"] > 0
    # the JSON export carries it all, and reads back
    back = TaskResult.from_dict(json.loads(leaderboard.export_json([res]))["results"][0])
    assert back.intervals == res.intervals and back.per_example[0]["probs"] == rows[0]["probs"]


def test_ten_of_ten_is_not_one_plus_minus_zero(tiny_bert, binary_reviews):
    """The issue's case: every example right. The cell says 1.000 [0.722, 1.000] n=10, never ± 0.000."""
    first = _run(tiny_bert, binary_reviews, metrics="[accuracy]", limit=10)
    relabelled = [(r["text"], r["prediction"]) for r in first.per_example]  # the model's own answers
    other = next(l for l in ("negative", "positive") if l != relabelled[0][1])
    relabelled.append(("a last row, not scored, so the dataset has two classes", other))
    data.import_dataset(LOCAL, "all-right", "a.csv", _csv(relabelled, ["text", "label"]),
                        {"text": "text", "label": "label"}, data.Recipe(train=1.0, validation=0.0))
    res = _run(tiny_bert, "all-right", metrics="[accuracy, f1]", split="all", limit=10)
    assert res.metrics["accuracy"] == 1.0
    assert leaderboard.cell(res, "accuracy") == "1.000 [0.722, 1.000] n=10"
    f1 = res.intervals["f1"]
    assert f1["value"] == 1.0 and f1["low"] < 0.8 and f1["high"] == 1.0  # not a collapsed bootstrap either
    assert "±" not in leaderboard.text_table([res.summary()])


def _result(model: str, right: np.ndarray, task: str = "t", labels=None) -> TaskResult:
    n = len(right)
    rows = [{"id": i, "text": f"x{i}", "label": "a", "prediction": "a" if right[i] else "b",
             "correct": bool(right[i])} for i in range(n)]
    from llm_lab.metrics import intervals

    acc = intervals.of_hits(right)
    return TaskResult(key=f"{model}-{task}", model=model, suite="s", task=task, type="classification",
                      metrics={"accuracy": float(right.mean())}, headline=Headline("accuracy", acc.value, acc.low,
                                                                                  acc.high, n=n, method=acc.method),
                      per_example=rows, intervals={"accuracy": acc.to_dict()})


def _pr_3868_pair():
    """lm-eval PR #3868's example: 220 items, A right on 122, B on 140; 12 A-only, 30 B-only."""
    a = np.zeros(220, bool)
    b = np.zeros(220, bool)
    a[:110] = b[:110] = True        # both right
    a[110:122] = True               # A right, B wrong: 12
    b[122:152] = True               # A wrong, B right: 30
    return _result("A", a), _result("B", b)


def test_paired_comparison_of_stored_results_matches_scipy_and_gives_tiers():
    from scipy.stats import binomtest

    a, b = _pr_3868_pair()
    (task,) = compare.compare_run([a, b])
    (pair,) = task.pairs
    assert (pair.a_right_b_wrong, pair.a_wrong_b_right) == (12, 30)
    assert pair.p_value == pytest.approx(binomtest(12, 42, 0.5).pvalue) and pair.p_value == pytest.approx(0.008, abs=5e-4)
    assert pair.better == "B" and task.tiers == {"A": 2, "B": 1}
    text = compare.paired.verdict(pair)
    assert text.startswith("B beats A by 8.2 points") and "30 flips to right, 12 to wrong" in text
    # identical models: no difference, one tier, and the verdict says it cannot tell
    (same,) = compare.compare_run([a, _result("A2", np.array([r["correct"] for r in a.per_example]))])
    assert same.pairs[0].p_value == 1.0 and same.tiers == {"A": 1, "A2": 1}
    assert "Not enough examples to tell" in compare.paired.verdict(same.pairs[0])


def test_p_values_are_adjusted_across_pairs_and_tasks():
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(3)
    results = []
    for task in ("t1", "t2"):
        base = rng.random(300)
        for m, p in (("A", 0.6), ("B", 0.66), ("C", 0.7)):
            results.append(_result(m, base < p, task))
    found = compare.compare_run(results, adjust="bh")
    pairs = [p for t in found for p in t.pairs]
    assert len(pairs) == 6
    expected = multipletests([p.p_value for p in pairs], method="fdr_bh")[1]
    assert [p.p_adjusted for p in pairs] == pytest.approx(list(expected))


def test_leaderboard_metric_picker_tiers_and_csv_carry_every_metric():
    a, b = _pr_3868_pair()
    for r in (a, b):
        r.metrics["f1"] = 0.5
        r.intervals["f1"] = {"value": 0.5, "low": 0.4, "high": 0.6, "n": 220, "method": "BCa bootstrap"}
    tiers = compare.tier_table(compare.compare_run([a, b]))
    wide = leaderboard.wide_table([a, b], ["accuracy", "f1"], tiers)
    assert list(wide.columns) == ["model", "t · tier", "t · accuracy", "t · accuracy (value)", "t · f1",
                                  "t · f1 (value)"]
    assert list(wide["t · tier"]) == [2, 1]
    for col in ("t · accuracy", "t · f1"):
        assert all(CELL.match(v) for v in wide[col]), list(wide[col])
    assert leaderboard.available_metrics([a, b]) == ["accuracy", "f1"]
    csv = leaderboard.export_csv([a.summary(), b.summary()]).decode().splitlines()
    assert {"n", "accuracy low", "accuracy high", "f1", "f1 low", "f1 high"} <= set(csv[0].split(","))


def test_cli_bench_compare_prints_the_verdict_and_json(tmp_path, capsys):
    from llm_lab import cli

    path = tmp_path / "results.json"
    path.write_bytes(leaderboard.export_json(list(_pr_3868_pair())))
    assert cli.main(["bench", "compare", str(path), "--model", "A", "--model", "B"]) == 0
    assert "B beats A by 8.2 points on accuracy" in capsys.readouterr().out
    assert cli.main(["bench", "compare", str(path), "--json", "--adjust", "none", "--margin", "0.02"]) == 0
    out = json.loads(capsys.readouterr().out)
    pair = out["tasks"][0]["pairs"][0]
    assert pair["a_right_b_wrong"] == 12 and pair["better"] == "B" and pair["equivalence"]
    assert pair["mde"] > 0 and pair["low"] < pair["difference"] < pair["high"]
    assert cli.main(["bench", "compare", str(path), "--model", "nobody"]) == 2
    assert "its models are A, B" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{}")
    assert cli.main(["bench", "compare", str(tmp_path / "bad.json")]) == 2


def _frame(at, column: str):
    """The page's table that has `column` (AppTest does not keep a dataframe's key)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def test_benchmarks_page_shows_intervals_tiers_and_the_difference(tiny_bert, split_reviews):
    from llm_lab import jobs
    from llm_lab.bench import jobs as bench_jobs
    from llm_lab.tiny import make_tiny_bert
    from tests.conftest import app_test, no_exceptions

    other = make_tiny_bert(tiny_bert.parent / "tiny-bert-seed-1", seed=1)
    text = f"name: p\ntasks:\n  - {{name: sent, type: classification, dataset: {split_reviews}, " \
           "metrics: [accuracy, f1, roc_auc]}\n"
    job_id = bench_jobs.submit(LOCAL, text, [str(tiny_bert), str(other)])
    assert jobs.get(LOCAL, job_id)["status"] == "succeeded"
    at = app_test("views/benchmarks.py")
    at.query_params["result"] = job_id
    at.run()
    no_exceptions(at)
    board = _frame(at, "sent · tier")
    assert "sent · accuracy" in board.columns
    at.multiselect(key="b_metrics_shown").set_value(["accuracy", "f1", "roc_auc", "ece", "brier"]).run()
    no_exceptions(at)
    board = _frame(at, "sent · tier")
    shown = [c for c in board.columns if c.startswith("sent · ") and c != "sent · tier"]
    assert shown == ["sent · accuracy", "sent · f1", "sent · roc_auc", "sent · ece", "sent · brier"]
    for col in shown:  # no number without its interval and n
        assert all(CELL.match(v) for v in board[col]), (col, list(board[col]))
    assert any("Tiers on sent · accuracy" in c.value for c in at.caption)
    assert any(("beats" in t.value or "Not enough examples to tell" in t.value) for t in at.text)
    pairs = _frame(at, "verdict")
    assert len(pairs) == 1 and pairs["test"][0] == "McNemar exact"
    cal = _frame(at, "ece after scaling")
    assert len(cal) == 2 and all(CELL.match(v) for v in cal["ece"])
    # the leaderboard cut to the positive reviews: every cell recomputed on that slice, still with its interval
    n_all = int(board["sent · accuracy"].iloc[0].rsplit("n=", 1)[1])
    at.selectbox(key="b_slice").set_value("label\x1fpositive").run()
    no_exceptions(at)
    board = _frame(at, "sent · tier")
    assert all(CELL.match(v) for v in board["sent · accuracy"])
    n = {int(v.rsplit("n=", 1)[1]) for v in board["sent · accuracy"]}
    assert len(n) == 1 and 0 < n.pop() < n_all
    assert len(_frame(at, "verdict")) == 1  # the paired comparison, on the slice too


def test_a_slice_recomputes_metrics_intervals_and_comparisons():
    from statsmodels.stats.proportion import proportion_confint

    from llm_lab.bench import slicing

    a, b = _pr_3868_pair()
    for r in (a, b):
        for row in r.per_example:
            row["slice"] = {"length": "short" if row["id"] % 2 else "long"}
    assert ("length", "short", 110) in slicing.options([a, b]) and ("label", "a", 220) in slicing.options([a, b])
    short = slicing.cut([a, b], "length", "short")
    assert [len(r.per_example) for r in short] == [110, 110]
    hits = sum(row["correct"] for row in short[0].per_example)
    assert short[0].metrics["accuracy"] == pytest.approx(hits / 110)
    assert (short[0].intervals["accuracy"]["low"], short[0].intervals["accuracy"]["high"]) == pytest.approx(
        proportion_confint(hits, 110, method="wilson"))
    assert short[0].headline.n == 110 and CELL.match(leaderboard.cell(short[0], "accuracy"))
    (task,) = compare.compare_run(short)
    flips = [(ra["correct"], rb["correct"]) for ra, rb in zip(short[0].per_example, short[1].per_example)]
    assert (task.pairs[0].a_right_b_wrong, task.pairs[0].a_wrong_b_right) == (
        flips.count((True, False)), flips.count((False, True)))
    table = slicing.table([a, b], "length")
    assert set(table["slice"]) == {"length = short", "length = long"} and set(table["n"]) == {110}


def test_robustness_rows_pair_by_example_and_perturbation():
    from llm_lab.bench import robustness_view

    def inv(model, flips):
        rows = [{"id": i // 2, "kind": ("typo", "casing")[i % 2], "text": f"t{i // 2}", "perturbed": f"p{i}",
                 "prediction": "a", "perturbed_prediction": "b" if f else "a", "flipped": bool(f)}
                for i, f in enumerate(flips)]
        hit = np.array(flips, dtype=float)
        from llm_lab.metrics import intervals

        i = intervals.of_hits(hit)
        return TaskResult(key=model, model=model, suite="s", task="inv", type="invariance",
                          metrics={"flip_rate": i.value}, headline=Headline("flip_rate", i.value, i.low, i.high,
                                                                            False, n=i.n, method=i.method),
                          per_example=rows, intervals={"flip_rate": i.to_dict()},
                          details={"by_kind": {"typo": dict(i.to_dict(), hits=1, examples=2)}, "examples": 2})

    a, b = inv("A", [1, 0, 0, 0]), inv("B", [1, 1, 1, 0])
    table = leaderboard.drilldown([a, b], "inv")
    assert len(table) == 4 and sorted(zip(table["id"], table["kind"])) == [(0, "casing"), (0, "typo"), (1, "casing"),
                                                                           (1, "typo")]
    assert len(leaderboard.drilldown([a, b], "inv", "errors")) == 3  # a flip by either model
    (task,) = compare.compare_run([a, b])
    pair = task.pairs[0]  # the example is the unit (its perturbations are not independent): 2 examples, not 4 rows
    assert task.n == 2 and pair.test == "paired permutation" and task.tiers == {"A": 1, "B": 1}
    assert (pair.value_a, pair.value_b) == (0.25, 0.75)
    rob = robustness_view.table([a, b])
    assert list(rob["perturbation"]) == ["typo", "(all)", "typo", "(all)"] and all("n=" in v for v in rob["rate"])
