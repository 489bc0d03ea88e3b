"""Token sequences, shared by generation, benchmarks, explanations, comparisons and training.

- `context_length(model, tokenizer)`: how many tokens a model takes (one rule for everyone).
- `pad(rows, pad_id, side)`: token-id lists -> (input_ids, attention_mask) tensors. Right padding
  for encoders/classifiers and scoring; left padding for generation (a decoder-only model's new
  tokens must follow each prompt directly, so greedy batched outputs equal single-prompt ones).
- `length_order` / `length_buckets`: examples of similar length batched together, so a batch is
  padded only to its own longest member.
- `run_batched`: length-ordered batches whose size halves on out-of-memory.
"""
from __future__ import annotations

import numpy as np

from .device import free_memory, is_out_of_memory

FALLBACK_CONTEXT = 512
_POSITION_FIELDS = ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length", "seq_length")
_SANE_TOKENIZER_LIMIT = 1_000_000  # tokenizers without a limit report ~1e30 (VERY_LARGE_INTEGER)


# ---------------------------------------------------------------- context length
def context_length(model, tokenizer=None) -> int:
    """The most tokens one input may have for `model` (with `tokenizer`).

    The rule: the model config's position count (`max_position_embeddings`, `n_positions`,
    `n_ctx`, `max_sequence_length`, `seq_length`, first one set; of the text config for
    multimodal models) and the tokenizer's `model_max_length` when it is a real limit
    (0 < value < 1e6; tokenizers without one report ~1e30). When both are known the smaller
    wins: both are hard limits (RoBERTa's config counts 514 positions, its tokenizer 512, and
    only 512 fit). When neither is known: 512, the common encoder size, which every model
    architecture in use handles.
    """
    limits = []
    cfg = getattr(model, "config", model)  # a model or its config
    if cfg is not None:
        cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
        for name in _POSITION_FIELDS:
            value = getattr(cfg, name, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                limits.append(value)
                break
    tok_limit = getattr(tokenizer, "model_max_length", None) if tokenizer is not None else None
    if isinstance(tok_limit, int) and 0 < tok_limit < _SANE_TOKENIZER_LIMIT:
        limits.append(tok_limit)
    return min(limits) if limits else FALLBACK_CONTEXT


# ---------------------------------------------------------------- padding
def pad(rows, pad_id: int, side: str = "right", device=None, multiple_of: int = 0):
    """(input_ids, attention_mask) as int64 torch tensors, padded to the longest row.

    `rows`: token-id lists (or 1-D tensors/arrays). `side="left"` puts the padding first
    (generation), `"right"` after the tokens. The width is at least 1 and, with `multiple_of`,
    rounded up to a multiple of it (tensor-core friendly shapes). `device`: where the tensors go
    (default: CPU).
    """
    import torch

    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', not {side!r}")
    rows = [np.asarray(r, dtype=np.int64).reshape(-1) for r in rows]
    width = max([1] + [len(r) for r in rows])
    if multiple_of:
        width = -(-width // multiple_of) * multiple_of
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        n = len(r)
        if not n:
            continue
        if side == "right":
            ids[i, :n] = r
            mask[i, :n] = 1
        else:
            ids[i, width - n:] = r
            mask[i, width - n:] = 1
    ids, mask = torch.from_numpy(ids), torch.from_numpy(mask)
    if device is not None:
        ids, mask = ids.to(device), mask.to(device)
    return ids, mask


# ---------------------------------------------------------------- length buckets
def length_order(positions, lengths, longest_first: bool = False) -> list[int]:
    """`positions` sorted by `lengths[position]` (shortest or longest first), ties by position."""
    lengths = np.asarray(lengths)
    sign = -1 if longest_first else 1
    return sorted(positions, key=lambda p: (sign * int(lengths[p]), p))


def length_buckets(lengths, batch_size: int | None = None, token_budget: int | None = None,
                   longest_first: bool = False, positions=None) -> list[list[int]]:
    """Batches of positions of similar length, in `length_order`.

    A batch takes the next positions in order while it has at most `batch_size` members and,
    with `token_budget`, members x its longest length stays within the budget; it always takes
    at least one.
    """
    lengths = np.asarray(lengths)
    order = length_order(range(len(lengths)) if positions is None else positions, lengths, longest_first)
    out, start = [], 0
    while start < len(order):
        group, width = [order[start]], int(lengths[order[start]])
        for p in order[start + 1:]:
            if batch_size and len(group) >= batch_size:
                break
            w = max(width, int(lengths[p]))
            if token_budget and (len(group) + 1) * w > token_budget:
                break
            group.append(p)
            width = w
        out.append(group)
        start += len(group)
    return out


def run_batched(positions: list[int], lengths, forward, batch_size: int, device: str = "cpu",
                on_batch=None, token_budget: int | None = None) -> int:
    """Call `forward(batch_positions)` over `positions`, longest first, in batches.

    `on_batch(batch_positions, output)` receives each batch's output. On out-of-memory the batch
    size halves and the same batch is retried; it stays halved for the rest of the run (down to 1,
    where the error is raised). `token_budget` (optional) caps batch x longest length. Returns the
    batch size that worked. Longest first, so an out-of-memory error shows up on the first batch.
    """
    lengths = np.asarray(lengths)
    order = length_order(positions, lengths, longest_first=True)
    start, size = 0, max(1, int(batch_size))
    while start < len(order):
        take = size
        if token_budget:
            take = max(1, min(size, token_budget // max(1, int(lengths[order[start]]))))
        batch = order[start:start + take]
        try:
            out = forward(batch)
        except Exception as exc:  # noqa: BLE001 - only OOM is handled, the rest re-raised
            if not is_out_of_memory(exc) or len(batch) == 1:
                raise
            size = max(1, min(size, len(batch)) // 2)
            if token_budget:
                token_budget = max(1, token_budget // 2)
            free_memory(device)
            continue
        if on_batch:
            on_batch(batch, out)
        start += len(batch)
    return size
