"""Is the difference between two models on a benchmark real? Paired comparisons from stored per-example rows.

Two results of one task scored the same examples (matched by example id): every pair of models gets
`stats.paired.compare` on a metric (the task's headline by default), and the p-values of every pair of every
task are adjusted together as one family (Holm by default). From those come the leaderboard's significance
tiers. Everything is read from the per-example rows a result stores, so a results JSON file (`export_json`)
is enough: `python -m llm_lab bench compare RESULTS.json --model A --model B`.

The per-example statistics per metric:
- accuracy / exact_match / acc_norm: right or wrong (McNemar's exact test, flips);
- flip_rate / failure_rate of the robustness tasks: flips (failures) and cases summed per example, since the
  perturbations of one example are not independent: the bootstrap resamples examples and the permutation test
  swaps whole examples (rows are paired by example and perturbation first);
- macro precision / recall / F1: one-hot (true, predicted) cells over the labels of all models;
- perplexity: each text's NLL and token count; ROUGE-L: the per-example score;
- ECE, Brier, NLL: from the stored probability vectors (results stored since every metric had an interval).
ROC AUC and speed are not sums over examples: they are not compared here (the page says so).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..stats import multiple, paired, tiers
from ..stats.paired import Outcomes, PairComparison
from .result import TaskResult

COMPARABLE = ("accuracy", "acc_norm", "exact_match", "f1", "f1_macro", "precision", "precision_macro", "recall",
              "recall_macro", "perplexity", "rougeL", "ece", "brier", "log_loss", "flip_rate", "failure_rate")
# robustness rates: several perturbed cases per example, not independent; the example is the unit
CLUSTERED = ("flip_rate", "failure_rate")
BINARY_FIELDS = {"accuracy": "correct", "exact_match": "correct", "acc_norm": "correct_norm", "flip_rate": "flipped",
                 "failure_rate": "failed"}


@dataclass
class TaskComparison:
    """The pairs of one task on one metric, the examples they share, and what could not be compared."""

    task: str
    metric: str
    n: int
    pairs: list[PairComparison] = field(default_factory=list)
    tiers: dict = field(default_factory=dict)
    note: str = ""

    def to_dict(self) -> dict:
        return {"task": self.task, "metric": self.metric, "n": self.n, "tiers": self.tiers, "note": self.note,
                "pairs": [p.to_dict() for p in self.pairs]}


def _mean_of(s):
    s = np.atleast_2d(s)
    return s[:, 0] / np.maximum(s[:, 1], 1e-12)


def row_key(row: dict):
    """What pairs two models' rows: the example id, and the perturbation for robustness tasks (several rows
    per example)."""
    return (row["id"], row["kind"]) if "kind" in row else row["id"]


def _rows_by_id(result: TaskResult) -> dict:
    return {row_key(row): row for row in result.per_example if "id" in row}


def _stats(metric: str, rows: list[dict], result: TaskResult, classes: list[str]):
    """(per-example stats (n, d), value_of, binary) of `metric` from a result's rows, or None if not stored."""
    base = metric.removesuffix("_macro")
    if base in CLUSTERED:  # flipped/failed per (example, perturbation): summed per example, the unit resampled
        name = BINARY_FIELDS[base]
        if any(r.get(name) is None for r in rows):
            return None
        per_id: dict = {}
        for r in rows:
            hits_cases = per_id.setdefault(r["id"], [0.0, 0.0])
            hits_cases[0] += bool(r[name])
            hits_cases[1] += 1
        return np.array(list(per_id.values()), dtype=float), _mean_of, False
    if base in BINARY_FIELDS:  # right/wrong per example: McNemar, flips, Wilson
        name = BINARY_FIELDS[base]
        if any(r.get(name) is None for r in rows):
            return None
        hit = np.array([bool(r[name]) for r in rows], dtype=float)
        return np.column_stack([hit, np.ones_like(hit)]), _mean_of, True
    if base in ("f1", "precision", "recall"):
        from ..metrics.bootstrap import _prf

        if any("prediction" not in r or "label" not in r for r in rows):
            return None
        # the classes the labels hold come first (the macro average is over them, as sklearn's `labels=`),
        # then any class only predicted; every model shares this order, so their cells line up
        true = sorted({str(r["label"]) for r in rows})
        order = true + [c for c in classes if c not in set(true)]
        index, k = {c: i for i, c in enumerate(order)}, len(order)
        cells = np.array([index[str(r["label"])] * k + index[str(r["prediction"])] for r in rows])
        onehot = np.zeros((len(rows), k * k))
        onehot[np.arange(len(rows)), cells] = 1.0
        return onehot, (lambda s: _prf(np.atleast_2d(s), k, base, len(true))), False
    if base == "perplexity":
        if any("nll" not in r or "tokens" not in r for r in rows):
            return None
        stats = np.array([[float(r["nll"]), float(r["tokens"])] for r in rows])
        return stats, lambda s: np.exp(_mean_of(s)), False
    if base == "rougeL":
        if any(r.get("rougeL") is None for r in rows):
            return None
        v = np.array([float(r["rougeL"]) for r in rows])
        return np.column_stack([v, np.ones_like(v)]), _mean_of, False
    if base in ("ece", "brier", "log_loss"):
        return _calibration_stats(base, rows, result)
    return None


