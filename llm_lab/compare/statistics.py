"""The numbers of a comparison with their uncertainty, and the paired claim between its models.

- Per model, every number the Compare page, its exports and its share snapshot show, as an `Interval` (value,
  95% interval, the number of examples behind it, the method): accuracy against gold labels and exact match
  against references get the Wilson interval (honest at 0% and 100%); mean confidence, mean log-prob, BLEU and
  ROUGE the BCa bootstrap over the inputs.
- Agreement between the models (classification): a share of inputs, so Wilson too.
- When two or more models answered the same labelled inputs (classification with gold labels, generation with
  references), `paired` compares every pair on right/wrong (accuracy, or exact match) with `llm_lab.stats.paired`:
  the paired bootstrap interval of the difference, McNemar's exact test, the flips, the smallest detectable
  difference, an equivalence verdict at the user's margin and Holm-adjusted p-values. Without labels there is
  nothing to be right about: `no_paired_reason` says so, and only agreement is reported.
"""
from __future__ import annotations

import numpy as np

from ..stats import intervals, multiple, paired
from ..stats.intervals import Interval
from .runs import Comparison

N_RESAMPLES = 1000
SEED = 0
# shown names of the per-model numbers (in this order)
LABELS = {"accuracy": "accuracy (gold labels)", "exact_match": "exact match", "bleu": "BLEU", "rouge1": "ROUGE-1",
          "rougeL": "ROUGE-L", "mean_prob": "mean confidence", "mean_logprob": "mean log-prob"}
PAIRED_METRIC = {"classification": "accuracy", "generation": "exact_match"}


def mean_interval(values) -> Interval | None:
    """The mean of per-input scores with its BCa bootstrap interval over the inputs."""
    from ..metrics import intervals as metric_intervals

    values = np.asarray([v for v in values if v is not None], dtype=float)
    if not len(values):
        return None
    # BCa; when every resample agrees (one input, equal scores), a Wilson fallback on a 0–1 score, or no interval
    scale = (0.0, 1.0) if values.min() >= 0 and values.max() <= 1 else (-np.inf, np.inf)
    return metric_intervals.of_mean(values, seed=SEED, scale=scale)


def _share(sums: np.ndarray) -> np.ndarray:
    return sums[:, 0] / sums[:, 1]


def _bleu_interval(predictions: list[str], references: list[str]) -> Interval | None:
    """Corpus BLEU (sacrebleu, 0–100) with the BCa interval of its summed n-gram statistics over the inputs."""
    from ..metrics import bootstrap

    if not predictions:
        return None
    # the bootstrap module's per-example n-gram counts: corpus BLEU is a function of their sums
    from ..metrics import intervals as metric_intervals

    stats, value_of = bootstrap._stats_and_value("bleu", predictions, references)
    return metric_intervals.of_sums(stats, value_of, seed=SEED, scale=(0.0, 100.0))


def right_answers(comparison: Comparison) -> tuple[str, list[int], dict[str, np.ndarray]] | None:
    """(metric, the inputs with a gold label or reference, per working model whether it was right on each)."""
    gen = comparison.mode == "generation"
    gold_key = "reference" if gen else "label"
    labelled = [i for i, row in enumerate(comparison.inputs) if row.get(gold_key) not in (None, "")]
    if not labelled:
        return None
    right = {}
    for m in comparison.ok_models():
        rows = comparison.outputs[m].rows
        if gen:
            if not all("exact_match" in rows[i] for i in labelled):
                return None
            right[m] = np.array([rows[i]["exact_match"] > 0.5 for i in labelled])
        else:
            right[m] = np.array([str(rows[i]["label"]) == str(comparison.inputs[i]["label"]) for i in labelled])
    return PAIRED_METRIC[comparison.mode], labelled, right


def model_intervals(comparison: Comparison) -> dict[str, dict[str, Interval]]:
    """Per working model: metric -> Interval, for every number shown beside it (see LABELS)."""
    graded = right_answers(comparison)
    out = {}
    for m in comparison.ok_models():
        rows = comparison.outputs[m].rows
        found: dict[str, Interval | None] = {}
        if graded:
            metric, labelled, right = graded
            found[metric] = intervals.of_proportion(right[m])
        if comparison.mode == "generation":
            refs = [(i, row["reference"]) for i, row in enumerate(comparison.inputs) if row.get("reference")]
            if refs and all("rougeL" in rows[i] for i, _ in refs):
                found["bleu"] = _bleu_interval([rows[i]["text"] for i, _ in refs], [r for _, r in refs])
                found["rouge1"] = mean_interval([rows[i]["rouge1"] for i, _ in refs])
                found["rougeL"] = mean_interval([rows[i]["rougeL"] for i, _ in refs])
            found["mean_logprob"] = mean_interval([r.get("mean_logprob") for r in rows])
        else:
            found["mean_prob"] = mean_interval([r["prob"] for r in rows])
        out[m] = {k: found[k] for k in LABELS if found.get(k) is not None}
    return out


