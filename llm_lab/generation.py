"""Text generation for causal LMs: batched per model, greedy or sampling, with per-output statistics.

`generate(loaded, prompts, settings)` runs all prompts of one model in batches with left
padding (decoder-only models need the new tokens to follow each prompt directly), under
`torch.inference_mode` and the model's lock. Each result carries the text, the number
of new tokens, latency, tokens/s, the mean log-probability of the output under the
model (raw logits, before temperature or penalties), whether the prompt was cut and
why generation stopped. `stream(loaded, prompt, settings)` yields text pieces for one
prompt as they are produced, then the final `GenerationResult`.

An endpoint model (`capabilities.endpoint`, see endpoints.py) has no weights here: both functions hand
its prompts to `loaded.model.generate_texts` / `loaded.model.stream_text`, which return the same results.
"""
import threading
import time
from dataclasses import asdict, dataclass, field

import torch

from . import capabilities as caps
from .batching import context_length, length_buckets, pad
from .errors import LabError, ModelError
from .generation_defaults import SUGGESTED

_LOGIT_BUDGET_BYTES = 512 * 2**20  # raw logits kept during one batch (batch x steps x vocab x 4 bytes)


class GenerationError(LabError):
    pass


@dataclass
class GenerationSettings:
    do_sample: bool = False            # False: greedy
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0                     # 0: off
    max_new_tokens: int = 64
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0      # 0: off; n: no n-gram appears twice in prompt + output
    seed: int | None = 0
    stop: list[str] = field(default_factory=list)
    batch_size: int = 16

    def __post_init__(self):
        self.stop = [s for s in (self.stop or []) if s]
        if self.max_new_tokens < 1:
            raise GenerationError("max_new_tokens must be at least 1.")
        if self.do_sample and self.temperature <= 0:
            raise GenerationError("Temperature must be above 0 when sampling (use greedy for temperature 0).")
        if not 0 < self.top_p <= 1:
            raise GenerationError("top_p must be in (0, 1].")
        if self.repetition_penalty <= 0:
            raise GenerationError("repetition_penalty must be above 0 (1 means no penalty).")
        if self.no_repeat_ngram_size < 0:
            raise GenerationError("no_repeat_ngram_size must be 0 (off) or more.")

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict | None) -> "GenerationSettings":
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in (values or {}).items() if k in names})


def suggested(**overrides) -> "GenerationSettings":
    return GenerationSettings(**dict(SUGGESTED, **overrides))


@dataclass
class GenerationResult:
    prompt: str
    text: str
    new_tokens: int
    latency_s: float
    tokens_per_s: float
    mean_logprob: float | None
    truncated: bool = False
    stop_reason: str = "max_new_tokens"
    note: str = ""
    prompt_tokens: int = 0
    token_ids: list[int] = field(default_factory=list, repr=False)
    first_token_s: float | None = None     # time to the first streamed text (endpoint models)

    def as_dict(self) -> dict:
        out = asdict(self)
        out.pop("token_ids")
        return out


# ---------------------------------------------------------------- checks
def check_can_generate(loaded) -> None:
    caps.require(caps.GENERATE, loaded)


def check_prompts(prompts) -> list[str]:
    if isinstance(prompts, str):
        prompts = [prompts]
    prompts = list(prompts)
    if not prompts:
        raise GenerationError("No prompts given: type at least one prompt.")
    empty = [i + 1 for i, p in enumerate(prompts) if not isinstance(p, str) or not p.strip()]
    if empty:
        raise GenerationError(f"Prompt{'s' if len(empty) > 1 else ''} {', '.join(map(str, empty))} "
                              f"{'are' if len(empty) > 1 else 'is'} empty: type some text, or remove "
                              f"{'them' if len(empty) > 1 else 'it'}.")
    return prompts


