"""ROC-AUC from class probabilities via scikit-learn (LLM Lab local evaluate module)."""
import datasets
import evaluate
import numpy as np
from sklearn.metrics import roc_auc_score

_KWARGS = """
predictions (list of list of float): per example, a score (probability) for every class, in label order.
references (list of int): true labels.
multi_class ("ovr" default or "ovo"), average ("macro" default or "weighted") for more than two classes.
Binary problems use the score of class 1. Returns {"roc_auc": float}.
"""


class RocAuc(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Area under the ROC curve; one-vs-rest macro average for more than two classes.",
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("float64")), "references": datasets.Value("int64")}
            ),
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.roc_auc_score.html"],
        )

    def _compute(self, predictions, references, multi_class="ovr", average="macro", labels=None):
        scores = np.asarray(predictions, dtype=float)
        refs = np.asarray(references)
        if len(set(refs.tolist())) < 2:
            return {"roc_auc": None, "note": "ROC-AUC needs examples of at least two classes in the references."}
        if scores.ndim == 2 and scores.shape[1] == 2:
            return {"roc_auc": float(roc_auc_score(refs, scores[:, 1]))}
        if scores.ndim == 1 or scores.shape[1] == 1:
            return {"roc_auc": float(roc_auc_score(refs, scores.reshape(-1)))}
        labels = list(range(scores.shape[1])) if labels is None else labels
        present = sorted(set(refs.tolist()))
        if len(present) < scores.shape[1]:
            # sklearn needs every class present for multi-class AUC: average over the classes that are.
            values = [roc_auc_score((refs == c).astype(int), scores[:, c]) for c in present]
            return {"roc_auc": float(np.mean(values)), "note": "classes absent from the references were skipped"}
        probs = scores / scores.sum(axis=1, keepdims=True)
        return {"roc_auc": float(roc_auc_score(refs, probs, multi_class=multi_class, average=average, labels=labels))}
