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
- streamed generations run alone (unbatched), token by token through a streamer.
- classify and embed requests form one group each: their texts go through one `inference.classify` /
  `inference.embed` call (length-bucketed forward, cut at the model's context) and are split back per request.

`max_batch=1` (the CLI's `--no-batching`) runs every request alone, through the same code.
"""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable

from .protocol import Sampling


@dataclass
class Generation:
    """One prompt to continue. `sink` set: stream its tokens (run alone)."""
    ids: list[int]
    max_tokens: int
    sampling: Sampling
    sink: "Sink | None" = None
    future: Future = field(default_factory=Future)

    def key(self) -> tuple:
        s = self.sampling
        if self.sink is not None or (not s.greedy and s.seed is not None) or s.repetition_penalty != 1:
            return ("alone", id(self))
        return ("greedy",) if s.greedy else ("sample", s.temperature, s.top_p)


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
    """transformers' streamer protocol: `put` gets the prompt first, then each step's new token."""

    def __init__(self, sink: Sink):
        self.sink, self.prompt_seen = sink, False

    def put(self, value) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.sink.send("tokens", value.reshape(-1).tolist())

    def end(self) -> None:
        pass


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
            else:
                self._generate(group)
        except Exception as exc:  # every waiting request hears of it; the worker goes on
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
        settings = generation.GenerationSettings(do_sample=not first.greedy, temperature=first.temperature or 1.0,
                                                 top_p=first.top_p, max_new_tokens=max(g.max_tokens for g in group),
                                                 seed=first.seed, repetition_penalty=first.repetition_penalty)
        limits, stops = [g.max_tokens for g in group], [g.sampling.stop for g in group]
        self.on_batch("generate", len(group))
        results = inference.generate_group(
            self.loaded, [g.ids for g in group], limits, stops, settings,
            stopping=lambda width: _RowLimits(self.loaded.tokenizer, width, limits, stops, sink),
            streamer=_TokenStreamer(sink) if sink is not None else None)
        for g, result in zip(group, results):
            if g.sink is not None:
                g.sink.send("done", result)
            else:
                g.future.set_result(result)

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