# ---------------------------------------------------------------- encoding
def _encode(loaded, prompts: list[str], settings: GenerationSettings):
    """Token ids per prompt, cut from the left to fit the context; returns (ids, notes, max_new)."""
    tok = loaded.tokenizer
    context = context_length(loaded.model, loaded.tokenizer)
    max_new = settings.max_new_tokens
    notes = [""] * len(prompts)
    if max_new >= context:
        max_new = max(1, context // 2)
        for i in range(len(prompts)):
            notes[i] = f"max_new_tokens lowered to {max_new} (the context holds {context} tokens). "
    room = context - max_new
    encoded = []
    truncated = []
    for i, prompt in enumerate(prompts):
        ids = tok(prompt, add_special_tokens=True)["input_ids"]
        if not ids:
            raise GenerationError(f"Prompt {i + 1} gives no tokens with {loaded.entry.name}'s tokenizer.")
        cut = len(ids) > room
        if cut:
            notes[i] += (f"Prompt cut from the left: {len(ids)} tokens, kept the last {room} "
                         f"({context}-token context minus {max_new} new tokens).")
            ids = ids[-room:]
        encoded.append(ids)
        truncated.append(cut)
    return encoded, truncated, notes, max_new


class _StopStrings:
    """A stopping criterion: a row is done once its new text contains one of the stop strings."""

    def __init__(self, tokenizer, stops: list[str], start: int):
        self.tokenizer, self.stops, self.start = tokenizer, stops, start
        self.window = max(len(s) for s in stops) + 16  # tokens enough to hold any stop string

    def __call__(self, input_ids, scores, **kwargs):
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        begin = max(self.start, input_ids.shape[1] - self.window)
        tails = self.tokenizer.batch_decode(input_ids[:, begin:].tolist(), skip_special_tokens=True)
        for row, tail in enumerate(tails):
            done[row] = any(s in tail for s in self.stops)
        return done


def _gen_kwargs(loaded, settings: GenerationSettings, max_new: int, start: int) -> dict:
    from transformers import StoppingCriteriaList

    tok = loaded.tokenizer
    kwargs = dict(max_new_tokens=max_new, do_sample=settings.do_sample, pad_token_id=tok.pad_token_id,
                  eos_token_id=loaded.model.generation_config.eos_token_id or tok.eos_token_id,
                  repetition_penalty=settings.repetition_penalty, return_dict_in_generate=True,
                  no_repeat_ngram_size=settings.no_repeat_ngram_size or None,
                  output_logits=True, output_scores=False)
    if settings.do_sample:
        kwargs.update(temperature=settings.temperature, top_p=settings.top_p, top_k=settings.top_k or None)
    else:  # silence "temperature is set but do_sample=False" from models whose config sets them
        kwargs.update(temperature=None, top_p=None, top_k=None)
    if settings.stop:
        kwargs["stopping_criteria"] = StoppingCriteriaList([_StopStrings(tok, settings.stop, start)])
    return kwargs


def _eos_ids(loaded) -> set[int]:
    eos = loaded.model.generation_config.eos_token_id
    if eos is None:
        eos = loaded.tokenizer.eos_token_id
    ids = set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}
    return ids


def _finish(loaded, settings, prompt, new_ids, logprobs, latency, truncated, note, prompt_len, max_new, context):
    """Cut a row's new tokens at the first end-of-sequence / stop string; text, stats, reason."""
    tok = loaded.tokenizer
    eos = _eos_ids(loaded)
    n = len(new_ids)
    reason = "max_new_tokens"
    for i, t in enumerate(new_ids):
        if t in eos:
            n, reason = i + 1, "eos"
            break
    kept = new_ids[:n]
    if reason == "eos":
        text_ids = kept[:-1]
    else:
        text_ids = kept
    text = tok.decode(text_ids, skip_special_tokens=True)
    if settings.stop:
        hits = [(text.find(s), s) for s in settings.stop if s in text]
        if hits:
            cut_at = min(hits)[0]
            text, reason = text[:cut_at], "stop_string"
            # keep the tokens up to the one that completed the stop string
            for j in range(1, len(kept) + 1):
                if any(s in tok.decode(kept[:j], skip_special_tokens=True) for s in settings.stop):
                    n = j
                    break
            kept = kept[:n]
    if reason == "max_new_tokens" and prompt_len + len(kept) >= context:
        reason = "context"
    if reason == "eos" and not text.strip():
        note += (" The model ended the text at once (its first new token was end-of-sequence), so the continuation "
                 "is empty. Try a longer prompt, sampling, or another model.")
    lp = logprobs[:len(kept)]
    mean_lp = float(sum(lp) / len(lp)) if lp else None
    return GenerationResult(prompt=prompt, text=text, new_tokens=len(kept), latency_s=latency,
                            tokens_per_s=len(kept) / latency if latency > 0 else 0.0, mean_logprob=mean_lp,
                            truncated=truncated, stop_reason=reason, note=note.strip(),
                            prompt_tokens=prompt_len, token_ids=list(kept))


def _seed(seed: int | None) -> None:
    if seed is not None:
        torch.manual_seed(int(seed))
        if torch.cuda.is_available():
            torch.cuda.manual_seed_all(int(seed))


