"""Evaluation metrics per task, as Trainer `compute_metrics` functions.

Classification: accuracy and macro-F1 with scikit-learn, called directly: it runs inside the
training loop at every evaluation, where going through `evaluate` modules (llm_lab.metrics)
costs about a second per call; the numbers are the same (tests check them against each other).
Language models: perplexity = exp(eval_loss), added after evaluation.
"""
import math

import numpy as np


def accuracy_f1(predictions, references) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    predictions, references = list(map(int, predictions)), list(map(int, references))
    return {"accuracy": float(accuracy_score(references, predictions)),
            "f1": float(f1_score(references, predictions, average="macro", zero_division=0))}


def classification_metrics(eval_pred) -> dict:
    logits, labels = eval_pred.predictions, eval_pred.label_ids
    if isinstance(logits, tuple):
        logits = logits[0]
    return accuracy_f1(np.argmax(logits, axis=-1), labels)


def add_perplexity(metrics: dict, prefix: str = "eval_") -> dict:
    loss = metrics.get(prefix + "loss")
    if loss is not None and math.isfinite(loss):
        metrics[prefix + "perplexity"] = float(math.exp(min(loss, 50)))
    return metrics


def best_metric(task: str) -> tuple[str, bool]:
    """(metric_for_best_model, greater_is_better) used by early stopping."""
    return ("f1", True) if task == "classify" else ("loss", False)
