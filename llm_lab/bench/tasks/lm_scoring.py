"""Shared by language modelling and multiple choice: log-likelihoods resumed from the partial outputs and reported
as they come. A model loaded here scores token-level requests (`inference.score_tokens`); an endpoint model
scores text-level requests (text, start) over HTTP (`inference.score_texts`: echo + logprobs), a few in
flight at once. Either way a partial output is the list of a request's scored log-probabilities."""
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


def score_text_requests(state, requests: list[tuple[str, int]], label: str = "texts") -> list[dict]:
    """An endpoint's answer per (text, start) request, resumed from partial outputs: {"logprobs": the scored
    tokens', "unscored": tokens without one (a text's first, when start is 0), "unscored_chars": their
    characters}. Each request is one HTTP call."""
    todo = state.partial.missing(len(requests))
    done = [len(requests) - len(todo)]

    def on_done(position, scores):
        state.partial.add([position], [{"logprobs": scores.logprobs, "unscored": scores.unscored,
                                        "unscored_chars": scores.unscored_chars}])
        done[0] += 1
        state.progress(done[0], len(requests), f"{done[0]}/{len(requests)} {label}")

    inference.score_texts(state.loaded, requests, positions=todo, on_done=on_done)
    state.stats["requests"] = len(todo)
    return [state.partial.outputs[i] for i in range(len(requests))]
