"""Planning before a run: how many examples a task scores, and what that many can and cannot tell.

Before any model has run there are no outcomes to compare, so the numbers rest on stated assumptions:

- `planning_mde`: the smallest difference in accuracy (or any right/wrong share) between two models that a
  paired comparison on n examples detects with the given power, by McNemar's test in its normal approximation:
  (z₁₋α/₂ + z_power) · √(discordant / n), where `discordant` is the assumed share of examples on which the
  two models disagree (one right, the other wrong). It is the same formula `paired.compare_pair` uses after a
  run with the observed discordant share, so the planned and the reported figures agree when the guess does.
  The default 20% is a guess for two different models on one task; say it beside the number.
- `examples_needed`: the inverse, how many examples detect a given difference.
- `interval_half_width`: half the width of one model's 95% Wilson interval at 50% accuracy, the widest it
  gets, so "one model's accuracy will be known to within about ±h".

Differences are shares (0.07 = 7 percentage points); `planning_sentence` says them in points.
"""
from __future__ import annotations

import math

ALPHA = 0.05
POWER = 0.8
DISCORDANT = 0.2        # assumed share of examples on which two models disagree
SMALL_N = 30            # fewer examples than this: every interval is wide, say so


def _z(q: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(q))


def _check(alpha: float, power: float, discordant: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, not {alpha}.")
    if not 0 < power < 1:
        raise ValueError(f"power must be between 0 and 1, not {power}.")
    if not 0 < discordant <= 1:
        raise ValueError(f"the discordant share must be in (0, 1], not {discordant}.")


def z_sum(alpha: float = ALPHA, power: float = POWER) -> float:
    """z₁₋α/₂ + z_power: 2.80 at α = 0.05 (two-sided) and 80% power."""
    return _z(1 - alpha / 2) + _z(power)


def planning_mde(n: int, alpha: float = ALPHA, power: float = POWER, discordant: float = DISCORDANT) -> float:
    """The smallest paired difference in accuracy detectable on n examples (a share; inf when n < 1)."""
    _check(alpha, power, discordant)
    if n < 1:
        return math.inf
    return z_sum(alpha, power) * math.sqrt(discordant / n)


def examples_needed(difference: float, alpha: float = ALPHA, power: float = POWER,
                    discordant: float = DISCORDANT) -> int:
    """How many examples detect a paired difference of `difference` (a share) at this power."""
    _check(alpha, power, discordant)
    if not difference:
        raise ValueError("a difference of 0 cannot be detected by any number of examples.")
    return int(math.ceil(discordant * (z_sum(alpha, power) / abs(difference)) ** 2))


def interval_half_width(n: int, confidence: float = 0.95, p: float = 0.5) -> float:
    """Half the width of the Wilson interval of a share p observed on n examples (p = 0.5: the widest).

    A planning figure at an assumed p, not an interval of data: for data use `intervals.wilson`."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, not {confidence}.")
    if n < 1:
        return 0.5
    z = _z(1 - (1 - confidence) / 2)
    return z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))


def points(share: float) -> str:
    """A share in percentage points, whole ones unless below 1 ("7", "0.4")."""
    points = 100 * share
    return f"{points:.1f}" if points < 1 else f"{points:.0f}"


def planning_sentence(n: int, rows: str, alpha: float = ALPHA, power: float = POWER,
                      discordant: float = DISCORDANT) -> str:
    """What n examples can tell, in words: "150 test rows: a difference smaller than about 10 points between two
    models may go undetected (assuming 20% of examples differ between them); one model's accuracy will be known
    to within about ±8 points." `rows` names them ("test rows")."""
    if n < 1:
        return f"0 {rows}: there is nothing to score."
    mde, half = planning_mde(n, alpha, power, discordant), interval_half_width(n, 1 - alpha)
    assumed = f"(assuming {discordant:.0%} of examples differ between them)"
    if mde >= 1:
        told = f"no difference between two models can be reliably detected {assumed}"
    else:
        told = f"a difference smaller than about {points(mde)} points between two models may go undetected {assumed}"
    return f"{n:,} {rows}: {told}; one model's accuracy will be known to within about ±{points(half)} points."
