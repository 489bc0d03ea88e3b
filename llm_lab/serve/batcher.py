"""Dynamic batching: requests that arrive close together share one model call.

One worker thread owns the model. It takes the first waiting request, then keeps taking requests until
`window_s` (default 10 ms) has passed since that first one or `max_batch` requests are in hand (requests that
queued while the previous batch ran are taken at once). The batch is split into groups that can share a call:

- greedy generations (temperature 0) form one group whatever their max_tokens and stop strings: one
  `model.generate` over the group with LEFT padding (position ids follow the attention mask, so every row
  sees the positions it sees alone), run until every row is done. Each row stops by itself (a stopping
  criterion per row: its own max_tokens, its own stop strings, end-of-sequence; a finished row only gets
  padding afterwards) and is then cut the way single-prompt generation cuts (`inference.generate_group`).
  A row's greedy tokens depend only on its own prompt, so its output equals the unbatched one.
- sampled generations without a seed share a call when their temperature and top_p are equal.
- a sampled generation with a seed runs alone, seeded (in a forked RNG): the same seed gives the same text
  whatever else the server is doing.
- a generation with a repetition_penalty (a vLLM-style extra field; 1 = none) runs alone: transformers'
  penalty counts every id in the row, padding included, so a padded row would be penalised differently.
- a generation whose logits are changed before choosing (presence/frequency penalty, logit_bias; see
  `Penalties`, `LogitBias`) runs alone too: the counts are its own.
- a constrained generation (response_format, a tool call: `inference.structured`) shares its group's call:
  the grammar's logits processor, last of the call's processors, masks each row by its own constraint (or
  none), so a row's greedy tokens are the ones it gets alone.
- streamed generations run alone (unbatched), token by token through a streamer.
- `n` and `best_of` are one item with that many rows: a greedy item runs once and is copied (greedy rows are
  equal), a sampled one samples its rows in one call, so a seeded request with n > 1 gives the same n texts
  again.
- log-probabilities (`logprobs`, ranking `best_of`) come from `inference.StepLogprobs`, the first logits
  processor of the call: the raw model's, one step's vocabulary at a time; a streamed token's go out with it.
- prompt scoring (`Scoring`: echo with logprobs, `max_tokens: 0`, and a greedy echo request of one new token,
  whose token is the forward's greedy next token) forms one group: every prompt of the group through one
  `inference.prompt_logprobs` call (length-ordered right-padded forwards), split back per request.
- classify and embed requests form one group each: their texts go through one `inference.classify` /
  `inference.embed` call (length-bucketed forward, cut at the model's context) and are split back per request.

`max_batch=1` (the CLI's `--no-batching`) runs every request alone, through the same code.
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from .protocol import Sampling


@dataclass
class Generation:
    """One prompt to continue, `copies` times (n or best_of). `sink` set: stream its tokens (run alone).
    The future's result: a list of `Made`, one per copy."""
    ids: list[int]
    max_tokens: int
    sampling: Sampling
    sink: Sink | None = None
    future: Future = field(default_factory=Future)
    copies: int = 1

    def key(self) -> tuple:
        s = self.sampling
        if self.sink is not None or (not s.greedy and s.seed is not None) or s.processed:
            return ("alone", id(self))
        return ("greedy",) if s.greedy else ("sample", s.temperature, s.top_p)

    @property
    def rows(self) -> int:
        return 1 if self.sampling.greedy else self.copies

    @property
    def wants_logprobs(self) -> bool:
        return self.sampling.logprobs is not None or self.copies > self.sampling.n


@dataclass
class Made:
    """One generated choice: the result and, when asked for, per kept token (logprob, [(id, logprob), ...])."""
    result: object
    logprobs: list | None = None


@dataclass
class Scoring:
    """Token lists to read in one forward: per token its log-probability and `top_k` alternatives, and the
    greedy next token (`inference.prompt_logprobs`). The future's result: a list of PromptLogprobs."""
    rows: list[list[int]]
    top_k: int = 0
    future: Future = field(default_factory=Future)

    def key(self) -> tuple:
        return ("score",)


@dataclass
class Encoding:
    """Texts to classify (`kind="classify"`: probabilities) or embed (`kind="embed"`: vectors)."""
    kind: str
    texts: list[str]
    future: Future = field(default_factory=Future)

    def key(self) -> tuple:
        return (self.kind,)


