"""Paired comparison of many models: ours (`bench.compare` machinery: one draw of resample counts shared by all
models, one matrix product per chunk) against a plain per-resample loop, on the same resamples.

10 models × 10,000 examples × 1,000 resamples (the target is under 2 s on a 2-core CPU, for the whole
comparison: every model's resampled accuracy, all 45 pairs with their intervals, McNemar tests, MDEs, the Holm
adjustment and the tiers). The baseline is what one writes without vectorising: for each resample, draw the
example indices and take every model's mean over them; then the same pair figures, Holm adjustment and tiers
from those values (the same `compare_pair`). Both draw the same indices (the same generator, seed and chunks),
so intervals and adjusted p-values must agree to 1e-9 and the tiers exactly; the script exits with status 1
otherwise.

    python benchmarks/paired_bootstrap.py [--quick] [--models 10] [--n 10000] [--resamples 1000]

Last line: ratio=<ours seconds / loop seconds> (below 1: ours is faster).
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llm_lab.metrics.bootstrap import _CHUNK_CELLS  # noqa: E402
from llm_lab.stats import paired, tiers  # noqa: E402


def planted(models: int, n: int, seed: int = 0) -> list[np.ndarray]:
    """Right/wrong per example for `models` models whose accuracies step up by a point each."""
    rng = np.random.default_rng(seed)
    base = rng.random(n)
    return [base < 0.70 + 0.01 * i for i in range(models)]


def outcomes(right: list[np.ndarray]) -> list[paired.Outcomes]:
    return [paired.Outcomes(f"model-{i}", np.column_stack([r.astype(float), np.ones(len(r))]),
                            lambda s: np.atleast_2d(s)[:, 0] / np.atleast_2d(s)[:, 1], binary=True)
            for i, r in enumerate(right)]


def ours(right, n_resamples: int, seed: int):
    found = paired.compare(outcomes(right), metric="accuracy", n_resamples=n_resamples, seed=seed)
    return found, tiers.tiers([f"model-{i}" for i in range(len(right))], found)


def loop(right, n_resamples: int, seed: int):
    """Per resample: draw indices (the same chunks as `resampled_sums`) and every model's mean over them; then
    the same pair figures, adjustment and tiers as ours, from those values."""
    n, m = len(right[0]), len(right)
    rng = np.random.default_rng(seed)
    values = np.empty((n_resamples, m))
    chunk = max(1, _CHUNK_CELLS // n)
    row = 0
    for start in range(0, n_resamples, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_resamples - start), n))
        for draw in idx:
            for j in range(m):
                values[row, j] = right[j][draw].mean()
            row += 1
    models = outcomes(right)
    found = [paired.compare_pair(models[i], models[j], values[:, i], values[:, j], metric="accuracy")
             for i in range(m) for j in range(i + 1, m)]
    found = paired.adjust_all(found)
    return found, tiers.tiers([o.model for o in models], found)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="the same sizes, one timed repeat (well under a minute)")
    ap.add_argument("--models", type=int, default=10)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per side (default 3, --quick 1)")
    args = ap.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)
    right = planted(args.models, args.n)
    ours(planted(2, 50), 10, 0)  # imports (scipy.stats) before the clock starts, for both sides
    t_ours, t_loop = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        found, tier = ours(right, args.resamples, 0)
        t_ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        expected, expected_tiers = loop(right, args.resamples, 0)
        t_loop.append(time.perf_counter() - t0)
    worst = 0.0
    for c, e in zip(found, expected):
        worst = max(worst, abs(c.low - e.low), abs(c.high - e.high), abs(c.p_adjusted - e.p_adjusted))
    if tier != expected_tiers:
        worst = float("inf")
    a, b = float(np.median(t_ours)), float(np.median(t_loop))
    print(f"{args.models} models × {args.n:,} examples × {args.resamples:,} resamples, {len(found)} pairs")
    print(f"ours (shared counts, one matrix product per chunk; pairs, McNemar, MDE, Holm, tiers): {a:.3f} s")
    print(f"plain loop (per resample, per model; then the same pairs, tests, Holm and tiers): {b:.3f} s")
    print(f"largest difference in an interval end or adjusted p: {worst:.2e}; tiers: {sorted(set(tier.values()))}")
    if worst > 1e-9:
        print("FAIL: the intervals differ from the loop's", file=sys.stderr)
        return 1
    print(f"ratio={a / b:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
