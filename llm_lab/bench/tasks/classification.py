"""Classification: probabilities from a sequence-classification model, scored against the label column."""
from __future__ import annotations

import numpy as np

from ... import inference, metrics
from ...text_utils import natural_key
from .common import TaskError, headline, map_labels, render, short


def predict_probs(state, texts, pairs=None) -> np.ndarray:
    """Probabilities for every text (`inference.classify`), resuming from the partial outputs."""
    todo = state.partial.missing(len(texts))
    done = [len(texts) - len(todo)]

    def on_batch(batch, probs):
        state.partial.add(batch, probs.tolist())
        done[0] += len(batch)
        state.progress(done[0], len(texts), f"{done[0]}/{len(texts)} examples")

    result = inference.classify(state.loaded, texts, pairs, max_length=state.spec.max_length,
                                batch_size=state.batch_size, positions=todo, on_batch=on_batch)
    state.stats["tokens"] = int(sum(result.tokens.lengths))
    state.stats["batch_size"] = result.batch_size
    cut = result.tokens.cut_count()
    if cut:
        state.notes.append(f"{cut} of {len(texts)} inputs were longer than {result.tokens.limit} tokens and were cut "
                           "to that length (the model reads no more).")
    return np.array([state.partial.outputs[i] for i in range(len(texts))], dtype=np.float64)


def run(state) -> dict:
    spec, loaded, frame = state.spec, state.loaded, state.frame
    model_labels = loaded.labels
    if not model_labels:
        raise TaskError(f"{loaded.entry.name} has no classification head (it is loaded as {loaded.head}).")
    dataset_labels = sorted(frame["label"].astype(str).unique().tolist(), key=natural_key)
    mapping, note = map_labels(dataset_labels, model_labels, spec.label_map, loaded.head_is_new, loaded.entry.name)
    if note:
        state.notes.append(note)
    texts = render(spec.prompt, frame, "text")
    pairs = frame["text_pair"].astype(str).tolist() if "text_pair" in frame.columns else None
    probs = predict_probs(state, texts, pairs)
    preds = probs.argmax(axis=1)
    refs = np.array([mapping[str(v)] for v in frame["label"].astype(str)])
    eval_labels = sorted(set(mapping.values()))
    shown = list(model_labels)  # names shown: the dataset's label when a model output maps to one
    for d, i in mapping.items():
        shown[i] = d
    values, extra = {}, {}
    for name in spec.metrics:
        if name in ("precision", "recall", "f1"):
            out = metrics.compute(name, preds.tolist(), refs.tolist(), labels=eval_labels)
            values[f"{name}_macro"] = values[name] = out[name]
            extra[f"{name}_per_class"] = dict(zip([shown[i] for i in out["labels"]], out[f"{name}_per_class"]))
        elif name == "roc_auc":
            scores = probs[:, eval_labels]
            ref_pos = np.searchsorted(eval_labels, refs)
            out = metrics.compute("roc_auc", scores.tolist(), ref_pos.tolist())
            values["roc_auc"] = out["roc_auc"]
            if out.get("note"):
                state.notes.append("ROC-AUC: " + out["note"])
        elif name == "confusion_matrix":
            labels = sorted(set(eval_labels) | set(preds.tolist()))
            out = metrics.compute("confusion_matrix", preds.tolist(), refs.tolist(), labels=labels)
            extra["confusion_matrix"] = {"labels": [shown[i] for i in labels], "matrix": out["confusion_matrix"]}
        else:
            values[name] = metrics.compute(name, preds.tolist(), refs.tolist())[name]
    head_name = next((m for m in spec.metrics if m in values), "accuracy")
    if head_name not in values:
        values["accuracy"] = metrics.compute("accuracy", preds.tolist(), refs.tolist())["accuracy"]
    ci = metrics.bootstrap_ci(head_name, preds, refs, seed=spec.seed, **({"labels": eval_labels} if head_name in ("f1", "precision", "recall") else {}))
    rows = []
    for i in range(len(frame)):
        rows.append({"id": int(frame["id"].iloc[i]), "text": short(texts[i]), "label": str(frame["label"].iloc[i]),
                     "prediction": shown[int(preds[i])], "confidence": round(float(probs[i, preds[i]]), 4),
                     "p_label": round(float(probs[i, refs[i]]), 4), "correct": bool(preds[i] == refs[i])})
    return {"metrics": values, "details": extra, "headline": headline(head_name, values, ci), "per_example": rows,
            "labels": shown}
