"""infer: texts through a model with the head it was opened with, in batches of exactly the size asked for (halved
on out-of-memory): what the speed measurements time (the benchmark's speed task, compress's speed and peak memory).

The forward is the one every feature runs for that head: a classifier's [CLS]-only logits (`classify`'s), an
encoder's last hidden states (`embed`'s), a causal LM's next-token logits (`score_tokens`'s); nothing is kept.
"""
from __future__ import annotations

import numpy as np

from .. import capabilities as caps
from ..batching import pad, run_batched
from .forward import classifier_logits, last_hidden, lm_logits
from .inputs import Tokens, pad_id, tokenize

SPEED = caps.needs("Speed measurement", hint="Time a model whose weights LLM Lab loads.")


def infer(loaded, texts: list[str], *, batch_size: int = 32, positions: list[int] | None = None, on_batch=None,
          max_length: int | None = None, tokens: Tokens | None = None) -> int:
    """Run `texts` (or only `positions` of them) through the model's own head; returns the batch size that ran.
    `tokens` (from `tokenize`) skips tokenising again, so a timed call times the model alone."""
    import torch

    caps.require(SPEED, loaded)
    tokens = tokens or tokenize(loaded, texts, max_length=max_length)
    model, device, pid = loaded.model, loaded.device, pad_id(loaded.tokenizer)
    run = {"classifier": classifier_logits, "causal-lm": lm_logits}.get(loaded.head, last_hidden)

    @torch.inference_mode()
    def forward(batch):
        ids, mask = pad([tokens.ids[p] for p in batch], pid)
        kwargs = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
        if tokens.type_ids is not None and loaded.head != "causal-lm":
            kwargs["token_type_ids"] = pad([tokens.type_ids[p] for p in batch], 0)[0].to(device)
        run(model, **kwargs)
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()

    todo = list(range(len(tokens.ids))) if positions is None else list(positions)
    with loaded.lock:
        return run_batched(todo, np.array(tokens.lengths), forward, batch_size, loaded.device, on_batch)