def _calibration_stats(name: str, rows: list[dict], result: TaskResult):
    from ..stats import calibration as cal

    if any("probs" not in r for r in rows) or not result.labels:
        return None
    probs = np.array([r["probs"] for r in rows], dtype=float)
    shown = [str(x) for x in result.labels]
    if any(str(r["label"]) not in shown for r in rows):
        return None
    labels = np.array([shown.index(str(r["label"])) for r in rows])
    if name == "ece":
        stats, value_of = cal.ece_stats(probs, labels)
        return stats, value_of, False
    per = cal.brier_stats(probs, labels) if name == "brier" else cal.nll_stats(probs, labels)
    return np.column_stack([per, np.ones_like(per)]), _mean_of, False


def _outcomes(metric: str, results: list[TaskResult], by_id: list[dict], shared: list):
    """Each model's `Outcomes` on the `shared` rows, or (None, the reason) when one cannot give them."""
    from .. import metrics as metric_table

    classes = sorted({str(b[i].get(k)) for b in by_id for i in shared for k in ("label", "prediction")
                      if b[i].get(k) is not None})
    out = []
    for r, b in zip(results, by_id):
        found = _stats(metric, [b[i] for i in shared], r, classes)
        if found is None:
            return None, (f"{metric} cannot be compared example by example for {r.model} (its per-example rows do "
                          "not hold what it needs: a result stored before, or a metric that is not a sum over "
                          "examples such as ROC AUC or speed).")
        stats, value_of, binary = found
        out.append(Outcomes(r.model, stats, value_of, binary, metric_table.higher_is_better(metric)))
    return out, ""


def _scored_apart(results: list[TaskResult]) -> str:
    """Why these results cannot be compared example by example, or "": an endpoint scores a text without its first
    token (echo gives it no log-probability), a local model with it, so their perplexities are over different
    tokens and a paired test would call that a model difference."""
    unscored = {r.model: int(r.stats.get("unscored_tokens", 0) or 0) for r in results}
    without = sorted(m for m, n in unscored.items() if n)
    if not without or len(without) == len(results):
        return ""
    return (f"Not compared: {', '.join(without)} scored each text without its first token (an endpoint's echo gives "
            "it no log-probability), the others with it, so their values are over different tokens. Compare "
            "endpoints with endpoints (or serve the local model and add it as an endpoint).")


