"""Two or more models on the same examples: is the difference real, and how large could it be?

Every model's per-example statistics (`Outcomes`: an (n, d) matrix whose column sums give the metric through
`value_of`, as in `metrics.bootstrap`) come in the same example order. Per pair (A, B):

- the difference B − A with a **paired bootstrap** interval: the same resampled examples for every model
  (one draw of counts for all models, so 10 models × 10,000 examples × 1,000 resamples is one chunked matrix
  product), percentile interval;
- the test: **McNemar's exact test** when the metric is a share of right answers (the binomial test of the
  discordant pairs), else a **paired permutation test** (each example's two rows swapped at random, 2,000
  times, the same swaps for every pair; p = (1 + as extreme) / (1 + permutations), and beyond the reach of
  2,000 permutations the normal tail of the permutation distribution, so p has no floor at 1/2001);
- the flips (A right → B wrong and A wrong → B right) for right/wrong metrics;
- the **minimum detectable effect** at this sample size (two-sided α, 80% power: (z₁₋α/₂ + z₀.₈) × the
  standard error of the difference; for right/wrong metrics the standard error is √(discordant share / n),
  with at least one discordant pair, so two identical models do not "detect" everything), and how many
  examples would detect the observed difference;
- an **equivalence** verdict at a margin (two one-sided tests: the (1 − 2α) interval inside ±margin; Tango's
  paired score interval for right/wrong metrics, as compress does, the paired bootstrap for the others).

`compare` adjusts the p-values of all pairs (Holm by default; see `multiple`) and writes each verdict in
plain words.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from . import equivalence, multiple

POWER = 0.8
PERMUTATIONS = 2000


@dataclass
class Outcomes:
    """One model's per-example statistics on a task, in the shared example order."""

    model: str
    stats: np.ndarray            # (n, d)
    value_of: object             # (B, d) sums -> (B,) metric values
    binary: bool = False         # stats are [right, 1] per example: McNemar, flips and Tango apply
    higher_is_better: bool = True

    @property
    def value(self) -> float:
        return float(self.value_of(self.stats.sum(axis=0, keepdims=True))[0])

    @property
    def right(self) -> np.ndarray:
        return self.stats[:, 0] > 0.5


@dataclass
class PairComparison:
    """B against A on the same n examples (difference = B − A, in the metric's own units)."""

    metric: str
    model_a: str
    model_b: str
    n: int
    value_a: float
    value_b: float
    difference: float
    low: float                   # paired bootstrap interval of the difference
    high: float
    confidence: float
    test: str                    # "McNemar exact" | "paired permutation"
    p_value: float
    mde: float                   # smallest difference detectable at this n (α two-sided, 80% power)
    higher_is_better: bool = True
    a_right_b_wrong: int | None = None
    a_wrong_b_right: int | None = None
    examples_needed: int | None = None   # to detect the observed difference at 80% power
    margin: float | None = None
    equivalence_low: float | None = None
    equivalence_high: float | None = None
    equivalence: str | None = None
    p_adjusted: float | None = None
    adjustment: str = "none"
    alpha: float = 0.05
    task: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def significant(self) -> bool:
        p = self.p_adjusted if self.p_adjusted is not None else self.p_value
        return p < self.alpha

    @property
    def better(self) -> str | None:
        """The model that is better when the difference is significant, else None."""
        if not self.significant or self.difference == 0:
            return None
        b_up = self.difference > 0
        return self.model_b if b_up == self.higher_is_better else self.model_a

    def to_dict(self) -> dict:
        out = asdict(self)
        out["significant"], out["better"], out["verdict"] = self.significant, self.better, verdict(self)
        return out


def _z(q: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(q))


def paired_sums(outcomes: list[Outcomes], n_resamples: int = 1000, seed: int = 0) -> list[np.ndarray]:
    """Resampled sums of every model's statistics over the same resamples: one (B, d_i) matrix per model.

    Columns that are the same for several models (the count column of every right/wrong model, or two models
    with identical outcomes) are resampled once."""
    from ..metrics.bootstrap import resampled_sums

    widths = [o.stats.shape[1] for o in outcomes]
    stacked = np.hstack([o.stats for o in outcomes])
    unique, inverse = np.unique(stacked, axis=1, return_inverse=True)
    sums = resampled_sums(unique, n_resamples, seed)[:, np.ravel(inverse)]
    cuts = np.cumsum([0] + widths)
    return [sums[:, cuts[i]:cuts[i + 1]] for i in range(len(outcomes))]


def swaps(n: int, permutations: int = PERMUTATIONS, seed: int = 0) -> np.ndarray:
    """Random swap signs (permutations, n) of 0/1: which examples trade their two models' rows. Drawn once and
    shared by every pair of a comparison (each pair's test is still a valid permutation test)."""
    return np.random.default_rng(seed + 7919).integers(0, 2, size=(permutations, n)).astype(np.float64)


