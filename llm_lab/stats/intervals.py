"""Confidence intervals that stay honest at small n and at 0% or 100%.

- Proportions (accuracy, exact match, flip rates): the Wilson score interval (`scipy.stats.binomtest`'s
  `proportion_ci(method="wilson")`), or Clopper–Pearson ("exact"). 10 of 10 right gives [0.72, 1.00] (Wilson),
  [0.69, 1.00] (Clopper–Pearson); a percentile bootstrap gives [1.00, 1.00], which is why proportions do not
  use it.
- Anything else that is a function of per-example sums (F1, precision, recall, perplexity, BLEU, Brier, ECE):
  the BCa bootstrap (bias-corrected and accelerated, Efron 1987), on the vectorised resampled sums of
  `metrics.bootstrap`. The acceleration comes from the jackknife, which for a sum statistic is one vector
  operation (the total minus each example's row).
- When every resample gives the same value (every example right, say) a bootstrap says nothing about the
  uncertainty. `degenerate_fallback` then gives the Wilson interval of the share of examples that agree with
  the observed outcome, scaled onto the metric, and the result says so.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

WILSON = "Wilson score interval"
CLOPPER_PEARSON = "Clopper–Pearson exact interval"
BCA = "BCa bootstrap"
PERCENTILE = "percentile bootstrap"
FALLBACK = "Wilson interval (every resample equal)"
NO_SPREAD = "no interval: every resample gives the same value (too few examples)"


@dataclass
class Interval:
    """A value with its interval, the number of examples behind it and how the interval was made."""

    value: float | None
    low: float | None
    high: float | None
    n: int
    method: str
    confidence: float = 0.95
    n_resamples: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict | None) -> "Interval | None":
        if not values:
            return None
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in names})

    def text(self, digits: int | None = None) -> str:
        return fmt(self.value, self.low, self.high, self.n, digits)


def fmt(value, low=None, high=None, n=None, digits: int | None = None) -> str:
    """"0.900 [0.596, 0.982] n=10": the value, its interval (never a "±" that hides an asymmetric one) and n."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "—"
    if digits is None:
        digits = 3 if abs(value) < 10 else 1
    text = f"{value:.{digits}f}"
    if low is not None and high is not None:
        text += f" [{low:.{digits}f}, {high:.{digits}f}]"
    if n:
        text += f" n={int(n)}"
    return text


def proportion(k: int, n: int, confidence: float = 0.95, method: str = "wilson") -> tuple[float, float]:
    """Interval of a proportion k/n: method "wilson" (the default) or "exact" (Clopper–Pearson)."""
    from scipy.stats import binomtest

    if n <= 0:
        return (0.0, 1.0)
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method=method)
    return float(ci.low), float(ci.high)


def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    return proportion(k, n, confidence, "wilson")


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    return proportion(k, n, confidence, "exact")


def of_proportion(hits, confidence: float = 0.95) -> Interval:
    """The Wilson interval of the mean of 0/1 outcomes (one per example)."""
    hits = np.asarray(hits, dtype=float)
    n = int(len(hits))
    k = int(round(hits.sum()))
    low, high = wilson(k, n, confidence)
    return Interval(k / n if n else None, low, high, n, WILSON, confidence)


def bca(stats: np.ndarray, value_of, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0,
        resampled: np.ndarray | None = None) -> tuple[float, float, float, np.ndarray]:
    """BCa interval of `value_of(summed stats)` over examples whose per-example statistics are `stats` (n, d).

    Returns (point, low, high, the resampled values). `resampled` (B, d): sums already drawn (a paired
    comparison draws them once for several models)."""
    from scipy.stats import norm

    from ..metrics.bootstrap import resampled_sums

    stats = np.asarray(stats, dtype=float)
    if stats.ndim == 1:
        stats = stats[:, None]
    total = stats.sum(axis=0, keepdims=True)
    point = float(value_of(total)[0])
    sums = resampled if resampled is not None else resampled_sums(stats, n_resamples, seed)
    values = np.asarray(value_of(sums), dtype=float)
    alpha = (1 - confidence) / 2
    finite = values[np.isfinite(values)]
    if len(finite) < 2 or np.ptp(finite) == 0:
        return point, point, point, values
    # bias correction: where the point estimate sits in the bootstrap distribution (ties count half)
    share = (np.sum(finite < point) + 0.5 * np.sum(finite == point)) / len(finite)
    share = min(max(share, 1 / (2 * len(finite))), 1 - 1 / (2 * len(finite)))
    z0 = norm.ppf(share)
    # acceleration from the jackknife: each leave-one-out value is the total minus that example's row
    jack = np.asarray(value_of(total - stats), dtype=float)
    jack = jack[np.isfinite(jack)]
    d = jack.mean() - jack
    denom = 6.0 * (np.sum(d ** 2) ** 1.5)
    a = float(np.sum(d ** 3) / denom) if denom > 0 else 0.0
    qs = []
    for z_alpha in (norm.ppf(alpha), norm.ppf(1 - alpha)):
        z = z0 + (z0 + z_alpha) / (1 - a * (z0 + z_alpha))
        qs.append(float(norm.cdf(z)))
    low, high = np.quantile(finite, qs)
    return point, float(low), float(high), values


def degenerate_fallback(value: float, agree: int, n: int, confidence: float = 0.95,
                        scale: tuple[float, float] = (0.0, 1.0)) -> tuple[float, float]:
    """An interval for a metric whose bootstrap cannot vary: the Wilson interval of the share of examples
    agreeing with the observed outcome (`agree` of `n`), laid on the metric's range `scale` around `value`."""
    low, high = wilson(agree, n, confidence)
    lo_s, hi_s = scale
    width_down, width_up = (agree / n - low) if n else 1.0, (high - agree / n) if n else 1.0
    span = hi_s - lo_s
    return max(lo_s, value - width_down * span), min(hi_s, value + width_up * span)
