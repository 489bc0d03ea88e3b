"""llm_lab.stats against independent implementations: statsmodels (intervals, multiple testing), scipy (BCa),
scikit-learn (Brier, log loss), plain loops (paired bootstrap, ECE), and cases with known answers."""
import math

import numpy as np
import pytest
from scipy.stats import binomtest, norm
from sklearn.metrics import brier_score_loss, log_loss
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from llm_lab.stats import calibration, intervals, multiple, paired, tiers


@pytest.mark.parametrize("k,n", [(10, 10), (0, 10), (7, 10), (1, 3), (480, 500), (0, 1)])
def test_proportion_intervals_match_statsmodels(k, n):
    assert intervals.wilson(k, n) == pytest.approx(proportion_confint(k, n, method="wilson"), abs=1e-9)
    assert intervals.clopper_pearson(k, n) == pytest.approx(proportion_confint(k, n, method="beta"), abs=1e-9)


def test_ten_of_ten_is_not_one_plus_minus_zero():
    """The issue's case: 10/10 right is about [0.72, 1.00] (Wilson), never 1.000 ± 0.000."""
    iv = intervals.of_proportion([1] * 10)
    assert iv.value == 1.0 and iv.n == 10 and iv.method == intervals.WILSON
    assert iv.low == pytest.approx(0.7225, abs=1e-4) and iv.high == 1.0
    assert iv.text() == "1.000 [0.722, 1.000] n=10"


def test_bca_matches_scipy_on_a_skewed_mean():
    from scipy.stats import bootstrap

    x = np.random.default_rng(3).exponential(size=80)
    _, low, high, _ = intervals.bca(np.stack([x, np.ones_like(x)], 1), lambda s: s[:, 0] / s[:, 1],
                                    n_resamples=20000)
    ref = bootstrap((x,), np.mean, method="BCa", n_resamples=20000, random_state=0).confidence_interval
    assert low == pytest.approx(ref.low, abs=0.01) and high == pytest.approx(ref.high, abs=0.01)
    # BCa moves the interval to the right of the percentile one on a right-skewed mean
    mean = x.mean()
    assert high - mean > mean - low


def test_multiple_testing_matches_statsmodels():
    p = np.random.default_rng(1).uniform(0, 0.2, 15)
    p[3] = p[7]  # a tie
    assert multiple.holm(p) == pytest.approx(multipletests(p, method="holm")[1], abs=1e-12)
    assert multiple.benjamini_hochberg(p) == pytest.approx(multipletests(p, method="fdr_bh")[1], abs=1e-12)


def _hand_ece(probs, labels, bins=15):
    conf, pred = probs.max(1), probs.argmax(1)
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        m = [(lo < c <= hi) or (b == 0 and c == 0) for c in conf]
        m = np.array(m)
        if m.any():
            total += m.sum() / len(conf) * abs((pred[m] == labels[m]).mean() - conf[m].mean())
    return total


def test_calibration_numbers_match_sklearn_and_a_hand_computed_ece():
    rng = np.random.default_rng(0)
    for k in (2, 3):
        probs = rng.dirichlet(np.ones(k) * 0.7, 300)
        labels = rng.integers(0, k, 300)
        assert calibration.ece(probs, labels) == pytest.approx(_hand_ece(probs, labels), abs=1e-12)
        expected_brier = brier_score_loss(labels, probs[:, 1]) if k == 2 else brier_score_loss(labels, probs, labels=list(range(k)))
        assert calibration.brier_stats(probs, labels).mean() == pytest.approx(expected_brier, abs=1e-12)
        assert calibration.nll_stats(probs, labels).mean() == pytest.approx(log_loss(labels, probs), abs=1e-9)
    # a perfectly calibrated case by construction: confidence 0.8, right 80% of the time in one bin
    probs = np.array([[0.8, 0.2]] * 10)
    labels = np.array([0] * 8 + [1] * 2)
    assert calibration.ece(probs, labels) == pytest.approx(0.0, abs=1e-12)
    assert calibration.ece(probs, labels, adaptive=True) == pytest.approx(0.0, abs=1e-12)


