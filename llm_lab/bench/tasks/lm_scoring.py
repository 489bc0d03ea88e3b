"""Shared by language modelling and multiple choice: log-likelihood of target tokens, batched by length.

A request is (input ids, target ids, n): the model reads `input`, predicts the next token at every
position, and the last `n` predictions are scored against the last `n` targets.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ...batching import pad, run_batched


def score_requests(state, requests: list[tuple[list[int], list[int], int]], label: str = "windows") -> list[list[float]]:
    """Per request, the log-probabilities of its `n` scored tokens (resuming from partial outputs)."""
    loaded = state.loaded
    model, device = loaded.model, loaded.device
    pad_id = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else 0
    lengths = np.array([len(r[0]) for r in requests])
    todo = state.partial.missing(len(requests))
    done = [len(requests) - len(todo)]

    @torch.inference_mode()
    def forward(batch):
        ids, mask = pad([requests[p][0] for p in batch], pad_id)
        targets, _ = pad([requests[p][1] for p in batch], 0)
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        logp = F.log_softmax(logits, dim=-1).gather(-1, targets.to(device).unsqueeze(-1)).squeeze(-1).cpu().numpy()
        out = []
        for row, p in enumerate(batch):
            length, n = len(requests[p][0]), requests[p][2]
            out.append(logp[row, length - n:length].tolist())
        return out

    def on_batch(batch, out):
        state.partial.add(batch, out)
        done[0] += len(batch)
        state.progress(done[0], len(requests), f"{done[0]}/{len(requests)} {label}")

    with loaded.lock:
        state.stats["batch_size"] = run_batched(todo, lengths, forward, state.batch_size, loaded.device, on_batch)
    return [state.partial.outputs[i] for i in range(len(requests))]


def prefix_token(tokenizer) -> int:
    for tid in (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id):
        if tid is not None:
            return int(tid)
    return 0
