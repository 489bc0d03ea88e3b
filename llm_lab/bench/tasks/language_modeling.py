"""Language modelling: perplexity and bits per byte of a causal LM on a text column.

Each text is scored the way lm-evaluation-harness scores `loglikelihood_rolling`: a start token
(BOS, else EOS) is put in front so every token of the text is predicted; texts longer than the
window are cut into windows that predict `stride` new tokens each (default: the whole window,
lm-eval's disjoint windows), with the tokens before them as context (sliding window).

An endpoint whose server returns prompt log-probabilities scores each text in one echo request with its own
tokenizer (`inference.score_texts`): the first token of a text has no log-probability there (nothing precedes
it), so it is left out of the sums and of the token count, which are the server's tokens; a note says how many.
Perplexity over an endpoint is therefore over the tokens after each text's first, and bits per byte, byte and
word perplexity over the text after that first token.
"""
from __future__ import annotations

import math
import re

import numpy as np

from ... import inference, metrics
from ...metrics import intervals
from .common import TaskError, headline, short
from .lm_scoring import score_requests, score_text_requests

VERSION = 2  # 2: perplexity, bits per byte and byte perplexity with BCa intervals


def scored_locally(state, texts: list[str]) -> tuple[list[list[float]], list[str], dict]:
    """Per text, its tokens' log-probabilities through windows of the model loaded here; the texts they score
    (all of each); the details."""
    spec = state.spec
    requests, owner, context, stride = inference.rolling_windows(state.loaded, texts, spec.max_length, spec.stride)
    if not requests:
        raise TaskError("None of the texts has any tokens to score.")
    state.stats["windows"] = len(requests)
    state.stats["tokens"] = int(sum(r[2] for r in requests))
    scored = score_requests(state, requests)
    per_text = [[] for _ in texts]
    for i, lps in zip(owner, scored):
        per_text[i].extend(lps)
    return per_text, texts, {"context": context, "stride": stride}


def scored_by_endpoint(state, texts: list[str]) -> tuple[list[list[float]], list[str], dict]:
    """Per text, its tokens' log-probabilities from the endpoint's server (one echo request a text); the part
    of each text they score (after the tokens without one); the details."""
    spec = state.spec
    kept = [i for i, t in enumerate(texts) if t]
    if not kept:
        raise TaskError("None of the texts has any tokens to score.")
    answers = score_text_requests(state, [(texts[i], 0) for i in kept])
    per_text, covered = [[] for _ in texts], list(texts)
    for i, answer in zip(kept, answers):
        per_text[i] = list(answer["logprobs"])
        covered[i] = texts[i][answer["unscored_chars"]:]
    if not any(per_text):
        raise TaskError("The endpoint gave no log-probability for any text's tokens (each text's first has none "
                        "over echo): the texts are too short to score.")
    unscored = sum(a["unscored"] for a in answers)
    state.stats["tokens"] = int(sum(len(x) for x in per_text))
    state.stats["unscored_tokens"] = unscored
    state.notes.append("Scored by the endpoint's server with echo, with its own tokenizer: the first token of each "
                       "text has no log-probability there (nothing precedes it), so it is left out of the perplexity, "
                       f"the token count and the bytes and words per-byte and per-word measures divide by ({unscored} "
                       f"tokens of {len(kept)} texts).")
    if spec.max_length or spec.stride:
        state.notes.append("max_length and stride are not applied over an endpoint: its server reads each whole "
                           "text (a text longer than its context is refused by it).")
    return per_text, covered, {"context": "endpoint", "stride": None}


def run(state) -> dict:
    spec, loaded, frame = state.spec, state.loaded, state.frame
    texts = frame["text"].astype(str).tolist()
    score = scored_by_endpoint if loaded.capabilities.endpoint else scored_locally
    per_text, covered, details = score(state, texts)
    num_bytes = [len(t.encode("utf-8")) for t in covered]
    words = [len(re.split(r"\s+", t.strip())) if t.strip() else 0 for t in covered]
    out = metrics.compute("perplexity", per_text, num_bytes=num_bytes)
    total_ll = sum(sum(x) for x in per_text)
    values = {"perplexity": out["perplexity"], "bits_per_byte": out["bits_per_byte"],
              "byte_perplexity": math.exp(-total_ll / sum(num_bytes)),
              "word_perplexity": math.exp(-total_ll / max(1, sum(words))), "nll": out["nll"], "tokens": out["tokens"]}
    found = intervals.of_perplexity(per_text, seed=spec.seed, num_bytes=num_bytes, num_words=words)
    rows = [{"id": int(frame["id"].iloc[i]), "text": short(texts[i]), "tokens": len(per_text[i]),
             "nll": round(-float(np.sum(per_text[i])), 4),
             "perplexity": round(float(out["perplexities"][i]), 4) if out["perplexities"][i] is not None else None}
            for i in range(len(texts))]
    return {"metrics": values, "details": details,
            "headline": headline("perplexity", values, found["perplexity"]), "per_example": rows,
            "intervals": {k: v.to_dict() for k, v in found.items()}}
