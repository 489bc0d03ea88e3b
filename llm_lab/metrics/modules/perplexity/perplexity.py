"""Perplexity from per-token log-likelihoods computed elsewhere (LLM Lab local evaluate module).

Unlike the Hub's `perplexity` measurement this one never loads a model: the caller passes, for each
text, the natural-log likelihood of every scored token.
"""
import math

import datasets
import evaluate
import numpy as np

_KWARGS = """
predictions (list of list of float): per text, the log-likelihood (natural log) of each scored token.
num_bytes (list of int, optional): UTF-8 bytes of each text, for bits per byte.
Returns {"perplexity": exp(total NLL / tokens) over all texts, "mean_perplexity": mean of per-text
perplexities, "perplexities": per text, "nll": mean NLL per token, "tokens", "bits_per_byte" (with num_bytes)}.
"""


class Perplexity(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Perplexity = exp(mean negative log-likelihood per token).",
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("float64"))}),
            reference_urls=["https://huggingface.co/docs/transformers/perplexity"],
        )

    def _compute(self, predictions, num_bytes=None):
        sums = np.array([-float(np.sum(x)) for x in predictions])
        counts = np.array([len(x) for x in predictions], dtype=float)
        total = float(counts.sum())
        if total == 0:
            return {"perplexity": None, "note": "no tokens were scored"}
        nll = float(sums.sum() / total)
        with np.errstate(divide="ignore", invalid="ignore"):
            per_text = np.where(counts > 0, np.exp(sums / np.maximum(counts, 1)), np.nan)
        out = {
            "perplexity": math.exp(nll),
            "mean_perplexity": float(np.nanmean(per_text)),
            "perplexities": [None if math.isnan(v) else float(v) for v in per_text],
            "nll": nll,
            "tokens": int(total),
        }
        if num_bytes is not None:
            out["bits_per_byte"] = float(sums.sum() / (math.log(2) * float(np.sum(num_bytes))))
        return out
