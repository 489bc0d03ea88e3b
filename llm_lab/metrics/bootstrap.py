"""Bootstrap confidence intervals for a task's headline metric, vectorised with numpy.

Every supported metric is a function of per-example sufficient statistics summed over the examples
(hits for accuracy, a one-hot (true, predicted) pair for F1, NLL and token counts for perplexity,
n-gram counts for BLEU). A resample is a vector of example counts, so the resampled sums of all
B resamples are one matrix product `counts (B x n) @ stats (n x d)`, done in chunks to bound memory.
"""
from __future__ import annotations

import math

import numpy as np

_CHUNK_CELLS = 4_000_000  # resamples x examples per chunk (32 MB of float64)


def supports_bootstrap(name: str) -> bool:
    return name in _STATS


def resampled_sums(stats: np.ndarray, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """Sums of `stats` rows over `n_resamples` bootstrap resamples of the rows: (B, d)."""
    stats = np.asarray(stats, dtype=float)
    if stats.ndim == 1:
        stats = stats[:, None]
    n = len(stats)
    rng = np.random.default_rng(seed)
    out = np.empty((n_resamples, stats.shape[1]))
    chunk = max(1, _CHUNK_CELLS // max(n, 1))
    # small whole numbers (right/wrong, one-hot cells, counts) sum exactly in float32, at twice the speed
    exact32 = n < 2**24 and np.all(stats == np.round(stats)) and np.abs(stats).max(initial=0) * n < 2**24
    right = stats.astype(np.float32) if exact32 else stats
    for start in range(0, n_resamples, chunk):
        b = min(chunk, n_resamples - start)
        idx = rng.integers(0, n, size=(b, n))
        counts = np.bincount((idx + n * np.arange(b)[:, None]).ravel(), minlength=b * n).reshape(b, n)
        out[start:start + b] = counts.astype(right.dtype) @ right
    return out


# ---- per-metric: (per-example statistics, value from summed statistics) --------------------------

def _label_stats(predictions, references, labels=None):
    """One-hot confusion cells per example over every class seen, and which classes the average takes: `labels`
    (as scikit-learn's `labels=`: a prediction of another class still counts against them), else every class."""
    p = np.asarray(predictions)
    r = np.asarray(references)
    seen = sorted(set(p.tolist()) | set(r.tolist()))
    averaged = list(labels) if labels is not None else seen
    classes = averaged + [v for v in seen if v not in set(averaged)]
    index = {v: i for i, v in enumerate(classes)}
    k = len(classes)
    cells = np.array([index[a] * k + index[b] for a, b in zip(r.tolist(), p.tolist())])
    onehot = np.zeros((len(cells), k * k))
    onehot[np.arange(len(cells)), cells] = 1.0
    return onehot, k, len(averaged)


def _prf(sums: np.ndarray, k: int, which: str, averaged: int | None = None) -> np.ndarray:
    cm = sums.reshape(-1, k, k)  # rows true, columns predicted
    tp = np.einsum("bii->bi", cm)
    pred = cm.sum(axis=1)
    true = cm.sum(axis=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(pred > 0, tp / pred, 0.0)
        recall = np.where(true > 0, tp / true, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {"precision": precision, "recall": recall, "f1": f1}[which][:, :averaged or k].mean(axis=1)


def _bleu_stats(predictions, references):
    from sacrebleu.metrics import BLEU

    refs = [[r] if isinstance(r, str) else list(r) for r in references]
    streams = [list(x) for x in zip(*refs)]
    return np.asarray(BLEU()._extract_corpus_statistics(list(predictions), streams), dtype=float)


def _bleu_value(sums: np.ndarray) -> np.ndarray:
    """sacrebleu's corpus BLEU (exp smoothing, order 4) from summed statistics, vectorised."""
    sys_len, ref_len = sums[:, 0], sums[:, 1]
    correct, total = sums[:, 2:6], sums[:, 6:10]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        bp = np.where(sys_len < ref_len, np.where(sys_len > 0, np.exp(1 - ref_len / np.maximum(sys_len, 1e-9)), 0.0), 1.0)
        smooth = np.ones(len(sums))
        logs = np.zeros(len(sums))
        alive = np.ones(len(sums), dtype=bool)
        for n in range(4):
            alive &= total[:, n] > 0
            zero = correct[:, n] == 0
            smooth = np.where(alive & zero, smooth * 2, smooth)
            prec = np.where(zero, 100.0 / (smooth * np.maximum(total[:, n], 1)), 100.0 * correct[:, n] / np.maximum(total[:, n], 1))
            prec = np.where(alive, prec, 0.0)
            logs += np.where(prec > 0, np.log(np.maximum(prec, 1e-300)), -9999999999.0)
        score = bp * np.exp(logs / 4)
    return np.where(correct.sum(axis=1) > 0, score, 0.0)


def _stats_and_value(name, predictions, references, **kw):
    if name in ("accuracy", "exact_match", "mean"):
        if name == "accuracy":
            values = (np.asarray(predictions) == np.asarray(references)).astype(float)
        elif name == "exact_match":
            from . import compute  # the module's own normalisation decides what a match is

            values = np.asarray(compute("exact_match", predictions, references, **kw)["matches"], dtype=float)
        else:  # per-example scores given as predictions
            values = np.asarray(predictions, dtype=float)
        stats = np.stack([values, np.ones_like(values)], axis=1)
        return stats, lambda s: s[:, 0] / s[:, 1]
    if name in ("precision", "recall", "f1"):
        stats, k, averaged = _label_stats(predictions, references, kw.get("labels"))
        return stats, lambda s: _prf(s, k, name, averaged)
    if name in ("perplexity", "bits_per_byte"):
        nll = np.array([-float(np.sum(x)) for x in predictions])
        tokens = np.array([len(x) for x in predictions], dtype=float)
        if name == "perplexity":
            return np.stack([nll, tokens], axis=1), lambda s: np.exp(s[:, 0] / np.maximum(s[:, 1], 1))
        nbytes = np.asarray(kw["num_bytes"], dtype=float)
        return np.stack([nll, nbytes], axis=1), lambda s: s[:, 0] / (math.log(2) * np.maximum(s[:, 1], 1))
    if name == "bleu":
        return _bleu_stats(predictions, references), _bleu_value
    raise KeyError(name)


_STATS = {"accuracy", "exact_match", "mean", "precision", "recall", "f1", "perplexity", "bits_per_byte", "bleu"}


def bootstrap_ci(name: str, predictions, references=None, n_resamples: int = 1000, confidence: float = 0.95,
                 seed: int = 0, **kw) -> dict | None:
    """Percentile bootstrap interval of metric `name` (resampling examples), or None if unsupported.

    `name` is one of accuracy, exact_match, precision/recall/f1 (macro), perplexity, bits_per_byte
    (needs num_bytes=), bleu, or "mean" (predictions are per-example scores). Returns
    {"value", "low", "high", "std", "confidence", "n_resamples", "seed"}.
    """
    if name not in _STATS:
        return None
    predictions = list(predictions)
    if not predictions:
        return None
    if name in ("accuracy", "precision", "recall", "f1") and any(isinstance(v, str) for v in predictions + list(references)):
        names = {v: i for i, v in enumerate(sorted({str(v) for v in predictions + list(references)}))}
        predictions = [names[str(v)] for v in predictions]
        references = [names[str(v)] for v in references]
        kw.pop("labels", None)
    stats, value_of = _stats_and_value(name, predictions, references, **kw)
    point = float(value_of(stats.sum(axis=0, keepdims=True))[0])
    values = value_of(resampled_sums(stats, n_resamples, seed))
    alpha = (1 - confidence) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return {
        "value": point, "low": float(low), "high": float(high), "std": float(values.std(ddof=1)),
        "confidence": confidence, "n_resamples": n_resamples, "seed": seed,
    }
