"""What the dashboard and CLI start generation from (kept apart from generation.py, which imports torch).

Small models left to plain greedy decoding fall into loops ("the a a a be the a be"); a mild repetition
penalty and no repeated trigram keep them readable. `GenerationSettings()` itself stays neutral (plain
greedy): that is what benchmarks and the tests' reference decoding use.
"""
SUGGESTED = dict(repetition_penalty=1.2, no_repeat_ngram_size=3, max_new_tokens=48)
