"""Classification: probabilities from a sequence-classification model, scored against the label column."""
from __future__ import annotations

import numpy as np

from ... import inference, metrics
from ...metrics import intervals
from ...stats import calibration as cal
from ...text_utils import natural_key
from .common import TaskError, headline, map_labels, render, short

# 2: every metric with its interval, the full probability vector per example, calibration
VERSION = 2


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
    ref_pos = np.searchsorted(eval_labels, refs)
    intervals = _intervals(values, probs, preds, refs, eval_labels, ref_pos, spec.seed)
    calibration = _calibration(state, probs, refs, texts, pairs, mapping)
    values.update({k: v for k, v in calibration.pop("values").items()})
    intervals.update(calibration.pop("intervals"))
    extra["calibration"] = calibration
    rows = []
    for i in range(len(frame)):
        rows.append({"id": int(frame["id"].iloc[i]), "text": short(texts[i]), "label": str(frame["label"].iloc[i]),
                     "prediction": shown[int(preds[i])], "confidence": float(probs[i, preds[i]]),
                     "p_label": float(probs[i, refs[i]]), "correct": bool(preds[i] == refs[i]),
                     "probs": [float(p) for p in probs[i]]})
    return {"metrics": values, "details": extra, "headline": headline(head_name, values, intervals.get(head_name)),
            "per_example": rows, "labels": shown, "intervals": {k: v.to_dict() for k, v in intervals.items()}}


def _intervals(values, probs, preds, refs, eval_labels, ref_pos, seed) -> dict:
    """An interval for every metric computed: Wilson for accuracy, BCa for macro P/R/F1, bootstrap for AUC."""
    out = {}
    for name in values:
        if name == "accuracy":
            out[name] = intervals.of_hits(preds == refs)
        elif name.split("_")[0] in ("precision", "recall", "f1"):
            out[name] = intervals.of_labels(name.split("_")[0], preds, refs, eval_labels, seed=seed)
        elif name == "roc_auc" and values[name] is not None:
            out[name] = intervals.of_roc_auc(probs[:, eval_labels], ref_pos, seed=seed)
    return out


def _calibration(state, probs, refs, texts, pairs, mapping) -> dict:
    """ECE, adaptive ECE, Brier and NLL with intervals, the reliability diagram's bins, and temperature scaling
    fitted on the dataset's validation split (when it has one and this task does not score it)."""
    seed = state.spec.seed
    found = intervals.of_calibration(probs, refs, seed=seed)
    out = {"values": {k: v.value for k, v in found.items()}, "intervals": found,
           "reliability": cal.reliability(probs, refs), "bins": cal.BINS}
    fitted = _fit_temperature(state, mapping)
    if fitted:
        temperature, n_fit = fitted
        after = cal.scaled(probs, temperature)
        scaled = intervals.of_calibration(after, refs, seed=seed)
        out.update(temperature=temperature, temperature_rows=n_fit, temperature_split="validation",
                   after={k: v.to_dict() for k, v in scaled.items()},
                   reliability_after=cal.reliability(after, refs))
    else:
        out["temperature_note"] = _no_temperature_reason(state)
    return out


VALIDATION_ROWS = 2000  # at most this many validation rows fit the temperature (one extra pass over them)


def _validation_frame(state):
    """The validation rows of the task's dataset (id + roles), or None when there are none to use."""
    from dataclasses import replace

    from ... import data
    from ..runner import scored_split, task_frame

    spec = state.spec
    if getattr(state, "actor", None) is None:
        return None
    # the rows scored must not be the rows the temperature is fitted on: a task scoring every row (split: all,
    # or a dataset without a test split) or the validation split itself gets no temperature
    if scored_split(spec, data.get(state.actor, spec.dataset))[1] in ("all", "validation"):
        return None
    try:
        info, frame, _, _ = task_frame(state.actor, replace(spec, split="validation", limit=VALIDATION_ROWS))
    except TaskError:
        return None
    return frame


def _fit_temperature(state, mapping):
    frame = _validation_frame(state)
    if frame is None or frame.empty:
        return None
    labels = frame["label"].astype(str)
    known = labels.isin(list(mapping))
    if known.sum() < 2:
        return None
    frame = frame[known.values]
    texts = render(state.spec.prompt, frame, "text")
    pairs = frame["text_pair"].astype(str).tolist() if "text_pair" in frame.columns else None
    probs = inference.classify(state.loaded, texts, pairs, max_length=state.spec.max_length,
                               batch_size=state.batch_size).probs
    refs = np.array([mapping[v] for v in frame["label"].astype(str)])
    return cal.fit_temperature(np.asarray(probs, dtype=np.float64), refs), len(frame)


def _no_temperature_reason(state) -> str:
    if state.spec.split in ("validation", "all") or state.notes and any("no test split" in n for n in state.notes):
        return ("Not fitted: temperature scaling is fitted on the validation split, and this task scores those "
                "rows too.")
    return "Not fitted: the dataset has no validation split to fit a temperature on."
