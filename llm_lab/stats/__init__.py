"""Statistics behind every number LLM Lab shows, one idea per module.

- `intervals`: Wilson and Clopper–Pearson intervals for proportions, BCa bootstrap intervals for the rest.
- `paired`: two models on the same examples: paired bootstrap, McNemar, flips, minimum detectable effect,
  equivalence (TOST), a plain-language verdict.
- `multiple`: Holm and Benjamini–Hochberg adjustments of many p-values.
- `tiers`: groups of models a leaderboard cannot tell apart.
- `calibration`: ECE (equal-width and adaptive bins), Brier, NLL, reliability diagram, temperature scaling.
- `equivalence`: Tango's paired score interval and the exact McNemar test (compress-then-evaluate's verdicts).

numpy and scipy only; nothing here knows about models or pages.
"""