def compare_task(results: list[TaskResult], metric: str | None = None, *, margin: float | None = None,
                 n_resamples: int = 1000, seed: int = 0) -> TaskComparison:
    """Every pair of the (ok) results of one task on `metric` (its headline by default), not yet adjusted.

    When every model scored the same examples, all pairs share one bootstrap draw; otherwise each pair is
    compared on the examples both of its models scored (its own n), so one partial result does not shrink the
    others' comparisons."""
    results = [r for r in results if r.ok and r.per_example]
    task = results[0].task if results else ""
    if results and results[0].type == "speed":
        return TaskComparison(task, metric or "examples_per_s", 0, note=(
            "Speed is measured over repeated runs, not right or wrong per example: see its min–max range."))
    metric = metric or next((r.headline.name for r in results if r.headline), "accuracy")
    if len(results) < 2:
        return TaskComparison(task, metric, 0, note="Fewer than two models have per-example results on this task.")
    apart = _scored_apart(results)
    if apart:
        return TaskComparison(task, metric, 0, note=apart)
    if metric not in paired.POINT_METRICS:
        margin = None  # a margin in points of a 0–1 metric means nothing for perplexity, Brier, ...
    by_id = [_rows_by_id(r) for r in results]
    keys = [sorted(b, key=str) for b in by_id]
    if all(k == keys[0] for k in keys):
        outcomes, note = _outcomes(metric, results, by_id, keys[0])
        if outcomes is None:
            return TaskComparison(task, metric, len(keys[0]), note=note)
        pairs = paired.compare(outcomes, metric=metric, margin=margin, adjust="none", n_resamples=n_resamples,
                               seed=seed, task=task)
        return TaskComparison(task, metric, outcomes[0].stats.shape[0], pairs)
    pairs, notes = [], []
    for i in range(len(results)):
        for j in range(i + 1, len(results)):
            shared = sorted(set(by_id[i]) & set(by_id[j]), key=str)
            if not shared:
                notes.append(f"{results[i].model} and {results[j].model} share no examples.")
                continue
            outcomes, note = _outcomes(metric, [results[i], results[j]], [by_id[i], by_id[j]], shared)
            if outcomes is None:
                return TaskComparison(task, metric, 0, note=note)
            pairs += paired.compare(outcomes, metric=metric, margin=margin, adjust="none",
                                    n_resamples=n_resamples, seed=seed, task=task)
    notes.insert(0, "The models scored different examples (" + ", ".join(
        f"{r.model}: {len(b)}" for r, b in zip(results, by_id)) + "); each pair is compared on the examples both "
        "scored (its n in the table).")
    return TaskComparison(task, metric, max((p.n for p in pairs), default=0), pairs, note=" ".join(notes))


def compare_run(results: list[TaskResult], metric: str | None = None, *, models: list[str] | None = None,
                margin: float | None = None, adjust: str = multiple.HOLM, n_resamples: int = 1000,
                seed: int = 0) -> list[TaskComparison]:
    """Per task of a run: its pairs (among `models`, or all), p-values adjusted across every pair of every task,
    and the significance tiers that follow (only for models that were compared: a model without per-example
    rows gets no tier rather than tier 1)."""
    tasks = list(dict.fromkeys(r.task for r in results))
    found = []
    for task in tasks:
        picked = [r for r in results if r.task == task and (models is None or r.model in models)]
        if metric and not any(metric in (r.metrics or {}) or (r.headline and r.headline.name == metric)
                              for r in picked):
            continue
        found.append(compare_task(picked, metric, margin=margin, n_resamples=n_resamples, seed=seed))
    paired.adjust_all([p for t in found for p in t.pairs], adjust)
    for t in found:
        compared = list(dict.fromkeys(m for p in t.pairs for m in (p.model_a, p.model_b)))
        t.tiers = tiers.tiers(compared, t.pairs) if t.pairs else {}
    return found


def tier_table(comparisons: list[TaskComparison]) -> dict[str, dict[str, int]]:
    """{task: {model: tier}} for the leaderboard."""
    return {t.task: t.tiers for t in comparisons if t.tiers}


def text(comparisons: list[TaskComparison]) -> str:
    """Every verdict as plain text (the CLI prints it)."""
    lines = []
    for t in comparisons:
        lines.append(f"{t.task} · {t.metric} (n = {t.n})")
        if t.note:
            lines.append(f"  {t.note}")
        for p in t.pairs:
            lines.append(f"  {paired.verdict(p)}")
    return "\n".join(lines) if lines else "(nothing to compare)"


def pairs_table(comparisons: list[TaskComparison]):
    """One row per pair: both values, the difference with its paired interval, the test, the flips, the
    smallest detectable difference, the equivalence verdict and the sentence."""
    import pandas as pd

    rows = []
    for t in comparisons:
        for p in t.pairs:
            rows.append({
                "task": t.task, "metric": p.metric, "model A": p.model_a, "model B": p.model_b, "n": p.n,
                "A": p.value_a, "B": p.value_b,
                "B − A [95% CI]": f"{p.difference:+.3f} [{p.low:+.3f}, {p.high:+.3f}]",
                "test": p.test, "p": p.p_value, f"p ({p.adjustment})": p.p_adjusted,
                "A right → B wrong": p.a_right_b_wrong, "A wrong → B right": p.a_wrong_b_right,
                "detectable (MDE)": p.mde, "examples needed": p.examples_needed,
                "equivalence": p.equivalence or "", "verdict": paired.verdict(p)})
    return pd.DataFrame(rows)
