"""The interval of every metric a task reports, each made the way that stays honest for it.

- Shares of right answers (accuracy, acc_norm, exact match, flip rates): the Wilson score interval. It keeps
  its width at 0% and 100% (10 of 10 right: [0.722, 1.000]), where a bootstrap collapses to a point.
- Metrics that are a function of per-example sums (macro precision/recall/F1, perplexity, bits per byte,
  BLEU, chrF, means of per-example scores such as ROUGE, ECE, Brier, NLL): the BCa bootstrap of
  `stats.intervals.bca` over the vectorised resampled sums of `metrics.bootstrap`. When every resample gives
  the same value, the Wilson interval of the share of examples agreeing with the outcome stands in (said so).
- ROC AUC (not a sum): a percentile bootstrap; two classes are ranked for all resamples at once.

Every function returns a `stats.intervals.Interval` (value, low, high, n, method), which results store as a
dict per metric (`TaskResult.intervals`).
"""
from __future__ import annotations

import numpy as np

from ..stats import intervals as iv
from ..stats.intervals import Interval

N_RESAMPLES = 1000
PROPORTIONS = frozenset({"accuracy", "acc_norm", "exact_match", "flip_rate", "failure_rate"})
INF = float("inf")
# the range a metric can take (where the fallback interval of a degenerate bootstrap is laid); 0–1 otherwise
SCALES = {"ece": (0.0, 1.0), "ece_adaptive": (0.0, 1.0), "brier": (0.0, 2.0), "log_loss": (0.0, INF),
          "nll": (0.0, INF), "perplexity": (1.0, INF), "byte_perplexity": (1.0, INF), "word_perplexity": (1.0, INF),
          "bits_per_byte": (0.0, INF), "bleu": (0.0, 100.0), "chrf": (0.0, 100.0)}


def scale_of(metric: str) -> tuple[float, float]:
    return SCALES.get(metric, (0.0, 1.0))


def of_hits(hits, confidence: float = 0.95) -> Interval:
    """Wilson interval of a share of 0/1 outcomes."""
    return iv.of_proportion(np.asarray(hits, dtype=float), confidence)


def of_sums(stats, value_of, *, n_resamples: int = N_RESAMPLES, seed: int = 0, confidence: float = 0.95,
            agree: int | None = None, scale: tuple[float, float] = (0.0, 1.0)) -> Interval:
    """BCa interval of `value_of(sums of stats)`; when it cannot vary, the Wilson fallback on `agree` examples."""
    stats = np.asarray(stats, dtype=float)
    n = len(stats)
    if n == 0:
        return Interval(None, None, None, 0, iv.BCA, confidence)
    point, low, high, _ = iv.bca(stats, value_of, n_resamples, confidence, seed)
    if low == high:
        if not np.isfinite(scale[1] - scale[0]):  # no range to lay a share on (perplexity): say there is none
            return Interval(point, None, None, n, iv.NO_SPREAD, confidence, n_resamples)
        low, high = iv.degenerate_fallback(point, n if agree is None else agree, n, confidence, scale)
        return Interval(point, low, high, n, iv.FALLBACK, confidence, n_resamples)
    return Interval(point, low, high, n, iv.BCA, confidence, n_resamples)


def of_mean(values, *, seed: int = 0, scale: tuple[float, float] = (0.0, 1.0), **kw) -> Interval:
    """BCa interval of the mean of per-example scores."""
    values = np.asarray(values, dtype=float)
    stats = np.stack([values, np.ones_like(values)], axis=1) if len(values) else np.zeros((0, 2))
    return of_sums(stats, lambda s: np.atleast_2d(s)[:, 0] / np.maximum(np.atleast_2d(s)[:, 1], 1), seed=seed,
                   scale=scale, **kw)


def of_labels(name: str, predictions, references, labels=None, *, seed: int = 0) -> Interval:
    """Macro precision / recall / F1 from predicted and true class indices."""
    from .bootstrap import _label_stats, _prf

    stats, k, averaged = _label_stats(predictions, references, labels)
    right = int(np.sum(np.asarray(predictions) == np.asarray(references)))
    return of_sums(stats, lambda s: _prf(np.atleast_2d(s), k, name, averaged), seed=seed, agree=right)


def _ratio(s):
    s = np.atleast_2d(s)
    return s[:, 0] / np.maximum(s[:, 1], 1)


