"""Adjusting many p-values at once (several model pairs, several tasks).

- Holm (1979): controls the family-wise error rate (the chance of any false "B beats A"); the default, since a
  leaderboard's reader reads every claim.
- Benjamini–Hochberg (1995): controls the false discovery rate (the expected share of false claims among those
  made); more claims survive when many pairs are compared.
Both are the step-down/step-up forms as statsmodels' `multipletests` computes them (the tests check that).
"""
from __future__ import annotations

import numpy as np

HOLM = "holm"
BH = "bh"
NAMES = {HOLM: "Holm (family-wise error)", BH: "Benjamini–Hochberg (false discovery rate)", "none": "not adjusted"}


def holm(p_values) -> np.ndarray:
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    if not m:
        return p
    order = np.argsort(p)
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(stepped, 1.0)
    return out


def benjamini_hochberg(p_values) -> np.ndarray:
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    if not m:
        return p
    order = np.argsort(p)[::-1]  # largest first: the step-up running minimum
    ranks = m - np.arange(m)
    stepped = np.minimum.accumulate(p[order] * m / ranks)
    out = np.empty(m)
    out[order] = np.minimum(stepped, 1.0)
    return out


def adjust(p_values, method: str = HOLM) -> np.ndarray:
    if method == HOLM:
        return holm(p_values)
    if method == BH:
        return benjamini_hochberg(p_values)
    if method == "none":
        return np.asarray(p_values, dtype=float)
    raise ValueError(f"Unknown p-value adjustment {method!r}: use holm, bh or none.")
