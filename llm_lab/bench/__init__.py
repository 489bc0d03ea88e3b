"""Benchmark suites: declared tasks (YAML), a fast batched runner with cache and resume, a leaderboard.

    from llm_lab.access import LOCAL
    from llm_lab.bench import runner, suite
    results = runner.run_suite(LOCAL, suite.load(LOCAL, "demo-classifier"), ["minilm"])

Files: suite.py (YAML, validation), fingerprint.py
(model fingerprint, environment), cache.py (results and partial progress in the store), tasks/ (one
module per task type), runner.py (runs a suite), jobs.py (the background job), leaderboard.py
(tables, drill-down, export), plots.py and report.py (plotly charts, the HTML report), cli.py (`python -m
llm_lab bench`).
"""