def test_temperature_scaling_undoes_a_known_overconfidence():
    """Logits sharpened by T = 3 from calibrated ones: the fit recovers T ≈ 3 and lowers the NLL."""
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(4000, 3)) * 1.5
    true_p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(3, p=p) for p in true_p])
    sharp = calibration.scaled(true_p, 1 / 3)
    t = calibration.fit_temperature(sharp, labels)
    assert t == pytest.approx(3.0, rel=0.1)
    assert calibration.nll_stats(calibration.scaled(sharp, t), labels).mean() < calibration.nll_stats(sharp, labels).mean()


def _outcomes(name, right):
    right = np.asarray(right, dtype=float)
    return paired.Outcomes(name, np.stack([right, np.ones_like(right)], 1), lambda s: s[:, 0] / s[:, 1], binary=True)


def test_lm_eval_pr_3868_paired_case():
    """n = 220: A right on 122, B on 140, 12 A-right/B-wrong and 30 A-wrong/B-right. The unpaired z-test
    lm-eval's model_comparator uses says p = 0.080; the paired McNemar says 0.008."""
    n, r, w = 220, 12, 30
    a = np.zeros(n, bool)
    b = np.zeros(n, bool)
    a[:r] = True                      # A right, B wrong
    b[r:r + w] = True                 # A wrong, B right
    both = 122 - r
    a[r + w:r + w + both] = b[r + w:r + w + both] = True
    assert a.sum() == 122 and b.sum() == 140
    se = lambda p: math.sqrt(p * (1 - p) / (n - 1))
    unpaired = 2 * norm.sf((b.mean() - a.mean()) / math.hypot(se(a.mean()), se(b.mean())))
    assert unpaired == pytest.approx(0.080, abs=0.001)
    (c,) = paired.compare([_outcomes("A", a), _outcomes("B", b)], metric="accuracy")
    assert c.p_value == pytest.approx(0.008, abs=0.0005)
    assert c.p_value == pytest.approx(binomtest(r, r + w, 0.5).pvalue)
    assert (c.a_right_b_wrong, c.a_wrong_b_right) == (12, 30)
    assert c.significant and c.better == "B"
    assert c.difference == pytest.approx(18 / 220)
    assert c.low > 0
    assert "B beats A by 8.2 points" in paired.verdict(c) and "30 flips to right, 12 to wrong" in paired.verdict(c)


def test_identical_models_show_no_difference():
    right = np.random.default_rng(2).random(300) < 0.7
    (c,) = paired.compare([_outcomes("A", right), _outcomes("B", right)], metric="accuracy", margin=0.05)
    assert c.difference == 0 and c.p_value == 1.0 and not c.significant and c.better is None
    assert (c.low, c.high) == (0.0, 0.0)
    assert c.equivalence == "equivalent"
    assert c.mde > 0  # no discordant pair: still a finite, positive detectable effect


def test_paired_bootstrap_equals_a_plain_loop():
    """The vectorised paired bootstrap against a loop drawing the same index vectors."""
    rng = np.random.default_rng(11)
    n, models, B = 50, 3, 200
    right = rng.random((models, n)) < [[0.6], [0.7], [0.75]]
    outs = [_outcomes(f"m{i}", right[i]) for i in range(models)]
    sums = paired.paired_sums(outs, B, seed=4)
    # the same draws: resampled_sums uses default_rng(seed).integers(0, n, (B, n)) (one chunk at this size)
    idx = np.random.default_rng(4).integers(0, n, size=(B, n))
    for i in range(models):
        loop = np.array([right[i][row].mean() for row in idx])
        assert sums[i][:, 0] / sums[i][:, 1] == pytest.approx(loop)


def test_power_a_planted_two_point_difference_at_n_1000():
    """B is right on 2 points more of 1,000 examples (3% flip wrong→right, 1% right→wrong: the MDE at this
    discordance is about 1.8 points): McNemar detects it in at least 80% of simulated runs at α = 0.05, and
    the MDE the comparison reports is below 2 points; identical-quality models are flagged in about 5%."""
    rng = np.random.default_rng(0)
    detected = false_alarm = 0
    runs, mdes = 200, []
    for _ in range(runs):
        u = rng.random(1000)
        a = u < 0.7
        b = a.copy()
        flip = rng.random(1000)
        b[(~a) & (flip < 0.03 / 0.3)] = True   # wrong→right 3% of all
        b[a & (flip < 0.01 / 0.7)] = False     # right→wrong 1% of all
        c = paired.compare_pair(_outcomes("A", a), _outcomes("B", b), a.astype(float), b.astype(float),
                                metric="accuracy")
        detected += c.p_value < 0.05
        mdes.append(c.mde)
        same = a.copy()
        same[(~a) & (flip < 0.02 / 0.3)] = True
        same[a & (flip < 0.02 / 0.7)] = False
        false_alarm += paired.compare_pair(_outcomes("A", a), _outcomes("C", same), a.astype(float),
                                           same.astype(float), metric="accuracy").p_value < 0.05
    assert detected / runs >= 0.8
    assert np.median(mdes) < 0.02
    assert false_alarm / runs <= 0.1


