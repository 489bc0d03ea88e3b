"""classify: class probabilities for texts (and text pairs), batched by length, cut at the model's context."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import capabilities as caps
from ..batching import pad, run_batched
from .forward import classifier_logits
from .inputs import Tokens, pad_id, tokenize

DEFAULT_BATCH = 32


@dataclass
class Classified:
    """Probabilities (rows: texts, columns: the model's labels) and what was done to each input."""
    probs: np.ndarray
    labels: list[str]
    tokens: Tokens
    batch_size: int = DEFAULT_BATCH     # the batch size that worked (halved on out-of-memory)

    def predicted(self, i: int) -> tuple[str, float]:
        k = int(np.argmax(self.probs[i]))
        return (self.labels[k] if k < len(self.labels) else str(k)), float(self.probs[i, k])

    def notes(self) -> list[str]:
        return self.tokens.notes()


def _forward(loaded, tokens: Tokens):
    """forward(positions) -> float32 probabilities of those rows."""
    import torch

    model, device, pid = loaded.model, loaded.device, pad_id(loaded.tokenizer)

    @torch.inference_mode()
    def forward(batch):
        ids, mask = pad([tokens.ids[p] for p in batch], pid)
        kwargs = {"input_ids": ids.to(device)}
        if not bool(mask.all()):  # no padding in this bucket: no mask, so SDPA may take its fused path
            kwargs["attention_mask"] = mask.to(device)
        if tokens.type_ids is not None:
            kwargs["token_type_ids"] = pad([tokens.type_ids[p] for p in batch], 0)[0].to(device)
        logits = classifier_logits(model, **kwargs).float()  # the [CLS]-only last layer where it applies
        return torch.softmax(logits, dim=-1).cpu().numpy()

    return forward


def classify(loaded, texts: list[str], pairs: list[str] | None = None, *, max_length: int | None = None,
             batch_size: int | None = None, positions: list[int] | None = None, on_batch=None,
             tokens: Tokens | None = None) -> Classified:
    """Class probabilities for every text, shape (len(texts), labels).

    Inputs are cut at the model's context (`inputs.limit`; `max_length` asks for fewer tokens). Texts of similar
    length share a batch: up to 8x `batch_size` short texts, within the tokens a full batch of the longest text
    takes, so memory stays that of the plain batch size; on out-of-memory the batch halves. `positions` (optional)
    runs only those rows (the others stay NaN: a resumed benchmark); `on_batch(rows, probs)` hears of each batch;
    `tokens` (from `inputs.tokenize`) skips tokenising again.
    """
    caps.require(caps.CLASSIFY, loaded)
    texts = list(texts)
    tokens = tokens or tokenize(loaded, texts, pairs, max_length)
    labels = list(loaded.labels)
    probs = np.full((len(texts), len(labels)), np.nan)
    todo = list(range(len(texts))) if positions is None else list(positions)
    size = int(batch_size or DEFAULT_BATCH)
    if not todo:
        return Classified(probs, labels, tokens, size)
    lengths = np.array(tokens.lengths)

    def collect(batch, out):
        probs[batch] = out
        if on_batch:
            on_batch(batch, out)

    with loaded.lock:
        budget = size * max(1, int(lengths[todo].max()))
        size = run_batched(todo, lengths, _forward(loaded, tokens), size * 8, loaded.device, collect,
                           token_budget=budget)
    return Classified(probs, labels, tokens, size)
