"""Exact match rate between generated strings and references (LLM Lab local evaluate module)."""
import re
import string

import datasets
import evaluate
import numpy as np

_KWARGS = """
predictions (list of str), references (list of str).
strip (bool, default True): ignore surrounding white space. ignore_case (bool, default False).
ignore_punctuation (bool, default False). ignore_numbers (bool, default False).
regexes_to_ignore (list of str, optional). Returns {"exact_match": fraction in [0, 1], "matches": per example 0/1}.
"""


def normalise(texts, strip=True, ignore_case=False, ignore_punctuation=False, ignore_numbers=False, regexes_to_ignore=None):
    out = []
    for text in texts:
        text = "" if text is None else str(text)
        for pattern in regexes_to_ignore or []:
            text = re.sub(pattern, "", text)
        if ignore_case:
            text = text.lower()
        if ignore_punctuation:
            text = text.translate(str.maketrans("", "", string.punctuation))
        if ignore_numbers:
            text = text.translate(str.maketrans("", "", string.digits))
        if strip:
            text = text.strip()
        out.append(text)
    return out


class ExactMatch(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Fraction of predictions identical to their reference after optional normalisation.",
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references, **options):
        p = np.array(normalise(predictions, **options), dtype=object)
        r = np.array(normalise(references, **options), dtype=object)
        matches = (p == r).astype(int) if len(p) else np.zeros(0, dtype=int)
        return {"exact_match": float(matches.mean()) if len(p) else None, "matches": matches.tolist()}
