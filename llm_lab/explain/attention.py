"""Attention weights of any registry model (encoder or decoder), rollout and head summaries.

Load the model with `registry.load(actor, name, attention=True)` (eager attention): SDPA and flash
attention do not return the weights. Everything returned is numpy; `cap` shrinks a matrix for
the browser (at most `MAX_VIEW_TOKENS` per side) by summing blocks of columns and averaging
blocks of rows, so rows still sum to 1.
"""
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import ModelError
from ..inference import forward
from . import text as textmod

MAX_VIEW_TOKENS = 128
# Attention weights are layers x heads x tokens x tokens: a long paste on a big model would not fit in memory, so
# the view reads at most this many tokens (the model's context when smaller), and says so in its notes.
MAX_ATTENTION_TOKENS = 512


@dataclass
class AttentionResult:
    tokens: list[str]
    attentions: np.ndarray            # (layers, heads, T, T), float32, rows sum to 1
    causal: bool
    notes: list[str] = field(default_factory=list)

    @property
    def shape(self):
        return self.attentions.shape


def compute(loaded, text: str, max_tokens: int | None = MAX_ATTENTION_TOKENS) -> AttentionResult:
    """Attention probabilities for one text: (layers, heads, T, T)."""
    enc = textmod.encode(loaded, text, cap=max_tokens)
    model = loaded.model
    base = getattr(model, "base_model", model) if loaded.head == "classifier" else model
    with loaded.lock, torch.inference_mode():
        try:
            out = forward.outputs(base, input_ids=enc.input_ids, attention_mask=torch.ones_like(enc.input_ids),
                                  output_attentions=True)
        except (ValueError, NotImplementedError) as exc:
            raise ModelError(f"{loaded.entry.name} cannot return attention weights ({exc}). Load it with eager "
                             "attention (attention=True).") from exc
    atts = getattr(out, "attentions", None)
    if not atts or any(a is None for a in atts):
        raise ModelError(f"{loaded.entry.name} does not return attention weights with its current attention "
                         "implementation. Open it with eager attention (registry.load(actor, ..., attention=True)); "
                         "models without softmax attention have no attention map to show.")
    arr = torch.stack([a[0].float() for a in atts]).cpu().numpy()  # (L, H, T, T)
    causal = loaded.head == "causal-lm" or bool(getattr(model.config, "is_decoder", False))
    return AttentionResult(enc.tokens, arr, causal, list(enc.notes))


def rollout(attentions: np.ndarray, residual: bool = True) -> np.ndarray:
    """Abnar & Zuidema attention rollout: heads averaged, 0.5·A + 0.5·I per layer, multiplied through.

    Returns (T, T): how much each output position draws on each input token after all layers.
    """
    mats = attentions.mean(axis=1)  # (L, T, T)
    t = mats.shape[-1]
    result = np.eye(t, dtype=np.float64)
    for layer in mats.astype(np.float64):
        a = 0.5 * layer + 0.5 * np.eye(t) if residual else layer
        a = a / a.sum(axis=-1, keepdims=True)
        result = a @ result
    return result.astype(np.float32)


def head_summary(attentions: np.ndarray, first_is_special: bool = True) -> dict[str, np.ndarray]:
    """Per (layer, head): mean row entropy (bits) and the mean share of attention to the first token,
    the last token ([SEP]/EOS in encoders), the previous token and the token itself. Each array is (layers, heads)."""
    a = attentions.astype(np.float32, copy=False)
    t = a.shape[-1]
    ent = -(a * np.log2(np.clip(a, 1e-12, 1))).sum(-1, dtype=np.float64).mean(-1)
    first = a[..., :, 0].mean(-1)
    last = a[..., :, -1].mean(-1)
    self_ = np.diagonal(a, axis1=-2, axis2=-1).mean(-1)
    prev = np.diagonal(a, offset=-1, axis1=-2, axis2=-1).mean(-1) if t > 1 else np.zeros(a.shape[:2])
    return {"entropy": ent.astype(np.float32), "first": first.astype(np.float32), "last": last.astype(np.float32),
            "previous": prev.astype(np.float32), "self": self_.astype(np.float32)}


def head_types(summary: dict[str, np.ndarray], threshold: float = 0.5) -> list[dict]:
    """Rows (layer, head, type, share) for heads whose dominant pattern exceeds `threshold`."""
    rows = []
    layers, heads = summary["entropy"].shape
    for layer in range(layers):
        for head in range(heads):
            shares = {k: float(summary[k][layer, head]) for k in ("first", "last", "previous", "self") if k in summary}
            kind, share = max(shares.items(), key=lambda kv: kv[1])
            label = {"first": "attends to first token ([CLS]/BOS)", "last": "attends to last token ([SEP])",
                     "previous": "previous token", "self": "itself"}[kind] if share >= threshold else "broad / mixed"
            rows.append({"layer": layer, "head": head, "type": label, "share": round(share, 3),
                         "entropy_bits": round(float(summary["entropy"][layer, head]), 3)})
    return rows


def cap(matrix: np.ndarray, tokens: list[str], limit: int = MAX_VIEW_TOKENS) -> tuple[np.ndarray, list[str], str]:
    """Shrink a (T, T) attention matrix to at most `limit` per side by pooling consecutive tokens.

    Rows are averaged within a block and columns summed, so each row still sums to 1. Returns the
    matrix, labels, and a note ('' when nothing was pooled)."""
    t = matrix.shape[-1]
    if t <= limit:
        return matrix, list(tokens), ""
    size = int(np.ceil(t / limit))
    groups = [list(range(s, min(s + size, t))) for s in range(0, t, size)]
    pooled_cols = np.stack([matrix[..., g].sum(-1) for g in groups], axis=-1)
    pooled = np.stack([pooled_cols[..., g, :].mean(-2) for g in groups], axis=-2)
    labels = [f"{g[0]}-{g[-1]}:{tokens[g[0]].strip()[:8]}…" for g in groups]
    note = (f"{t} tokens: each cell pools {size} consecutive tokens ({len(groups)} × {len(groups)} cells) so the "
            f"browser stays responsive. Shorten the text to see single tokens.")
    return pooled, labels, note
