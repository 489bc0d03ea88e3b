"""The final evaluation's uncertainty, and the fine-tuned model against its base on the same held-out rows.

- Classification: accuracy with its Wilson interval (honest at 0% and 100% and at a 10-row split), macro-F1 with
  the BCa bootstrap over the held-out rows (`metrics.bootstrap`'s per-example confusion cells).
- Language models: perplexity with the BCa bootstrap over the held-out rows, each row's summed negative
  log-likelihood and scored token count as its statistics (perplexity = exp(Σ nll / Σ tokens)).
- Against the base (causal LM fine-tunes): the base scores the same held-out rows through `llm_lab.inference`,
  loaded as the export's unchanged-model check loads it (CPU, float32; the registry keeps it for that check), when
  the held-out split is small enough to be cheap (BASE_TOKEN_LIMIT). `llm_lab.stats.paired` then gives the
  difference with its paired bootstrap interval, the paired permutation test and the smallest detectable
  difference. A classifier's base is not compared: its head is new (random) or its labels are others.

- Before and after (causal LM fine-tunes on prompt/completion pairs): both models' greedy answers to held-out
  prompts with chrF against the references (`before_after.py`), in `Evaluation.before_after`.

`Evaluation.to_dict()` is stored with the training result and the model's metadata, so pages and the model card
show the intervals without the per-example numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..stats import intervals, paired
from ..stats.intervals import Interval

N_RESAMPLES = 1000
SEED = 0
BASE_TOKEN_LIMIT = 100_000   # held-out tokens the base scores on CPU in about a minute or less
HEADLINE = {"classify": "eval_accuracy"}   # else eval_perplexity


@dataclass
class Evaluation:
    intervals: dict = field(default_factory=dict)     # metric (eval_accuracy, …) -> Interval.to_dict()
    base: dict | None = None                          # PairComparison.to_dict() of fine-tuned (B) vs base (A)
    note: str = ""                                    # why there is no base comparison
    before_after: dict = field(default_factory=dict)  # before_after.compare(): held-out answers of base and model

    def to_dict(self) -> dict:
        out = {"intervals": self.intervals, "base": self.base, "note": self.note}
        return dict(out, before_after=self.before_after) if self.before_after else out


def classification(logits, labels) -> dict[str, Interval]:
    """Accuracy (Wilson) and macro-F1 (BCa) of the held-out predictions."""
    from ..metrics import intervals as metric_intervals

    predictions = np.asarray(logits).argmax(axis=-1)
    labels = np.asarray(labels)
    out = {"eval_accuracy": intervals.of_proportion(predictions == labels)}
    # macro-F1 over the classes seen in either, as task_metrics' scikit-learn call averages; BCa, with the
    # Wilson fallback when every resample agrees (all right: never [1.000, 1.000])
    out["eval_f1"] = metric_intervals.of_labels("f1", predictions.tolist(), labels.tolist(), seed=SEED)
    return out


def perplexity_stats(nll, tokens) -> np.ndarray:
    return np.column_stack([np.asarray(nll, dtype=float), np.asarray(tokens, dtype=float)])


def perplexity_of(sums: np.ndarray) -> np.ndarray:
    return np.exp(np.minimum(sums[:, 0] / np.maximum(sums[:, 1], 1), 50))


def perplexity(nll, tokens) -> Interval:
    """Perplexity over the held-out rows with its BCa interval (rows resampled, tokens weighed as in the value)."""
    from ..metrics import intervals as metric_intervals

    return metric_intervals.of_sums(perplexity_stats(nll, tokens), perplexity_of, seed=SEED,
                                    scale=metric_intervals.scale_of("perplexity"))


def against_base(base: str, model: str, base_scores: tuple, scores: tuple) -> paired.PairComparison:
    """The fine-tuned model (B) against its base (A) on perplexity over the same held-out rows."""
    outcomes = [paired.Outcomes(name, perplexity_stats(*s), perplexity_of, higher_is_better=False)
                for name, s in ((base, base_scores), (model, scores))]
    return paired.compare(outcomes, metric="perplexity", n_resamples=N_RESAMPLES, seed=SEED, adjust="none")[0]


def headline(task: str, evaluation: dict | None) -> tuple[str, Interval] | None:
    """The run's headline metric and its interval from a stored evaluation (None: none stored)."""
    found = (evaluation or {}).get("intervals") or {}
    name = HEADLINE.get(task, "eval_perplexity")
    ci = Interval.from_dict(found.get(name))
    return (name.removeprefix("eval_"), ci) if ci else None


def lines(evaluation: dict | None) -> list[str]:
    """The evaluation in words: each metric "value [low, high] n=…" and the comparison with the base."""
    if not evaluation:
        return []
    from .before_after import summary

    out = [f"{name.removeprefix('eval_')}: {Interval.from_dict(ci).text()} (95% {ci['method']} over the held-out "
           "rows)" for name, ci in (evaluation.get("intervals") or {}).items()]
    answers = summary(evaluation.get("before_after"))
    return out + ([base_line(evaluation)] if base_line(evaluation) else []) + ([answers] if answers else [])


def base_line(evaluation: dict | None) -> str:
    """The fine-tuned model against its base in one sentence, or why it was not compared ("" when neither)."""
    evaluation = evaluation or {}
    if evaluation.get("base"):
        return f"Against the base model on the same held-out rows: {evaluation['base']['verdict']}"
    return evaluation.get("note") or ""


def is_cheap(tokens) -> bool:
    return float(np.sum(tokens)) <= BASE_TOKEN_LIMIT and math.isfinite(float(np.sum(tokens)))
