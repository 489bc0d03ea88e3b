"""Precision (macro, micro, weighted, binary, or per class) via scikit-learn (LLM Lab local evaluate module)."""
import datasets
import evaluate
import numpy as np
from sklearn.metrics import precision_recall_fscore_support

_KWARGS = """
predictions (list of int), references (list of int).
labels (list of int, optional): the classes to report (default: every class seen in either list).
average ("macro" default, "micro", "weighted", "binary", or None for per class only).
pos_label (int, default 1, for average="binary"). zero_division (default 0).
Returns {"precision": float, "precision_per_class": [float per label], "labels": [int]}.
"""


class Precision(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Precision of a classifier; the macro average weighs every class equally.",
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.precision_recall_fscore_support.html"],
        )

    def _compute(self, predictions, references, labels=None, average="macro", pos_label=1, zero_division=0, sample_weight=None):
        p = np.asarray(predictions)
        r = np.asarray(references)
        if labels is None:
            labels = sorted(set(p.tolist()) | set(r.tolist()))
        labels = [int(x) for x in labels]
        index = {"precision": 0, "recall": 1, "f1": 2}["precision"]
        per_class = precision_recall_fscore_support(
            r, p, labels=labels, average=None, zero_division=zero_division, sample_weight=sample_weight
        )[index]
        out = {"precision_per_class": [float(v) for v in per_class], "labels": labels}
        if average is None:
            out["precision"] = None
        else:
            out["precision"] = float(
                precision_recall_fscore_support(
                    r, p, labels=labels if average != "binary" else None, average=average, pos_label=pos_label,
                    zero_division=zero_division, sample_weight=sample_weight,
                )[index]
            )
        return out
