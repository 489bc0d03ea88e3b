"""Language modelling: perplexity and bits per byte of a causal LM on a text column.

Each text is scored the way lm-evaluation-harness scores `loglikelihood_rolling`: a start token
(BOS, else EOS) is put in front so every token of the text is predicted; texts longer than the
window are cut into windows that predict `stride` new tokens each (default: the whole window,
lm-eval's disjoint windows), with the tokens before them as context (sliding window).
"""
from __future__ import annotations

import math
import re

import numpy as np

from ... import metrics
from ...metrics import intervals
from .common import TaskError, headline, short
from ... import inference
from .lm_scoring import score_requests

VERSION = 2  # 2: perplexity, bits per byte and byte perplexity with BCa intervals


def run(state) -> dict:
    spec, loaded, frame = state.spec, state.loaded, state.frame
    texts = frame["text"].astype(str).tolist()
    requests, owner, context, stride = inference.rolling_windows(loaded, texts, spec.max_length, spec.stride)
    if not requests:
        raise TaskError("None of the texts has any tokens to score.")
    state.stats["windows"] = len(requests)
    state.stats["tokens"] = int(sum(r[2] for r in requests))
    scored = score_requests(state, requests)
    per_text = [[] for _ in texts]
    for i, lps in zip(owner, scored):
        per_text[i].extend(lps)
    num_bytes = [len(t.encode("utf-8")) for t in texts]
    words = [len(re.split(r"\s+", t.strip())) if t.strip() else 0 for t in texts]
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
    return {"metrics": values, "details": {"context": context, "stride": stride},
            "headline": headline("perplexity", values, found["perplexity"]), "per_example": rows,
            "intervals": {k: v.to_dict() for k, v in found.items()}}
