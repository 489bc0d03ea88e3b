"""embed: sentence embeddings (mean-pooled over real tokens, L2-normalised, as sentence-transformers does for
MiniLM), of the last layer or of every layer, batched by length, cut at the model's context."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import capabilities as caps
from ..batching import pad, run_batched
from .forward import hidden_states, last_hidden
from .inputs import Tokens, pad_id, tokenize

DEFAULT_BATCH = 32
EMBED = caps.needs("Embeddings", hint="Embed with a model whose weights LLM Lab loads (an encoder or a classifier).")


@dataclass
class Embedded:
    """`vectors`: (texts, width), or (texts, layers + 1, width) with `all_layers` (the embeddings first)."""
    vectors: np.ndarray
    tokens: Tokens

    def notes(self) -> list[str]:
        return self.tokens.notes()


def _pool(hidden, mask, normalize: bool):
    import torch

    weights = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * weights).sum(-2) / weights.sum(-2).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1) if normalize else pooled


def embed(loaded, texts: list[str], *, max_length: int | None = None, batch_size: int | None = None,
          all_layers: bool = False, normalize: bool = True) -> Embedded:
    """Mean-pooled embeddings of every text (the encoder under any head: a classifier's base model too)."""
    import torch

    caps.require(EMBED, loaded)
    texts = list(texts)
    tokens = tokenize(loaded, texts, max_length=max_length)
    model, device, pid = loaded.model, loaded.device, pad_id(loaded.tokenizer)
    out: dict[int, np.ndarray] = {}

    @torch.inference_mode()
    def forward(batch):
        ids, mask = pad([tokens.ids[p] for p in batch], pid)
        ids, mask = ids.to(device), mask.to(device)
        if all_layers:
            layers = torch.stack([h.float() for h in hidden_states(model, ids, mask)], dim=1)  # (B, L+1, T, W)
            return _pool(layers, mask.unsqueeze(1), normalize).cpu().numpy()
        return _pool(last_hidden(model, ids, mask).float(), mask, normalize).cpu().numpy()

    def collect(batch, vectors):
        for row, p in enumerate(batch):
            out[p] = vectors[row]

    if texts:
        with loaded.lock:
            run_batched(list(range(len(texts))), tokens.lengths, forward, int(batch_size or DEFAULT_BATCH),
                        loaded.device, collect)
    vectors = np.stack([out[i] for i in range(len(texts))]) if texts else np.zeros((0, 0))
    return Embedded(vectors, tokens)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