def of_perplexity(per_text_logprobs, *, seed: int = 0, num_bytes=None, num_words=None) -> dict[str, Interval]:
    """Perplexity and mean NLL (per token), bits per byte, byte and word perplexity from each text's token
    log-probabilities: all ratios of per-text sums, so one BCa bootstrap each."""
    nll = np.array([-float(np.sum(x)) for x in per_text_logprobs])
    tokens = np.array([len(x) for x in per_text_logprobs], dtype=float)
    huge = (0.0, float("inf"))
    per_token = np.stack([nll, tokens], axis=1)
    out = {"perplexity": of_sums(per_token, lambda s: np.exp(_ratio(s)), seed=seed, scale=huge),
           "nll": of_sums(per_token, _ratio, seed=seed, scale=huge)}
    if num_words is not None:
        out["word_perplexity"] = of_sums(np.stack([nll, np.asarray(num_words, dtype=float)], axis=1),
                                         lambda s: np.exp(_ratio(s)), seed=seed, scale=huge)
    if num_bytes is not None:
        stats = np.stack([nll, np.asarray(num_bytes, dtype=float)], axis=1)
        out["bits_per_byte"] = of_sums(stats, lambda s: np.atleast_2d(s)[:, 0] / (np.log(2) * np.maximum(
            np.atleast_2d(s)[:, 1], 1)), seed=seed, scale=huge)
        out["byte_perplexity"] = of_sums(stats, lambda s: np.exp(np.atleast_2d(s)[:, 0] / np.maximum(
            np.atleast_2d(s)[:, 1], 1)), seed=seed, scale=huge)
    return out


def of_sacrebleu(name: str, predictions, references, *, seed: int = 0, **kw) -> Interval:
    """BLEU or chrF: sacrebleu's per-sentence statistics, summed per resample, scored by sacrebleu itself."""
    from sacrebleu.metrics import BLEU, CHRF

    scorer = BLEU() if name == "bleu" else CHRF(**{k: v for k, v in kw.items() if k in (
        "char_order", "word_order", "beta", "lowercase", "whitespace")})
    refs = [[r] if isinstance(r, str) else list(r) for r in references]
    stats = np.asarray(scorer._extract_corpus_statistics(list(predictions), [list(x) for x in zip(*refs)]),
                       dtype=float)

    def value_of(sums):
        sums = np.atleast_2d(sums)
        return np.array([scorer._compute_score_from_stats(list(row)).score for row in sums])

    return of_sums(stats, value_of, seed=seed, scale=(0.0, 100.0))


def of_roc_auc(scores, references, *, seed: int = 0, n_resamples: int = N_RESAMPLES,
               confidence: float = 0.95) -> Interval:
    """ROC AUC with a percentile bootstrap of the examples (resamples missing a class are skipped)."""
    from scipy.stats import rankdata
    from sklearn.metrics import roc_auc_score

    scores = np.asarray(scores, dtype=float)
    refs = np.asarray(references)
    n = len(refs)
    classes = sorted(set(refs.tolist()))
    if n == 0 or len(classes) < 2:
        return Interval(None, None, None, n, iv.PERCENTILE, confidence, n_resamples)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_resamples, n))
    if scores.ndim == 2 and scores.shape[1] == 2:
        scores = scores[:, 1]
    if scores.ndim == 1:
        positive = (refs == classes[-1]).astype(float)
        point = float(roc_auc_score(positive, scores))
        pos = positive[idx]
        ranks = rankdata(scores[idx], axis=1)  # average ranks for ties, every resample at once
        n1 = pos.sum(axis=1)
        n0 = n - n1
        with np.errstate(divide="ignore", invalid="ignore"):
            values = ((ranks * pos).sum(axis=1) - n1 * (n1 + 1) / 2) / (n1 * n0)
        values = values[(n1 > 0) & (n0 > 0)]
    else:  # several classes: one-vs-rest macro AUC per resample, as the roc_auc metric module computes it
        from . import compute

        point = compute("roc_auc", scores.tolist(), refs.tolist())["roc_auc"]
        values = []
        for row in idx[: min(n_resamples, 300)]:
            if len(set(refs[row].tolist())) == len(classes):
                values.append(compute("roc_auc", scores[row].tolist(), refs[row].tolist())["roc_auc"])
        values = np.asarray(values, dtype=float)
        n_resamples = min(n_resamples, 300)
    if len(values) < 2:
        return Interval(point, None, None, n, iv.PERCENTILE, confidence, n_resamples)
    tail = (1 - confidence) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return Interval(point, float(min(low, point)), float(max(high, point)), n, iv.PERCENTILE, confidence,
                    n_resamples)


def of_calibration(probs, labels, *, seed: int = 0) -> dict[str, Interval]:
    """ECE (15 equal-width bins and adaptive bins), Brier and log loss (the NLL of the true class, named as
    scikit-learn names it, apart from a language model's per-token `nll`), each with its BCa interval."""
    from ..stats import calibration as cal

    out = {}
    for name, adaptive in (("ece", False), ("ece_adaptive", True)):
        stats, value_of = cal.ece_stats(probs, labels, adaptive=adaptive)
        out[name] = of_sums(stats, value_of, seed=seed, scale=SCALES[name])
    out["brier"] = of_mean(cal.brier_stats(probs, labels), seed=seed, scale=SCALES["brier"])
    out["log_loss"] = of_mean(cal.nll_stats(probs, labels), seed=seed, scale=SCALES["log_loss"])
    return out
