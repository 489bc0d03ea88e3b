"""Compare models side by side, and blind arena voting.

- `runs`: comparison runs (generation or classification) of 2-4 models on the same inputs
- `jobs`: the background job for a dataset sample
- `saved`: saved comparisons (reopened by id / ?comparison=<id>)
- `tables`: the results table, filters and CSV/JSON/HTML exports
- `diff`: word-level differences highlighted in HTML
- `arena`: blind battles, votes (one per battle), leaderboard
- `rating`: Bradley–Terry (Elo scale) ratings with a vectorised bootstrap
- `plots`: plotly figures (imported only by pages)
- `cli`: the `compare` and `arena` commands
"""