def agreement_intervals(comparison: Comparison) -> dict[str, Interval]:
    """Classification: the share of inputs all working models label the same ("all") and each pair's share
    ("A | B"), with Wilson intervals."""
    ok = comparison.ok_models()
    if comparison.mode != "classification" or len(ok) < 2:
        return {}
    labels = {m: [str(r["label"]) for r in comparison.outputs[m].rows] for m in ok}
    n = len(comparison.inputs)
    out = {"all": intervals.of_proportion([len({labels[m][i] for m in ok}) == 1 for i in range(n)])}
    for i, a in enumerate(ok):
        for b in ok[i + 1:]:
            out[f"{a} | {b}"] = intervals.of_proportion([x == y for x, y in zip(labels[a], labels[b])])
    return out


def no_paired_reason(comparison: Comparison) -> str | None:
    """Why there is no paired test of which model is better, or None when there is one."""
    if len(comparison.ok_models()) < 2:
        return "Fewer than two models ran without an error: nothing to compare."
    if right_answers(comparison) is None:
        if comparison.mode == "classification":
            return ("No gold labels: the models can be compared on how often they agree (above), not on which is "
                    "right more often, so there is no test of which is better. Give gold labels to get one.")
        return ("No references: the outputs can be compared side by side, not scored, so there is no test of which "
                "model is better. Give references to compare exact match.")
    return None


def paired_comparisons(comparison: Comparison, margin: float | None = None,
                       adjust: str = multiple.HOLM) -> list[paired.PairComparison]:
    """Every pair of working models on the labelled inputs (B − A, in the order of the comparison's models):
    right/wrong per input, McNemar's exact test, p-values adjusted across the pairs (`adjust`)."""
    graded = right_answers(comparison)
    if graded is None or len(graded[2]) < 2:
        return []
    metric, labelled, right = graded
    outcomes = [paired.Outcomes(m, np.column_stack([r.astype(float), np.ones(len(r))]), _share, binary=True)
                for m, r in right.items()]
    return paired.compare(outcomes, metric=metric, margin=margin, adjust=adjust, n_resamples=N_RESAMPLES, seed=SEED)


def model_rows(comparison: Comparison) -> list[dict]:
    """One row per model and number: value, interval, n and how the interval was made (the numbers' CSV)."""
    rows = []
    for m, found in model_intervals(comparison).items():
        for key, ci in found.items():
            rows.append({"model": m, "metric": LABELS[key], "value": ci.value, "low": ci.low, "high": ci.high,
                         "n": ci.n, "interval": ci.method, "shown": ci.text()})
    for pair, ci in agreement_intervals(comparison).items():
        rows.append({"model": "all models" if pair == "all" else pair, "metric": "agreement", "value": ci.value,
                     "low": ci.low, "high": ci.high, "n": ci.n, "interval": ci.method, "shown": ci.text()})
    return rows


def pair_rows(comparisons: list[paired.PairComparison]) -> list[dict]:
    """One row per pair, as the page and the exports show it (differences in points)."""
    rows = []
    for c in comparisons:
        rows.append({
            "A": c.model_a, "B": c.model_b, "metric": c.metric, "n": c.n,
            "A value": round(c.value_a, 4), "B value": round(c.value_b, 4),
            "B − A (points)": round(100 * c.difference, 2),
            f"{c.confidence:.0%} interval (points)": f"[{100 * c.low:+.1f}, {100 * c.high:+.1f}]",
            "A right → B wrong": c.a_right_b_wrong, "A wrong → B right": c.a_wrong_b_right,
            "McNemar p": round(c.p_value, 4), f"p ({c.adjustment})": round(c.p_adjusted, 4),
            "detectable (points)": round(100 * c.mde, 1),
            "examples needed": c.examples_needed,
            "equivalence": c.equivalence or "", "verdict": paired.verdict(c)})
    return rows
