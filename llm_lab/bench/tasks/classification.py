"""Classification: probabilities from a sequence-classification model, scored against the label column."""
from __future__ import annotations

import numpy as np
import torch

from ... import metrics
from ...cls_forward import classifier_logits
from ...batching import pad, run_batched
from ...text_utils import natural_key
from .common import TaskError, headline, map_labels, render, short


def tokenize(tokenizer, texts: list[str], pairs: list[str] | None, max_length: int) -> dict:
    """Tokenise every text once, in bulk (the fast tokenizer's batch path), without padding."""
    enc = tokenizer(texts, pairs, truncation=True, max_length=max_length, padding=False,
                    return_attention_mask=False)
    return {k: v for k, v in enc.items() if k in ("input_ids", "token_type_ids")}


def make_forward(loaded, enc: dict):
    """forward(positions) -> softmax probabilities (numpy, float32) for those examples."""
    model, device = loaded.model, loaded.device
    pad_id = loaded.tokenizer.pad_token_id or 0

    @torch.inference_mode()
    def forward(batch):
        ids, mask = pad([enc["input_ids"][p] for p in batch], pad_id)
        kwargs = {"input_ids": ids.to(device)}
        if not bool(mask.all()):  # no padding in this bucket: no mask, so SDPA may take its fused path
            kwargs["attention_mask"] = mask.to(device)
        if "token_type_ids" in enc:
            kwargs["token_type_ids"] = pad([enc["token_type_ids"][p] for p in batch], 0)[0].to(device)
        logits = classifier_logits(model, **kwargs).float()  # the [CLS]-only last layer where it applies
        return torch.softmax(logits, dim=-1).cpu().numpy()

    return forward


def predict_probs(state, texts, pairs=None) -> np.ndarray:
    """Probabilities for every text, resuming from the partial outputs, batched by length."""
    loaded = state.loaded
    enc = tokenize(loaded.tokenizer, texts, pairs, state.max_length)
    lengths = np.array([len(x) for x in enc["input_ids"]])
    state.stats["tokens"] = int(lengths.sum())
    todo = state.partial.missing(len(texts))
    done = [len(texts) - len(todo)]
    forward = make_forward(loaded, enc)

    def on_batch(batch, probs):
        state.partial.add(batch, probs.tolist())
        done[0] += len(batch)
        state.progress(done[0], len(texts), f"{done[0]}/{len(texts)} examples")

    with loaded.lock:
        # short texts share a batch with more of their kind: up to 8x the batch size, within the token
        # budget of a full batch of the longest texts (so memory use stays that of the plain batch size)
        budget = state.batch_size * max(1, int(lengths.max()))
        state.stats["batch_size"] = run_batched(todo, lengths, forward, state.batch_size * 8, loaded.device, on_batch,
                                                token_budget=budget)
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
