"""infer: texts through a model with the head it was opened with, the way the four calls run it (class
probabilities, sentence embeddings, or next-token logits of a causal LM). What the speed measurements time."""
from __future__ import annotations

import numpy as np

from ..batching import pad, run_batched
from .forward import lm_logits
from .inputs import pad_id, tokenize


def infer(loaded, texts: list[str], *, batch_size: int = 32, positions: list[int] | None = None, on_batch=None,
          max_length: int | None = None, tokens=None):
    """Run `texts` (or only `positions` of them) through the model's own head; returns the outputs of a
    classifier (probabilities) or an encoder (embeddings), None for a causal LM (its logits are not kept)."""
    from .classify import classify
    from .embed import embed

    if loaded.head == "classifier":
        return classify(loaded, texts, max_length=max_length, batch_size=batch_size, positions=positions,
                        on_batch=on_batch, tokens=tokens).probs
    if loaded.head == "encoder" and positions is None and on_batch is None:
        return embed(loaded, texts, max_length=max_length, batch_size=batch_size).vectors
    _next_token_logits(loaded, tokens or tokenize(loaded, texts, max_length=max_length), batch_size, positions,
                       on_batch)
    return None


def _next_token_logits(loaded, tokens, batch_size, positions, on_batch) -> None:
    """A forward pass over each batch (logits of a causal LM, hidden states of an encoder), nothing kept."""
    import torch

    from .forward import last_hidden

    model, device, pid = loaded.model, loaded.device, pad_id(loaded.tokenizer)
    run = lm_logits if loaded.head == "causal-lm" else last_hidden

    @torch.inference_mode()
    def forward(batch):
        ids, mask = pad([tokens.ids[p] for p in batch], pid)
        run(model, input_ids=ids.to(device), attention_mask=mask.to(device))
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()

    todo = list(range(len(tokens.ids))) if positions is None else list(positions)
    with loaded.lock:
        run_batched(todo, np.array(tokens.lengths), forward, batch_size, loaded.device, on_batch)