# ---------------------------------------------------------------- public API
@torch.inference_mode()
def generate(loaded, prompts, settings: GenerationSettings | None = None, progress=None) -> list[GenerationResult]:
    """Generate for all prompts with one model, batched with left padding. Results keep prompt order.

    `progress(done, total)` is called after each batch. Latency is the batch's wall time
    (every prompt of a batch waits for the whole batch), tokens/s is per output.
    """
    settings = settings or GenerationSettings()
    check_can_generate(loaded)
    prompts = check_prompts(prompts)
    if loaded.capabilities.endpoint:  # text over HTTP: no tokenizer or weights here
        return loaded.model.generate_texts(prompts, settings, progress)
    tok = loaded.tokenizer
    if tok.pad_token_id is None:
        raise ModelError(f"{loaded.entry.name}'s tokenizer has neither a padding nor an end-of-sequence token; "
                         "batched generation needs one.")
    encoded, truncated, notes, max_new = _encode(loaded, prompts, settings)
    context = context_length(loaded.model, loaded.tokenizer)
    vocab = getattr(loaded.model.config.get_text_config() if hasattr(loaded.model.config, "get_text_config")
                    else loaded.model.config, "vocab_size", 50_000) or 50_000
    batch_size = max(1, min(settings.batch_size, _LOGIT_BUDGET_BYTES // max(1, max_new * vocab * 4)))
    # similar lengths together: less padding; results are put back in prompt order
    batches = length_buckets([len(ids) for ids in encoded], batch_size)
    results: list[GenerationResult | None] = [None] * len(prompts)
    with loaded.lock:
        old_side = getattr(tok, "padding_side", "right")
        tok.padding_side = "left"
        try:
            _seed(settings.seed)
            done = 0
            for idx in batches:
                input_ids, mask = pad([encoded[i] for i in idx], tok.pad_token_id, "left", loaded.device)
                width = input_ids.shape[1]
                kwargs = _gen_kwargs(loaded, settings, max_new, width)
                t0 = time.perf_counter()
                out = loaded.model.generate(input_ids=input_ids, attention_mask=mask, **kwargs)
                if loaded.device.startswith("cuda"):
                    torch.cuda.synchronize()
                latency = time.perf_counter() - t0
                new = out.sequences[:, width:]
                logits = torch.stack(out.logits, dim=1).float() if out.logits else None  # (B, steps, V)
                lps = (torch.log_softmax(logits, dim=-1).gather(-1, new[:, :logits.shape[1]].unsqueeze(-1))
                       .squeeze(-1).cpu().tolist()) if logits is not None else [[] for _ in idx]
                new = new.cpu().tolist()
                for row, i in enumerate(idx):
                    results[i] = _finish(loaded, settings, prompts[i], new[row], lps[row], latency, truncated[i],
                                         notes[i], len(encoded[i]), max_new, context)
                done += len(idx)
                if progress:
                    progress(done, len(prompts))
        finally:
            tok.padding_side = old_side
    return results


def stream(loaded, prompt: str, settings: GenerationSettings | None = None, timeout: float = 600):
    """Yield text pieces for one prompt as they are generated, then the final GenerationResult.

    Generation runs in a thread feeding a `TextIteratorStreamer`; the caller's thread
    reads it (Streamlit: `st.write_stream` on the str pieces).
    """
    from transformers import TextIteratorStreamer

    settings = settings or GenerationSettings()
    check_can_generate(loaded)
    prompt = check_prompts([prompt])[0]
    if loaded.capabilities.endpoint:  # text over HTTP: no tokenizer or weights here
        yield from loaded.model.stream_text(prompt, settings)
        return
    tok = loaded.tokenizer
    encoded, truncated, notes, max_new = _encode(loaded, [prompt], settings)
    context = context_length(loaded.model, loaded.tokenizer)
    streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True, timeout=timeout)
    box: dict = {}

    def work():
        try:
            with torch.inference_mode(), loaded.lock:
                _seed(settings.seed)
                input_ids, mask = pad(encoded, tok.pad_token_id, "left", loaded.device)
                kwargs = _gen_kwargs(loaded, settings, max_new, input_ids.shape[1])
                t0 = time.perf_counter()
                out = loaded.model.generate(input_ids=input_ids, attention_mask=mask, streamer=streamer, **kwargs)
                box["latency"] = time.perf_counter() - t0
                new = out.sequences[:, input_ids.shape[1]:]
                logits = torch.stack(out.logits, dim=1).float()
                box["lp"] = torch.log_softmax(logits, -1).gather(-1, new.unsqueeze(-1)).squeeze(-1)[0].cpu().tolist()
                box["new"] = new[0].cpu().tolist()
        except BaseException as exc:  # reported to the reader below
            box["error"] = exc
            streamer.end()

    thread = threading.Thread(target=work, daemon=True, name="llm-lab-stream")
    thread.start()
    shown = ""
    for piece in streamer:
        if settings.stop:  # do not show text past a stop string
            candidate = shown + piece
            hits = [candidate.find(s) for s in settings.stop if s in candidate]
            if hits:
                piece = candidate[:min(hits)][len(shown):]
                if piece:
                    shown += piece
                    yield piece
                continue
        shown += piece
        if piece:
            yield piece
    thread.join()
    if "error" in box:
        raise box["error"]
    yield _finish(loaded, settings, prompt, box["new"], box["lp"], box["latency"], truncated[0], notes[0],
                  len(encoded[0]), max_new, context)
