"""Accuracy: the fraction of predictions equal to their reference (LLM Lab local evaluate module)."""
import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Accuracy = correct predictions / all predictions."
_KWARGS = """
predictions (list of int): predicted labels. references (list of int): true labels.
normalize (bool, default True): fraction instead of count. sample_weight (list of float, optional).
Returns {"accuracy": float}.
"""


class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.accuracy_score.html"],
        )

    def _compute(self, predictions, references, normalize=True, sample_weight=None):
        p = np.asarray(predictions)
        r = np.asarray(references)
        hits = (p == r).astype(float)
        if sample_weight is not None:
            w = np.asarray(sample_weight, dtype=float)
            value = float((hits * w).sum() / w.sum()) if normalize else float((hits * w).sum())
        else:
            value = float(hits.mean()) if normalize else float(hits.sum())
        return {"accuracy": value}
