"""A variant against its parent on the same examples: agreement, flips, McNemar's test, equivalence.

`paired(parent_correct, variant_correct, parent_pred, variant_pred, margin=0.01, alpha=0.05)` takes the
per-example outcomes of both models, in the same example order, and returns a `PairedComparison`:

- the share of identical predictions (when the predictions are given);
- the 2×2 table of outcomes: both right, both wrong, right→wrong (the parent right, the variant wrong) and
  wrong→right;
- McNemar's exact test of "the variant is as often right as the parent": a two-sided binomial test of the
  right→wrong count among the discordant pairs at p = 1/2 (`scipy.stats.binomtest`); 1 when there are none;
- the paired accuracy difference (variant − parent) with its (1 − 2α) confidence interval, and an
  equivalence verdict at `margin` by the two one-sided tests (TOST, Schuirmann): equivalent at level α when
  the (1 − 2α) interval lies inside (−margin, +margin). With α = 0.05 that is the 90% interval, and the verdict
  reads "within `margin` of the parent at 95%".

The interval is Tango's score interval for a difference of paired proportions (Tango 1998, Statistics in
Medicine 17:891–908), made for equivalence tests in paired designs. It inverts the score test of
H0: Δ = Δ0, whose statistic is

    Z(Δ0) = (w − r − nΔ0) / sqrt(n (2 q̂ + Δ0 (1 − Δ0)))

with w the wrong→right count, r the right→wrong count, and q̂ the maximum-likelihood estimate, under H0, of
the probability of a right→wrong pair: the positive root of 2n q² + ((2n − w + r) Δ0 − w − r) q − r Δ0 (1 − Δ0)
(`_constrained_q`). The interval is every Δ0 with |Z(Δ0)| < z_(1−α); its ends are found by root finding. It
depends only on the discordant counts and n, stays inside [−1, 1], and behaves where simpler intervals fail:
with no discordant pair at all it still has width about z²/n on each side (Wald and Newcombe's hybrid
interval collapse to a point there, so ten identical predictions would "prove" equivalence).

Verdicts:
- "equivalent": the interval lies inside ±margin;
- "not equivalent (worse)": it lies wholly below −margin (the variant loses more than the margin);
- "not equivalent (better)": it lies wholly above +margin;
- "inconclusive (more data needed)": otherwise; `more_needed` estimates how many examples in all would make
  the interval fit inside the margin if the flips kept their observed rates, when it could (the observed
  difference lies inside the margin).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

EQUIVALENT = "equivalent"
WORSE = "not equivalent (worse)"
BETTER = "not equivalent (better)"
INCONCLUSIVE = "inconclusive (more data needed)"
VERDICTS = (EQUIVALENT, WORSE, BETTER, INCONCLUSIVE)
METHOD = "Tango's paired score interval"


@dataclass
class PairedComparison:
    """A variant against its parent on the same `n` examples (see the module's doc)."""

    n: int
    both_right: int
    both_wrong: int
    right_to_wrong: int             # the parent right, the variant wrong
    wrong_to_right: int             # the parent wrong, the variant right
    parent_accuracy: float | None
    variant_accuracy: float | None
    difference: float | None        # variant − parent accuracy (a share: 0.01 is one point)
    low: float | None               # the (1 − 2α) interval of the difference
    high: float | None
    mcnemar_p: float
    margin: float
    alpha: float
    verdict: str
    identical: int | None = None    # examples with the same prediction (None: predictions not given)
    more_needed: int | None = None  # about how many examples in all an inconclusive verdict needs
    method: str = METHOD

    @property
    def confidence(self) -> float:
        """The interval's level: 1 − 2α (0.90 for a test at α = 0.05)."""
        return 1 - 2 * self.alpha

    @property
    def identical_share(self) -> float | None:
        return None if self.identical is None or not self.n else self.identical / self.n

    @property
    def flips(self) -> int:
        return self.right_to_wrong + self.wrong_to_right

    def summary(self) -> str:
        """One line: the verdict, the difference with its interval against the margin, the test."""
        if not self.n:
            return f"{self.verdict}: no paired examples."
        pts = lambda x: f"{100 * x:+.2f}"
        where = {EQUIVALENT: "inside", WORSE: "below", BETTER: "above"}.get(self.verdict, "not inside")
        text = (f"{self.verdict}: difference {pts(self.difference)} points, {self.confidence:.0%} interval "
                f"[{pts(self.low)}, {pts(self.high)}] {where} ±{100 * self.margin:g} points "
                f"(equivalence test at {1 - self.alpha:.0%}); {self.right_to_wrong} right→wrong, "
                f"{self.wrong_to_right} wrong→right, McNemar p = {self.mcnemar_p:.3g}")
        if self.more_needed:
            text += f"; about {self.more_needed} examples would settle it"
        return text + "."

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict | None) -> "PairedComparison | None":
        if not values:
            return None
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


# ---------------------------------------------------------------- McNemar
def mcnemar_exact(right_to_wrong: int, wrong_to_right: int) -> float:
    """Two-sided exact McNemar p-value: the binomial test of the discordant pairs at p = 1/2 (1 without any)."""
    from scipy.stats import binomtest

    discordant = int(right_to_wrong) + int(wrong_to_right)
    if discordant == 0:
        return 1.0
    return float(binomtest(int(right_to_wrong), discordant, 0.5, alternative="two-sided").pvalue)


