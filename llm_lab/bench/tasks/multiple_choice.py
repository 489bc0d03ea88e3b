"""Multiple choice by log-likelihood: the option the causal LM finds most likely after the prompt.

As lm-evaluation-harness's `multiple_choice` output type: each option is scored as the continuation
" option" of the context (the target delimiter " ", then the option); `accuracy` takes the highest total
log-likelihood, `acc_norm` the highest log-likelihood divided by the option's length in characters, without the
delimiter (lm-eval's `acc_norm`: `lls / len(choice)`). A model loaded here is scored by tokens (lm-eval's
tokenisation, `inference.pair_requests`); an endpoint whose server returns prompt log-probabilities is scored
over HTTP with echo (`inference.text_requests`, one request per option).
"""
from __future__ import annotations

import numpy as np

from ... import inference, metrics
from ...metrics import intervals
from .common import TaskError, headline, render, short
from .lm_scoring import score_requests, score_text_requests

# 2: every metric with its interval (Wilson for accuracy and acc_norm)
# 3: acc_norm divides by the option's characters (lm-eval's definition), no longer the UTF-8 bytes of " " + option;
#    pairs tokenised as lm-eval does (the whole text, then split)
VERSION = 3


def normalised(logliks, options: list[str]) -> np.ndarray:
    """lm-eval's acc_norm scores: each option's log-likelihood over its length in characters (an empty option
    counts as one)."""
    return np.asarray(logliks, dtype=float) / np.array([max(1, len(o)) for o in options], dtype=float)


def score_options(state, pairs: list[tuple[str, str]]) -> list[list[float]]:
    """Per (context, " option") pair, its tokens' log-probabilities: by tokens here, or over HTTP for an endpoint."""
    spec, loaded = state.spec, state.loaded
    if loaded.capabilities.endpoint:
        if spec.max_length:
            state.notes.append(f"max_length {spec.max_length} is not applied over an endpoint: its server reads each "
                               "whole context and option (its own context limit applies).")
        return [s["logprobs"] for s in score_text_requests(state, inference.text_requests(pairs), "options")]
    requests, cut = inference.pair_requests(loaded, pairs, spec.max_length)
    if any(cut):
        state.notes.append(f"{sum(cut)} of {len(pairs)} context + option pairs were longer than the model reads; "
                           "their contexts were cut from the left.")
    return score_requests(state, requests, "options")


def run(state) -> dict:
    spec, frame = state.spec, state.frame
    contexts = render(spec.prompt, frame, "text")
    if spec.choices:
        options = [list(spec.choices) for _ in range(len(frame))]
    else:
        options = [[c.strip() for c in str(v).split(spec.choices_sep) if c.strip()] for v in frame["choices"]]
    answers = []
    for i, label in enumerate(frame["label"].astype(str)):
        opts = options[i]
        if label in opts:
            answers.append(opts.index(label))
        elif label.isdigit() and int(label) < len(opts):
            answers.append(int(label))
        else:
            raise TaskError(f"Example {int(frame['id'].iloc[i])}: its label {label!r} is not one of the options "
                            f"({', '.join(map(repr, opts))}); a label must be an option's text or its index.")
    pairs, owner = [], []
    for i, ctx in enumerate(contexts):
        for j, opt in enumerate(options[i]):
            pairs.append((ctx, " " + opt))
            owner.append((i, j))
    scored = score_options(state, pairs)
    ll = [np.full(len(o), -np.inf) for o in options]
    for (i, j), lps in zip(owner, scored):
        ll[i][j] = float(np.sum(lps))
    preds = np.array([int(np.argmax(x)) for x in ll])
    norm = np.array([int(np.argmax(normalised(x, options[i]))) for i, x in enumerate(ll)])
    refs = np.array(answers)
    names = lambda idx: [options[i][k] for i, k in enumerate(idx)]
    values = {"accuracy": float((preds == refs).mean()), "acc_norm": float((norm == refs).mean())}
    if "f1" in spec.metrics:
        values["f1"] = metrics.compute("f1", names(preds), names(refs))["f1"]
    found = {"accuracy": intervals.of_hits(preds == refs), "acc_norm": intervals.of_hits(norm == refs)}
    if "f1" in values:
        found["f1"] = intervals.of_labels("f1", preds, refs, seed=spec.seed)
    rows = [{"id": int(frame["id"].iloc[i]), "text": short(contexts[i]), "label": options[i][refs[i]],
             "prediction": options[i][preds[i]], "correct": bool(preds[i] == refs[i]),
             "correct_norm": bool(norm[i] == refs[i]),
             "loglik": {o: round(float(v), 3) for o, v in zip(options[i], ll[i])}} for i in range(len(frame))]
    return {"metrics": values, "details": {}, "headline": headline("accuracy", values, found["accuracy"]), "per_example": rows,
            "intervals": {k: v.to_dict() for k, v in found.items()}}
