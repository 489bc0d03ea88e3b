"""A variant against its parent on sample texts: the largest output difference and whether the predictions agree.

Classifiers: logits, argmax agreement. Causal LMs: next-token logits at every real position, top-1 agreement.
Encoders: last hidden states at every real position, and the smallest cosine between the mean-pooled sentence
embeddings. Both models see the same tokens, in the same padded batches.
"""
from __future__ import annotations

import numpy as np
import torch

from .. import inference
from ..inference.forward import outputs as model_outputs

# A variant is checked against its parent on the same inputs, each cut at this many tokens (or the parent's context
# when smaller): both models' full outputs (a causal LM's: tokens x vocabulary) are held at once.
CHECK_TOKENS = 256


def outputs_of(model, head: str):
    """forward(encoding) -> the output compared for `head`, as float32 numpy."""
    @torch.inference_mode()
    def forward(enc) -> np.ndarray:
        out = model_outputs(model, **enc)
        value = out.last_hidden_state if head == "encoder" else out.logits
        return value.float().cpu().numpy()

    return forward


def _pooled(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    weights = mask[..., None].astype(np.float64)
    return (hidden * weights).sum(1) / np.maximum(weights.sum(1), 1e-9)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)


def compare(head: str, parent_fn, variant_fn, tokenizer, texts: list[str], max_length: int,
            batch_size: int = 8) -> dict:
    """{"max_abs_diff", "argmax_agreement" (or "min_cosine" for an encoder), "texts"} over `texts`, each cut at
    `max_length` tokens (the parent's context, `inference.limit`, as every feature cuts it)."""
    diff, agree, count, cosines = 0.0, 0, 0, []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(texts[start:start + batch_size], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt")
        ref, new = parent_fn(enc), variant_fn(enc)
        mask = enc["attention_mask"].numpy().astype(bool)
        if head == "classifier":
            diff = max(diff, float(np.abs(ref - new).max()))
            agree += int((ref.argmax(-1) == new.argmax(-1)).sum())
            count += len(ref)
            continue
        diff = max(diff, float(np.abs(ref - new)[mask].max()))
        if head == "encoder":
            cosines.extend(_cosines(_pooled(ref, mask), _pooled(new, mask)).tolist())
        else:
            agree += int((ref.argmax(-1) == new.argmax(-1))[mask].sum())
            count += int(mask.sum())
    result = {"max_abs_diff": float(f"{diff:.3g}"), "texts": len(texts)}
    if head == "encoder":
        result["min_cosine"] = round(float(min(cosines)), 6) if cosines else None
    else:
        result["argmax_agreement"] = round(agree / max(count, 1), 4)
    return result


def check_torch(loaded, variant, texts: list[str]) -> dict:
    """A torch variant (a copy of the parent, changed) against the parent."""
    return compare(loaded.head, outputs_of(loaded.model, loaded.head), outputs_of(variant.eval(), loaded.head),
                   loaded.tokenizer, texts, inference.limit(loaded, CHECK_TOKENS))
