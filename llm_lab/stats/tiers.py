"""Significance tiers: which models a leaderboard cannot tell apart.

A model's tier is 1 + the number of models significantly better than it (after the p-value adjustment), as
LMArena ranks its leaderboard ("rank (UB)"). Two models share a tier when neither has more models clearly
above it; the leader and every model not clearly worse than it are tier 1. Ties in the tier say "these cannot
be told apart on these examples", not "these are equal".
"""
from __future__ import annotations


def tiers(models: list[str], comparisons) -> dict[str, int]:
    """Tier per model from `paired.PairComparison`s between them (missing pairs count as not significant)."""
    above = {m: 0 for m in models}
    for c in comparisons:
        better = c.better
        if better is None:
            continue
        worse = c.model_a if better == c.model_b else c.model_b
        if worse in above:
            above[worse] += 1
    return {m: 1 + above[m] for m in models}
