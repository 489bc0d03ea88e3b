"""llm_lab.stats.power: the planning figures the suite builder shows, against statsmodels and a simulation."""
import math

import numpy as np
import pytest
from scipy.stats import binom, norm

from llm_lab.stats import intervals, power


def _mcnemar_power(n: int, difference: float, discordant: float, runs: int = 20_000, seed: int = 0):
    """Share of simulated paired runs in which McNemar's test (chi-square without continuity correction, and
    exact) rejects at α = 0.05 when B is right where A is wrong on (d + δ)/2 of examples, the reverse on
    (d − δ)/2."""
    rng = np.random.default_rng(seed)
    probs = [(discordant - difference) / 2, (discordant + difference) / 2, 1 - discordant]
    counts = rng.multinomial(n, probs, size=runs)
    b, c = counts[:, 0], counts[:, 1]
    chi2 = (b - c) ** 2 / np.maximum(b + c, 1)
    exact_p = np.minimum(1.0, 2 * binom.cdf(np.minimum(b, c), b + c, 0.5))
    return (chi2 > norm.ppf(0.975) ** 2).mean(), (exact_p < 0.05).mean(), (b, c, chi2, exact_p)


def test_the_simulated_test_is_mcnemars():
    from statsmodels.stats.contingency_tables import mcnemar

    *_, (b, c, chi2, exact_p) = _mcnemar_power(200, 0.06, 0.2, runs=20, seed=3)
    for i in range(20):
        table = [[0, b[i]], [c[i], 0]]
        assert chi2[i] == pytest.approx(mcnemar(table, exact=False, correction=False).statistic)
        assert exact_p[i] == pytest.approx(mcnemar(table, exact=True).pvalue)


@pytest.mark.parametrize("n", [150, 1000])
def test_the_mde_is_detected_in_about_80_percent_of_simulated_runs(n):
    mde = power.planning_mde(n)
    chi2_power, exact_power, _ = _mcnemar_power(n, mde, power.DISCORDANT)
    assert 0.77 <= chi2_power <= 0.85  # the normal approximation the formula is (±3 standard errors of 20,000 runs)
    assert 0.74 <= exact_power <= 0.82  # the exact test is a little conservative
    half_power, _, _ = _mcnemar_power(n, mde / 2, power.DISCORDANT)
    assert half_power < 0.4  # a difference half that size is usually missed


@pytest.mark.parametrize("n, alpha, target, discordant", [(150, 0.05, 0.8, 0.2), (1000, 0.05, 0.8, 0.1),
                                                           (40, 0.01, 0.9, 0.3)])
def test_mde_matches_statsmodels_one_sample_z_power(n, alpha, target, discordant):
    from statsmodels.stats.power import NormalIndPower

    # per example the paired difference has variance ≈ the discordant share, so the MDE is the effect size
    # (in standard deviations) a one-sample z-test detects, times √discordant
    effect = NormalIndPower().solve_power(effect_size=None, nobs1=n, alpha=alpha, power=target, ratio=0)
    assert power.planning_mde(n, alpha, target, discordant) == pytest.approx(effect * math.sqrt(discordant), rel=1e-4)


def test_mde_by_hand_and_examples_needed_inverts_it():
    assert power.planning_mde(150) == pytest.approx((1.959964 + 0.841621) * math.sqrt(0.2 / 150), rel=1e-6)
    assert power.planning_mde(0) == math.inf
    for n in (30, 150, 1234):
        needed = power.examples_needed(power.planning_mde(n))
        assert n <= needed <= n + 1  # the ceiling of the same n
    assert power.examples_needed(0.05) == math.ceil(0.2 * (power.z_sum() / 0.05) ** 2)


def test_half_width_is_wilsons_at_one_half():
    from statsmodels.stats.proportion import proportion_confint

    for n in (10, 14, 150, 1000):
        low, high = proportion_confint(n // 2, n, alpha=0.05, method="wilson")
        assert power.interval_half_width(n) == pytest.approx((high - low) / 2, rel=1e-9)
        low, high = intervals.wilson(n // 2, n)
        assert power.interval_half_width(n) == pytest.approx((high - low) / 2, rel=1e-9)


def test_planning_sentence_states_n_mde_and_the_assumption():
    text = power.planning_sentence(150, "test rows")
    assert text == ("150 test rows: a difference smaller than about 10 points between two models may go undetected "
                    "(assuming 20% of examples differ between them); one model's accuracy will be known to within "
                    "about ±8 points.")
    assert "no difference between two models can be reliably detected" in power.planning_sentence(1, "rows")
    assert "nothing to score" in power.planning_sentence(0, "test rows")
    assert "assuming 10% of examples" in power.planning_sentence(500, "rows", discordant=0.1)


@pytest.mark.parametrize("kwargs", [dict(alpha=0), dict(power=1), dict(discordant=0), dict(discordant=1.5)])
def test_bad_assumptions_are_refused(kwargs):
    with pytest.raises(ValueError):
        power.planning_mde(100, **kwargs)
    with pytest.raises(ValueError):
        power.examples_needed(0)
