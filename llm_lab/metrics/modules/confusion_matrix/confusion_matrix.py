"""Confusion matrix via scikit-learn (LLM Lab local evaluate module)."""
import datasets
import evaluate
import numpy as np
from sklearn.metrics import confusion_matrix

_KWARGS = """
predictions (list of int), references (list of int). labels (list of int, optional): row/column order.
normalize (None default, "true", "pred", "all"). Returns {"confusion_matrix": rows = true, columns = predicted, "labels"}.
"""


class ConfusionMatrix(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Counts of (true label, predicted label) pairs.",
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.confusion_matrix.html"],
        )

    def _compute(self, predictions, references, labels=None, normalize=None, sample_weight=None):
        p = np.asarray(predictions)
        r = np.asarray(references)
        if labels is None:
            labels = sorted(set(p.tolist()) | set(r.tolist()))
        labels = [int(x) for x in labels]
        matrix = confusion_matrix(r, p, labels=labels, normalize=normalize, sample_weight=sample_weight)
        return {"confusion_matrix": matrix.tolist(), "labels": labels}