# ---------------------------------------------------------------- Tango's interval
def _constrained_q(n: int, w: int, r: int, delta0: float) -> float:
    """The maximum-likelihood probability of a right→wrong pair when the accuracy difference is `delta0`
    (Tango 1998, eq. 4: the positive root of 2n q² + B q + C = 0)."""
    a = 2.0 * n
    b = -w - r + (2.0 * n - w + r) * delta0
    c = -r * delta0 * (1.0 - delta0)
    disc = max(b * b - 4 * a * c, 0.0)
    return (math.sqrt(disc) - b) / (2 * a)


def tango_score(n: int, w: int, r: int, delta0: float) -> float:
    """Tango's score statistic for H0: (variant − parent accuracy) = delta0, from the wrong→right count `w`,
    the right→wrong count `r` and the number of examples `n`."""
    q = _constrained_q(n, w, r, delta0)
    # under H0 the wrong→right probability is q + delta0, and Var(w − r) = n (p_wr + p_rw − delta0²)
    variance = n * (2 * q + delta0 * (1 - delta0))
    if variance <= 0:
        return math.copysign(math.inf, w - r - n * delta0) if w - r - n * delta0 else 0.0
    return (w - r - n * delta0) / math.sqrt(variance)


def tango_interval(n: int, w: int, r: int, confidence: float = 0.90) -> tuple[float, float]:
    """Tango's score interval for the paired difference (w − r) / n at `confidence` (two-sided)."""
    from scipy.optimize import brentq
    from scipy.stats import norm

    if n <= 0:
        return (-1.0, 1.0)
    z = float(norm.ppf(1 - (1 - confidence) / 2))
    point = (w - r) / n
    eps = 1e-12

    def lower() -> float:
        f = lambda d: tango_score(n, w, r, d) - z       # the score falls as delta0 rises: +inf near -1, 0 at the point
        edge = -1.0 + eps
        if point <= edge or f(edge) <= 0:               # it never reaches z: the interval ends at -1
            return -1.0
        return float(brentq(f, edge, point, xtol=1e-12))

    def upper() -> float:
        f = lambda d: tango_score(n, w, r, d) + z
        edge = 1.0 - eps
        if point >= edge or f(edge) >= 0:
            return 1.0
        return float(brentq(f, point, edge, xtol=1e-12))

    return lower(), upper()


# ---------------------------------------------------------------- the comparison
def verdict(low: float | None, high: float | None, margin: float) -> str:
    if low is None or high is None:
        return INCONCLUSIVE
    if -margin < low and high < margin:
        return EQUIVALENT
    if high < -margin:
        return WORSE
    if low > margin:
        return BETTER
    return INCONCLUSIVE


def _more_needed(n: int, w: int, r: int, margin: float, confidence: float, most: int = 10**9) -> int | None:
    """The fewest examples in all whose interval, at the observed right→wrong and wrong→right rates, lies
    inside ±margin (None: it never would, the observed difference being at or beyond the margin). Found by
    bisection on Tango's interval with the counts scaled: its width shrinks as 1/sqrt(n) when pairs flip, but
    as 1/n when none do, so no single power law would do."""
    if abs(w - r) / n >= margin:
        return None

    def fits(size: int) -> bool:
        low, high = tango_interval(size, w * size / n, r * size / n, confidence)
        return -margin < low and high < margin

    low, high = n, 2 * n
    while not fits(high):
        low, high = high, 2 * high
        if high > most:
            return None
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if fits(middle) else (middle, high)
    return high


def paired(parent_correct, variant_correct, parent_pred=None, variant_pred=None, margin: float = 0.01,
           alpha: float = 0.05) -> PairedComparison:
    """Compare a variant with its parent on the same examples (one entry per example, same order).

    `margin` is a share (0.01: one accuracy point); `alpha` the level of each one-sided test (0.05: the 90%
    interval, "equivalent at 95%")."""
    pc = np.asarray(list(parent_correct), dtype=bool)
    vc = np.asarray(list(variant_correct), dtype=bool)
    if pc.shape != vc.shape:
        raise ValueError(f"{len(pc)} parent outcomes but {len(vc)} variant outcomes: they must be paired.")
    if not 0 < alpha < 0.5:
        raise ValueError("alpha must be between 0 and 0.5.")
    if margin <= 0:
        raise ValueError("The equivalence margin must be positive.")
    n = int(len(pc))
    identical = None
    if parent_pred is not None and variant_pred is not None:
        pp, vp = list(parent_pred), list(variant_pred)
        if len(pp) != n or len(vp) != n:
            raise ValueError("Predictions and outcomes must have one entry per example.")
        identical = int(sum(str(a) == str(b) for a, b in zip(pp, vp)))
    both_right = int((pc & vc).sum())
    both_wrong = int((~pc & ~vc).sum())
    r = int((pc & ~vc).sum())
    w = int((~pc & vc).sum())
    p_value = mcnemar_exact(r, w)
    if not n:
        return PairedComparison(0, 0, 0, 0, 0, None, None, None, None, None, p_value, margin, alpha, INCONCLUSIVE,
                                identical)
    low, high = tango_interval(n, w, r, 1 - 2 * alpha)
    difference = (w - r) / n
    decided = verdict(low, high, margin)
    more = _more_needed(n, w, r, margin, 1 - 2 * alpha) if decided == INCONCLUSIVE else None
    return PairedComparison(n, both_right, both_wrong, r, w, float(pc.mean()), float(vc.mean()), difference,
                            low, high, p_value, margin, alpha, decided, identical, more)