def permutation_p(a: Outcomes, b: Outcomes, permutations: int = PERMUTATIONS, seed: int = 0,
                  swap: np.ndarray | None = None) -> float:
    """Two-sided paired permutation test: each example's two rows swapped at random.

    Swapping example i moves (b_i − a_i) from B's sums to A's, so a permutation's sums are the observed ones
    plus or minus `swap @ (b − a)`: one matrix product per pair. A count of permutations at least as extreme
    cannot give p below 1 / (permutations + 1); when fewer than 10 are that extreme, the tail is read from the
    normal curve fitted to the permutation distribution (its mean is 0 by symmetry), so a large difference
    keeps a p-value small enough to survive a Holm adjustment over many pairs and tasks."""
    from scipy.stats import norm

    observed = b.value - a.value
    if observed == 0:
        return 1.0
    swap = swaps(len(a.stats), permutations, seed) if swap is None else swap
    moved = swap @ (b.stats - a.stats)
    total_a, total_b = a.stats.sum(axis=0), b.stats.sum(axis=0)
    diffs = np.asarray(b.value_of(total_b - moved), dtype=float) - np.asarray(a.value_of(total_a + moved),
                                                                               dtype=float)
    diffs = diffs[np.isfinite(diffs)]
    if not len(diffs):
        return 1.0
    extreme = int(np.sum(np.abs(diffs) >= abs(observed) - 1e-12))
    if extreme >= 10:
        return float((1 + extreme) / (1 + len(diffs)))
    spread = float(np.sqrt(np.mean(diffs ** 2)))
    if spread == 0:
        return float((1 + extreme) / (1 + len(diffs)))
    return float(min(1.0, 2 * norm.sf(abs(observed) / spread)))


def compare_pair(a: Outcomes, b: Outcomes, values_a: np.ndarray, values_b: np.ndarray, *, metric: str,
                 confidence: float = 0.95, alpha: float = 0.05, margin: float | None = None,
                 seed: int = 0, swap: np.ndarray | None = None) -> PairComparison:
    """B against A given their values over the same bootstrap resamples (`paired_sums`)."""
    n = len(a.stats)
    diffs = np.asarray(values_b, dtype=float) - np.asarray(values_a, dtype=float)
    diffs = diffs[np.isfinite(diffs)]
    tail = (1 - confidence) / 2
    low, high = (np.quantile(diffs, [tail, 1 - tail]) if len(diffs) else (math.nan, math.nan))
    difference = b.value - a.value
    z_sum = _z(1 - alpha / 2) + _z(POWER)
    out = dict(metric=metric, model_a=a.model, model_b=b.model, n=n, value_a=a.value, value_b=b.value,
               difference=difference, low=float(low), high=float(high), confidence=confidence,
               higher_is_better=a.higher_is_better, alpha=alpha, margin=margin)
    if a.binary and b.binary:
        ra, rb = a.right, b.right
        r, w = int((ra & ~rb).sum()), int((~ra & rb).sum())
        out.update(test="McNemar exact", p_value=equivalence.mcnemar_exact(r, w), a_right_b_wrong=r,
                   a_wrong_b_right=w)
        se = math.sqrt(max(r + w, 1) / n) / math.sqrt(n) if n else math.inf
        if margin:
            eq_low, eq_high = equivalence.tango_interval(n, w, r, 1 - 2 * alpha)
    else:
        out.update(test="paired permutation", p_value=permutation_p(a, b, seed=seed, swap=swap))
        se = float(np.std(diffs, ddof=1)) if len(diffs) > 1 else math.inf
        if margin:
            eq_low, eq_high = (np.quantile(diffs, [alpha, 1 - alpha]) if len(diffs) else (math.nan, math.nan))
    out["mde"] = z_sum * se
    out["examples_needed"] = (int(math.ceil(n * (z_sum * se / abs(difference)) ** 2))
                              if difference and math.isfinite(se) and se > 0 else None)
    if margin:
        out.update(equivalence_low=float(eq_low), equivalence_high=float(eq_high),
                   equivalence=equivalence.verdict(float(eq_low), float(eq_high), margin))
    return PairComparison(**out)


