"""logprobs: token log-probabilities with the top-k alternatives, for prompts (one forward) and for generation.

Two pieces, both in the shape OpenAI-compatible servers answer `logprobs` / `echo`:
- `prompt_logprobs(loaded, id_lists, top_k)`: per token list, the log-probability of every token after the first
  (the first has no context: None, as vLLM and OpenAI say), the top-k alternatives at every position, and the
  model's greedy next token after the last one, with its log-probability. One right-padded forward per
  length-ordered batch (`batching.run_batched`: longest first, halving on out-of-memory, at most
  LOGIT_BUDGET_BYTES of logits a batch), the same helpers `loglikelihood.score_tokens` runs on; the chosen
  token's value and the top-k values come from the same log-softmax tensor, so a token that is the model's top
  choice has exactly its top-1 value (lm-evaluation-harness decides `is_greedy` by that equality).
- `StepLogprobs`: a logits processor that records, during `model.generate`, each step's log-softmax of the raw
  logits (before temperature, top-p and the request's penalties: it must be the first processor) and keeps only
  the chosen token's value and the top-k; the chosen token is read at the next step, or by a streamer as soon as
  the token is made (`settle`). Memory is one step's (rows x vocabulary) at a time, not the whole generation.

All log-probabilities are of the model's own distribution (log-softmax of the raw logits in float32).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..batching import pad, run_batched
from .forward import lm_logits
from .inputs import pad_id
from .loglikelihood import LOGIT_BUDGET_BYTES, SCORE

Top = list[tuple[int, float]]  # (token id, log-probability), most likely first


@dataclass
class PromptLogprobs:
    """One token list read by the model."""
    token_logprobs: list[float | None]   # per token; the first is None (nothing before it to predict it from)
    top: list[Top]                       # per token; the first is [] (as OpenAI: no alternatives without context)
    next_id: int                         # the greedy token after the last one
    next_logprob: float
    next_top: Top = field(default_factory=list)


def prompt_logprobs(loaded, id_lists: list[list[int]], top_k: int = 0, *, batch_size: int = 32) -> list[PromptLogprobs]:
    """Per token list: every token's log-probability given the tokens before it, the top `top_k` alternatives
    at every position, and the greedy next token (see the module's docstring)."""
    import torch

    from .. import capabilities as caps

    caps.require(SCORE, loaded)
    model, device, pid = loaded.model, loaded.device, pad_id(loaded.tokenizer)
    out: list[PromptLogprobs | None] = [None] * len(id_lists)
    k = max(1, int(top_k))  # the greedy next token is the top-1

    @torch.inference_mode()
    def forward(batch):
        ids, mask = pad([id_lists[p] for p in batch], pid)
        logits = lm_logits(model, input_ids=ids.to(device), attention_mask=mask.to(device)).float()
        logp = torch.log_softmax(logits, dim=-1)
        targets = torch.roll(ids.to(device), -1, dims=1)  # position j predicts token j + 1
        chosen = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1).cpu().numpy()
        values, index = logp.topk(min(k, logp.shape[-1]), dim=-1)
        values, index = values.cpu().numpy(), index.cpu().numpy()
        rows = []
        for row, p in enumerate(batch):
            n = len(id_lists[p])
            tops = [_top(index[row, j], values[row, j], top_k) for j in range(n)]
            rows.append(PromptLogprobs([None] + chosen[row, :n - 1].tolist(), [[]] + tops[:n - 1],
                                       int(index[row, n - 1, 0]), float(values[row, n - 1, 0]), tops[n - 1]))
        return rows

    def collect(batch, rows):
        for p, row in zip(batch, rows):
            out[p] = row

    if id_lists:
        config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        vocab = int(getattr(config, "vocab_size", 0) or 50_000)
        budget = max(1, LOGIT_BUDGET_BYTES // (vocab * 4))
        lengths = np.array([len(r) for r in id_lists])
        with loaded.lock:
            run_batched(list(range(len(id_lists))), lengths, forward, batch_size, loaded.device, collect,
                        token_budget=budget)
    return out


def _top(index, values, k: int) -> Top:
    return [(int(i), float(v)) for i, v in zip(index[:k].tolist(), values[:k].tolist())]


class StepLogprobs:
    """A logits processor recording each generation step's chosen-token log-probability and top-k (see the
    module's docstring). `rows(r, n)`: row r's first n (logprob, top) pairs once generation is done."""

    def __init__(self, top_k: int = 0):
        self.top_k = int(top_k)
        self.chosen: list[np.ndarray] = []   # per step: (rows,)
        self.tops: list[tuple[np.ndarray, np.ndarray]] = []  # per step: (ids (rows, k), values (rows, k))
        self._last = None                    # the last step's log-softmax, until its token is known

    def __call__(self, input_ids, scores):
        import torch

        if self._last is not None:
            self.settle(input_ids[:, -1])
        logp = torch.log_softmax(scores.float(), dim=-1)
        self._last = logp
        if self.top_k:
            values, index = logp.topk(min(self.top_k, logp.shape[-1]), dim=-1)
            self.tops.append((index.cpu().numpy(), values.cpu().numpy()))
        return scores

    def settle(self, tokens) -> list[tuple[float, Top]] | None:
        """The step's tokens are known (one per row): keep their log-probabilities; returns the step's
        (logprob, top) per row, or None when that step was settled already."""
        if self._last is None:
            return None
        tokens = tokens.reshape(-1, 1).to(self._last.device)
        self.chosen.append(self._last.gather(-1, tokens).squeeze(-1).cpu().numpy())
        self._last = None
        step = len(self.chosen) - 1
        return [self._entry(r, step) for r in range(len(self.chosen[step]))]

    def finish(self, new_ids) -> None:
        """After generate: settle the last step from the generated tokens (rows x steps)."""
        if self._last is not None and new_ids.shape[1] > len(self.chosen):
            self.settle(new_ids[:, len(self.chosen)])

    def _entry(self, row: int, step: int) -> tuple[float, Top]:
        top = _top(self.tops[step][0][row], self.tops[step][1][row], self.top_k) if self.top_k else []
        return float(self.chosen[step][row]), top

    def rows(self, row: int, n: int) -> list[tuple[float, Top]]:
        return [self._entry(row, step) for step in range(min(n, len(self.chosen)))]
