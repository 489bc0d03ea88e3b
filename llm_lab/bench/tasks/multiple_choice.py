"""Multiple choice by log-likelihood: the option the causal LM finds most likely after the prompt.

Like lm-evaluation-harness: each option is scored as a continuation " option" of the context;
`accuracy` takes the highest total log-likelihood, `acc_norm` the highest per byte of the option.
"""
from __future__ import annotations

import numpy as np

from ... import metrics
from ...metrics import intervals
from .common import TaskError, headline, render, short
from ... import inference
from .lm_scoring import score_requests

VERSION = 2  # 2: every metric with its interval (Wilson for accuracy and acc_norm)


def run(state) -> dict:
    spec, loaded, frame = state.spec, state.loaded, state.frame
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
    requests, cut = inference.pair_requests(loaded, pairs, spec.max_length)
    if any(cut):
        state.notes.append(f"{sum(cut)} of {len(pairs)} context + option pairs were longer than the model reads; "
                           "their contexts were cut from the left.")
    scored = score_requests(state, requests, "options")
    ll = [np.full(len(o), -np.inf) for o in options]
    for (i, j), lps in zip(owner, scored):
        ll[i][j] = float(np.sum(lps))
    preds = np.array([int(np.argmax(x)) for x in ll])
    norm = np.array([int(np.argmax(x / np.array([max(1, len((" " + o).encode())) for o in options[i]])))
                     for i, x in enumerate(ll)])
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
