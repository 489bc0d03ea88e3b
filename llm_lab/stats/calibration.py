"""How far a classifier's confidence can be trusted.

- Top-label ECE (expected calibration error): the examples binned by their top probability, the mean
  |accuracy − confidence| of the bins weighted by their size; 15 equal-width bins (Guo et al. 2017), and
  adaptive bins holding equal numbers of examples (Nixon et al. 2019).
- Brier score as scikit-learn's `brier_score_loss` computes it (two classes: the squared error of the second
  class's probability; more classes: the sum over classes, averaged over examples) and the negative
  log-likelihood (`log_loss`), both from the full probability vectors.
- The reliability diagram's bins: per bin its mean confidence, its accuracy, its count.
- Temperature scaling (Guo et al. 2017): one T > 0 dividing the log-probabilities, fitted by minimising the
  NLL on held-out (validation) examples; the model is unchanged, the temperature is stored with the result.

ECE is a function of per-bin sums (count, confidence, right answers), so `ece_stats` gives per-example
statistics the bootstrap of `stats.intervals` resamples like any other metric (the bin edges stay fixed).
"""
from __future__ import annotations

import numpy as np

BINS = 15


def _probs(probs) -> np.ndarray:
    p = np.asarray(probs, dtype=float)
    return p / p.sum(axis=1, keepdims=True)


MIN_PER_ADAPTIVE_BIN = 10


def bin_edges(confidence: np.ndarray, bins: int = BINS, adaptive: bool = False) -> np.ndarray:
    """Equal-width edges, or (adaptive) edges at quantiles of the confidences. Adaptive bins hold at least
    MIN_PER_ADAPTIVE_BIN examples each (fewer bins on a small test set): with one example per bin, adaptive ECE
    is just the mean |right − confidence|, however well calibrated the model is."""
    if not adaptive:
        return np.linspace(0.0, 1.0, bins + 1)
    bins = max(1, min(bins, len(confidence) // MIN_PER_ADAPTIVE_BIN))
    edges = np.quantile(confidence, np.linspace(0, 1, bins + 1))
    edges[0], edges[-1] = 0.0, 1.0
    return edges


def _bin_index(confidence: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bins (lo, hi], the first one [0, hi]."""
    return np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, len(edges) - 2)


def ece_stats(probs, labels, bins: int = BINS, adaptive: bool = False) -> tuple[np.ndarray, object]:
    """Per-example statistics (n, 3·bins: one-hot bin × [1, confidence, right]) and the ECE of summed ones."""
    p = _probs(probs)
    labels = np.asarray(labels, dtype=int)
    conf = p.max(axis=1)
    right = (p.argmax(axis=1) == labels).astype(float)
    edges = bin_edges(conf, bins, adaptive)
    k = len(edges) - 1
    idx = _bin_index(conf, edges)
    stats = np.zeros((len(conf), 3 * k))
    rows = np.arange(len(conf))
    stats[rows, idx] = 1.0
    stats[rows, k + idx] = conf
    stats[rows, 2 * k + idx] = right

    def value_of(sums: np.ndarray) -> np.ndarray:
        sums = np.atleast_2d(sums)
        count, c, r = sums[:, :k], sums[:, k:2 * k], sums[:, 2 * k:]
        return np.abs(c - r).sum(axis=1) / np.maximum(count.sum(axis=1), 1e-12)

    return stats, value_of


def ece(probs, labels, bins: int = BINS, adaptive: bool = False) -> float:
    stats, value_of = ece_stats(probs, labels, bins, adaptive)
    return float(value_of(stats.sum(axis=0))[0])


def reliability(probs, labels, bins: int = BINS) -> list[dict]:
    """The reliability diagram's non-empty bins: range, mean confidence, accuracy, count."""
    p = _probs(probs)
    conf = p.max(axis=1)
    right = p.argmax(axis=1) == np.asarray(labels, dtype=int)
    edges = bin_edges(conf, bins)
    idx = _bin_index(conf, edges)
    out = []
    for b in range(len(edges) - 1):
        m = idx == b
        if m.any():
            out.append({"low": float(edges[b]), "high": float(edges[b + 1]), "confidence": float(conf[m].mean()),
                        "accuracy": float(right[m].mean()), "count": int(m.sum())})
    return out


def brier_stats(probs, labels) -> np.ndarray:
    """Per-example Brier terms, as sklearn's brier_score_loss averages them."""
    p = _probs(probs)
    labels = np.asarray(labels, dtype=int)
    onehot = np.zeros_like(p)
    onehot[np.arange(len(p)), labels] = 1.0
    if p.shape[1] == 2:
        return (p[:, 1] - onehot[:, 1]) ** 2
    return ((p - onehot) ** 2).sum(axis=1)


def nll_stats(probs, labels) -> np.ndarray:
    """Per-example negative log-likelihood of the true class (probabilities clipped as log_loss does)."""
    p = _probs(probs)
    eps = np.finfo(p.dtype).eps
    true = np.clip(p[np.arange(len(p)), np.asarray(labels, dtype=int)], eps, 1 - eps)
    return -np.log(true)


def scaled(probs, temperature: float) -> np.ndarray:
    """The probabilities with the log-probabilities divided by `temperature` (softmax again)."""
    logp = np.log(np.clip(_probs(probs), 1e-300, 1.0)) / float(temperature)
    logp -= logp.max(axis=1, keepdims=True)
    e = np.exp(logp)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(probs, labels) -> float:
    """The T in [0.05, 20] minimising the mean NLL of `scaled(probs, T)` on these (held-out) examples."""
    from scipy.optimize import minimize_scalar

    labels = np.asarray(labels, dtype=int)
    found = minimize_scalar(lambda log_t: nll_stats(scaled(probs, np.exp(log_t)), labels).mean(),
                            bounds=(np.log(0.05), np.log(20.0)), method="bounded", options={"xatol": 1e-5})
    return float(np.exp(found.x))