class Sink:
    """Where a streamed generation's events go: `send(kind, value)` from the worker thread, read in the event
    loop. Kinds: "tokens" (new token ids), "done" (the GenerationResult), "error" (an exception). A reader
    that went away sets `cancelled`; the generation then stops at its next token."""

    def __init__(self, send: Callable[[str, object], None]):
        self.send = send
        self.cancelled = False


class _TokenStreamer:
    """transformers' streamer protocol: `put` gets the prompt first, then each step's new token. Sends
    ("tokens", (ids, logprob entries or None)) to the sink."""

    def __init__(self, sink: Sink, recorder=None):
        self.sink, self.recorder, self.prompt_seen = sink, recorder, False

    def put(self, value) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        entries = self.recorder.settle(value) if self.recorder is not None else None
        self.sink.send("tokens", (value.reshape(-1).tolist(), entries))

    def end(self) -> None:
        pass


class Penalties:
    """OpenAI's presence and frequency penalties as a logits processor: a token's logit goes down by
    count * frequency_penalty + (count > 0) * presence_penalty, counting the tokens generated so far (not the
    prompt's: the first call's width is where generation starts)."""

    def __init__(self, presence: float, frequency: float):
        self.presence, self.frequency, self.start = presence, frequency, None

    def __call__(self, input_ids, scores):
        import torch

        if self.start is None:
            self.start = input_ids.shape[1]
        made = input_ids[:, self.start:]
        counts = torch.zeros_like(scores)
        if made.shape[1]:
            counts.scatter_add_(1, made, torch.ones_like(made, dtype=scores.dtype))
        return scores - counts * self.frequency - (counts > 0).to(scores.dtype) * self.presence


class LogitBias:
    """OpenAI's logit_bias: the bias added to each named token's logit before choosing."""

    def __init__(self, bias: dict[int, float]):
        self.ids, self.values = list(bias), list(bias.values())

    def __call__(self, input_ids, scores):
        import torch

        scores = scores.clone()
        scores[:, self.ids] += torch.tensor(self.values, dtype=scores.dtype, device=scores.device)
        return scores


class _RowLimits:
    """A stopping criterion per row: its own max_tokens and stop strings (a cancelled stream stops all)."""

    def __init__(self, tokenizer, start: int, limits: list[int], stops: list[list[str]], cancelled=None):
        self.tokenizer, self.start, self.limits, self.stops, self.cancelled = tokenizer, start, limits, stops, cancelled
        self.window = max([len(s) for row in stops for s in row] + [0]) + 16  # tokens enough to hold a stop string

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        made = input_ids.shape[1] - self.start
        done = [made >= limit for limit in self.limits]
        rows = [r for r, stops in enumerate(self.stops) if stops and not done[r]]
        if rows:
            begin = max(self.start, input_ids.shape[1] - self.window)
            tails = self.tokenizer.batch_decode(input_ids[rows, begin:].tolist(), skip_special_tokens=True)
            for r, tail in zip(rows, tails):
                done[r] = any(s in tail for s in self.stops[r])
        if self.cancelled is not None and self.cancelled.cancelled:
            done = [True] * len(done)
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def _wanted(item) -> bool:
    sink = getattr(item, "sink", None)
    return not sink.cancelled if sink is not None else item.future.set_running_or_notify_cancel()


