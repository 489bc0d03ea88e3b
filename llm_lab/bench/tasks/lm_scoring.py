"""Shared by language modelling and multiple choice: log-likelihoods from `inference.score_tokens`, resumed
from the partial outputs and reported as they come."""
from __future__ import annotations

from ... import inference


def score_requests(state, requests: list[tuple[list[int], list[int], int]], label: str = "windows") -> list[list[float]]:
    """Per request, the log-probabilities of its `n` scored tokens (resuming from partial outputs)."""
    todo = state.partial.missing(len(requests))
    done = [len(requests) - len(todo)]

    def on_batch(batch, scores):
        state.partial.add(batch, [s.logprobs for s in scores])
        done[0] += len(batch)
        state.progress(done[0], len(requests), f"{done[0]}/{len(requests)} {label}")

    scores = inference.score_tokens(state.loaded, requests, batch_size=state.batch_size, positions=todo,
                                    on_batch=on_batch)
    state.stats["batch_size"] = scores.batch_size
    return [state.partial.outputs[i] for i in range(len(requests))]