def compare(outcomes: list[Outcomes], *, metric: str, pairs: list[tuple[int, int]] | None = None,
            n_resamples: int = 1000, confidence: float = 0.95, alpha: float = 0.05, margin: float | None = None,
            adjust: str = multiple.HOLM, seed: int = 0, task: str = "") -> list[PairComparison]:
    """Every pair of `outcomes` (or the index `pairs` given), p-values adjusted across them."""
    n_set = {len(o.stats) for o in outcomes}
    if len(n_set) > 1:
        raise ValueError("Paired comparison needs the same examples for every model: "
                         f"got {sorted(n_set)} examples.")
    sums = paired_sums(outcomes, n_resamples, seed)
    values = [np.asarray(o.value_of(s), dtype=float) for o, s in zip(outcomes, sums)]
    pairs = pairs if pairs is not None else [(i, j) for i in range(len(outcomes)) for j in range(i + 1, len(outcomes))]
    swap = None if all(o.binary for o in outcomes) else swaps(len(outcomes[0].stats), PERMUTATIONS, seed)
    found = [compare_pair(outcomes[i], outcomes[j], values[i], values[j], metric=metric, confidence=confidence,
                          alpha=alpha, margin=margin, seed=seed, swap=swap) for i, j in pairs]
    return adjust_all(found, adjust) if task == "" else [_with_task(c, task) for c in adjust_all(found, adjust)]


def _with_task(c: PairComparison, task: str) -> PairComparison:
    c.task = task
    return c


def adjust_all(comparisons: list[PairComparison], method: str = multiple.HOLM) -> list[PairComparison]:
    """Adjust the p-values of all `comparisons` together (pairs and tasks): one family."""
    adjusted = multiple.adjust([c.p_value for c in comparisons], method)
    for c, p in zip(comparisons, adjusted):
        c.p_adjusted, c.adjustment = float(p), method
    return comparisons


def _num(x: float, points: bool) -> str:
    return f"{100 * x:.1f} points" if points else f"{x:.3g}"


def verdict(c: PairComparison) -> str:
    """The comparison in one sentence, told from the winner's side when there is one ("B beats A by 3.1 points,
    95% CI 1.2 to 5.0; 14 flips to right, 3 to wrong"), or "not enough examples to tell" when that is the truth."""
    points = c.metric in POINT_METRICS
    rng = lambda lo, hi: (f"{100 * lo:+.1f} to {100 * hi:+.1f}" if points else f"{lo:+.3g} to {hi:+.3g}")
    p = c.p_adjusted if c.p_adjusted is not None else c.p_value
    p_text = f"{c.test} p = {c.p_value:.3g}" + (f", {c.adjustment}-adjusted {p:.3g}" if c.adjustment != "none" else "")
    ci = f"{c.confidence:.0%} CI"
    if c.better:
        b_won = c.better == c.model_b
        loser = c.model_a if b_won else c.model_b
        # the improvement and its interval: winner minus loser, or loser minus winner where lower is better
        sign = (1 if b_won else -1) * (1 if c.higher_is_better else -1)
        lo, hi = sorted((sign * c.low, sign * c.high))
        flips = ""
        if c.a_wrong_b_right is not None and c.higher_is_better:  # "right" = a hit of a share where more is better
            fixed, broke = (c.a_wrong_b_right, c.a_right_b_wrong) if b_won else (c.a_right_b_wrong, c.a_wrong_b_right)
            flips = f"; {fixed} flips to right, {broke} to wrong"
        size = _num(abs(c.difference), points)
        return f"{c.better} beats {loser} by {size} on {c.metric} ({ci} {rng(lo, hi)}{flips}; {p_text})."
    flips = ""
    if c.a_wrong_b_right is not None and c.higher_is_better:  # "right" = a hit of a share where more is better
        flips = f"; {c.a_wrong_b_right} flips to right, {c.a_right_b_wrong} to wrong"
    if c.equivalence == equivalence.EQUIVALENT:
        return (f"{c.model_a} and {c.model_b} are equivalent within ±{_num(c.margin, points)} on {c.metric} "
                f"({1 - 2 * c.alpha:.0%} CI of {c.model_b} − {c.model_a} "
                f"{rng(c.equivalence_low, c.equivalence_high)}{flips}).")
    need = (f"; about {c.examples_needed:,} examples would detect a difference this size"
            if c.examples_needed and c.examples_needed > c.n else "")
    diff = f"{100 * c.difference:+.1f} points" if points else f"{c.difference:+.3g}"
    return (f"Not enough examples to tell {c.model_a} and {c.model_b} apart on {c.metric}: "
            f"{c.model_b} − {c.model_a} = {diff} ({ci} {rng(c.low, c.high)}{flips}, from {c.model_a} to "
            f"{c.model_b}; {p_text}); the smallest difference {c.n} examples can detect is about "
            f"{_num(c.mde, points)}{need}.")


POINT_METRICS = ("accuracy", "acc_norm", "exact_match", "f1", "f1_macro", "precision", "precision_macro", "recall",
                 "recall_macro", "roc_auc", "flip_rate", "failure_rate")