def test_mde_shrinks_with_n_and_examples_needed_detects():
    rng = np.random.default_rng(9)
    small = paired.compare([_outcomes("A", rng.random(100) < 0.7), _outcomes("B", rng.random(100) < 0.72)],
                           metric="accuracy")[0]
    large = paired.compare([_outcomes("A", rng.random(4000) < 0.7), _outcomes("B", rng.random(4000) < 0.72)],
                           metric="accuracy")[0]
    assert large.mde < small.mde
    assert small.mde == pytest.approx((norm.ppf(0.975) + norm.ppf(0.8)) * math.sqrt(
        (small.a_right_b_wrong + small.a_wrong_b_right) / 100) / math.sqrt(100))


def test_permutation_test_for_a_continuous_metric():
    """Perplexity-like ratio metric: B lower everywhere → tiny p; the same model → p = 1."""
    rng = np.random.default_rng(1)
    tokens = rng.integers(5, 40, 60).astype(float)
    nll_a = tokens * rng.normal(3.0, 0.2, 60)
    nll_b = nll_a - tokens * 0.3
    ppl = lambda s: np.exp(s[:, 0] / s[:, 1])
    a = paired.Outcomes("A", np.stack([nll_a, tokens], 1), ppl, higher_is_better=False)
    b = paired.Outcomes("B", np.stack([nll_b, tokens], 1), ppl, higher_is_better=False)
    (c,) = paired.compare([a, b], metric="perplexity")
    assert c.test == "paired permutation" and c.p_value < 0.001 and c.better == "B" and c.high < 0
    (same,) = paired.compare([a, a], metric="perplexity")
    assert same.p_value == 1.0 and same.better is None


def test_tiers_group_models_that_cannot_be_told_apart():
    rng = np.random.default_rng(4)
    n = 2000
    base = rng.random(n)
    strong, strong2, weak = base < 0.9, base < 0.9, base < 0.6
    strong2[:20] = ~strong2[:20]
    outs = [_outcomes("weak", weak), _outcomes("strong", strong), _outcomes("strong2", strong2)]
    comps = paired.compare(outs, metric="accuracy")
    t = tiers.tiers(["weak", "strong", "strong2"], comps)
    assert t == {"strong": 1, "strong2": 1, "weak": 3}


def test_paired_permutation_matches_scipy_and_has_no_floor():
    """A mean of per-example scores: our paired permutation p against scipy's `permutation_test` (paired
    samples); a huge difference gets a p far below 1/2001, so it survives a Holm adjustment over many pairs."""
    from scipy.stats import permutation_test

    rng = np.random.default_rng(5)
    x = rng.random(200)
    y = x + rng.normal(0.02, 0.12, 200)
    mean = lambda s: np.atleast_2d(s)[:, 0] / np.atleast_2d(s)[:, 1]
    a = paired.Outcomes("A", np.stack([x, np.ones(200)], 1), mean)
    b = paired.Outcomes("B", np.stack([y, np.ones(200)], 1), mean)
    ours = paired.permutation_p(a, b, permutations=4000)
    theirs = permutation_test((y, x), lambda u, v, axis: np.mean(u, axis=axis) - np.mean(v, axis=axis),
                              permutation_type="samples", n_resamples=20000, random_state=0).pvalue
    assert 0.005 < theirs < 0.5 and ours == pytest.approx(theirs, abs=0.02)
    far = paired.Outcomes("C", np.stack([x + 0.3, np.ones(200)], 1), mean)
    p = paired.permutation_p(a, far)
    assert 0 < p < 1e-6
    assert paired.adjust_all(paired.compare([a, far] + [paired.Outcomes(f"D{i}", a.stats, mean) for i in range(8)],
                                            metric="mean"))[0].significant
