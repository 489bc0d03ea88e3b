"""Length-bucketed batches with per-batch padding, and an automatic batch size that halves on OOM.

Texts are tokenised once, in bulk, without padding; batches take examples of similar length
(longest first, so an out-of-memory error shows up on the first batch) and are padded only to
their own longest member.
"""
from __future__ import annotations

import gc

import numpy as np


def is_oom(exc: BaseException) -> bool:
    name = type(exc).__name__
    return "OutOfMemory" in name or "out of memory" in str(exc).lower()


def free_memory(device: str) -> None:
    gc.collect()
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


def default_batch_size(device: str, requested: int | None = None) -> int:
    if requested:
        return int(requested)
    return 128 if str(device).startswith("cuda") else 32


def pad(rows: list[list[int]], pad_id: int, side: str = "right"):
    """(input_ids, attention_mask) as int64 torch tensors, padded to the longest row."""
    import torch

    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        if side == "right":
            ids[i, :len(r)] = r
            mask[i, :len(r)] = 1
        else:
            ids[i, width - len(r):] = r
            mask[i, width - len(r):] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


def run_batched(positions: list[int], lengths, forward, batch_size: int, device: str = "cpu",
                on_batch=None, token_budget: int | None = None) -> int:
    """Call `forward(batch_positions)` over `positions`, longest first, in batches.

    `on_batch(batch_positions, output)` receives each batch's output. On out-of-memory the batch
    size halves and the same batch is retried; it stays halved for the rest of the run (down to 1,
    where the error is raised). `token_budget` (optional) caps batch x longest length. Returns the
    batch size that worked.
    """
    lengths = np.asarray(lengths)
    order = sorted(positions, key=lambda p: (-int(lengths[p]), p))
    start, size = 0, max(1, int(batch_size))
    while start < len(order):
        take = size
        if token_budget:
            take = max(1, min(size, token_budget // max(1, int(lengths[order[start]]))))
        batch = order[start:start + take]
        try:
            out = forward(batch)
        except Exception as exc:  # noqa: BLE001 - only OOM is handled, the rest re-raised
            if not is_oom(exc) or len(batch) == 1:
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