class Batcher:
    """The worker thread that owns `loaded`; `submit(item)` returns the item's Future (streams: its Sink)."""

    def __init__(self, loaded, max_batch: int = 16, window_s: float = 0.010,
                 on_batch: Callable[[str, int], None] | None = None):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.loaded, self.max_batch, self.window_s = loaded, max_batch, max(0.0, window_s)
        self.on_batch = on_batch or (lambda kind, size: None)
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, daemon=True, name="llm-lab-serve-batcher")
            self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def submit(self, item):
        self._queue.put(item)
        return item.future

    # ------------------------------------------------------------ the loop
    def _take(self) -> list | None:
        first = self._queue.get()
        if first is None:
            return None
        batch = [first]
        deadline = time.monotonic() + self.window_s
        while len(batch) < self.max_batch:
            left = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:  # stop once this batch is done
                self._queue.put(None)
                break
            batch.append(item)
        return batch

    def _loop(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            groups: dict[tuple, list] = {}
            for item in batch:
                groups.setdefault(item.key(), []).append(item)
            for group in groups.values():
                self._run(group)

    def _run(self, group: list) -> None:
        # a request whose client went away while it waited is dropped; the others are marked running, so
        # a client leaving from now on cannot cancel the Future the result goes to
        group = [item for item in group if _wanted(item)]
        if not group:
            return
        try:
            if isinstance(group[0], Encoding):
                self._encode(group)
            elif isinstance(group[0], Scoring):
                self._score(group)
            else:
                self._generate(group)
        except Exception as exc:  # noqa: BLE001 - every waiting request hears of it; the worker goes on
            for item in group:
                if getattr(item, "sink", None) is not None:
                    item.sink.send("error", exc)
                elif not item.future.done():
                    item.future.set_exception(exc)

    # ------------------------------------------------------------ generation
    def _generate(self, group: list[Generation]) -> None:
        from .. import generation, inference

        first = group[0].sampling
        sink = group[0].sink
        rows = [g for g in group for _ in range(g.rows)]
        recorder = None
        if any(g.wants_logprobs for g in group):
            recorder = inference.StepLogprobs(max(g.sampling.logprobs or 0 for g in group))
        processors = [p for p in (recorder, *_processors(first), _grammar(rows)) if p is not None]
        settings = generation.GenerationSettings(do_sample=not first.greedy, temperature=first.temperature or 1.0,
                                                 top_p=first.top_p, max_new_tokens=max(g.max_tokens for g in group),
                                                 seed=first.seed, repetition_penalty=1.0)
        limits, stops = [g.max_tokens for g in rows], [g.sampling.stop for g in rows]
        self.on_batch("generate", len(group))
        results = inference.generate_group(
            self.loaded, [g.ids for g in rows], limits, stops, settings,
            stopping=lambda width: _RowLimits(self.loaded.tokenizer, width, limits, stops, sink),
            streamer=_TokenStreamer(sink, recorder) if sink is not None else None, processors=processors)
        made = [Made(r, recorder.rows(i, r.new_tokens) if recorder is not None else None)
                for i, r in enumerate(results)]
        start = 0
        for g in group:
            own = made[start:start + g.rows] * (g.copies if g.rows == 1 else 1)
            start += g.rows
            if g.sink is not None:
                g.sink.send("done", own[0])
            else:
                g.future.set_result(own)

    # ------------------------------------------------------------ scoring
    def _score(self, group: list[Scoring]) -> None:
        from .. import inference

        rows = [ids for item in group for ids in item.rows]
        self.on_batch("score", len(group))
        scored = inference.prompt_logprobs(self.loaded, rows, max(item.top_k for item in group), batch_size=64)
        start = 0
        for item in group:
            item.future.set_result(scored[start:start + len(item.rows)])
            start += len(item.rows)

    # ------------------------------------------------------------ classify / embed
    def _encode(self, group: list[Encoding]) -> None:
        from .. import inference

        texts = [t for item in group for t in item.texts]
        self.on_batch(group[0].kind, len(group))
        if group[0].kind == "classify":
            values = inference.classify(self.loaded, texts, batch_size=64).probs
        else:
            values = inference.embed(self.loaded, texts, batch_size=64).vectors
        start = 0
        for item in group:
            item.future.set_result(values[start:start + len(item.texts)])
            start += len(item.texts)


def _processors(s: Sampling) -> list:
    """The request's own logits processors, after the log-probability recorder (which must see raw logits):
    transformers' repetition penalty (the same class `generate` builds for it), OpenAI's penalties, logit_bias."""
    from transformers import RepetitionPenaltyLogitsProcessor

    out = []
    if s.repetition_penalty != 1:
        out.append(RepetitionPenaltyLogitsProcessor(s.repetition_penalty))
    if s.presence_penalty or s.frequency_penalty:
        out.append(Penalties(s.presence_penalty, s.frequency_penalty))
    if s.logit_bias:
        out.append(LogitBias(s.logit_bias))
    return out


def _grammar(rows: list[Generation]):
    """The grammar processor of a call whose rows carry constraints (one per row, None: free), or None.
    Last, so it masks what the penalties and logit_bias left (its own fallback keeps a row in the grammar)."""
    constraints = [g.sampling.constraint for g in rows]
    if not any(c is not None for c in constraints):
        return None
    from ..inference import structured

    return structured.logits_processor(constraints)
