"""generate: text from a causal LM, batched per model, greedy or sampling, with per-output statistics.

`generate(loaded, prompts, settings)` runs all prompts of one model in batches with left
padding (decoder-only models need the new tokens to follow each prompt directly), under
`torch.inference_mode` and the model's lock. Each result (`generation.GenerationResult`) carries the text, the
number of new tokens, latency, tokens/s, the mean log-probability of the output under the
model (raw logits, before temperature or penalties), whether the prompt was cut and
why generation stopped. `stream(loaded, prompt, settings)` yields text pieces for one
prompt as they are produced, then the final `GenerationResult`. `generate_group` is what the server's dynamic
batcher runs: prompts already tokenised, each with its own token limit and stop strings, in one call.

An endpoint model (`capabilities.endpoint`, see endpoints.py) has no weights here: both functions hand
its prompts to `loaded.model.generate_texts` / `loaded.model.stream_text`, which return the same results (a
conversation goes to the server's chat endpoint, which applies the model's own template).
"""
import threading
import time

import torch

from ..batching import length_buckets, pad
from ..errors import ModelError
from ..generation import (
    GenerationError,
    GenerationResult,
    GenerationSettings,
    check_can_generate,
    check_prompts,
)
from . import chat
from .forward import generate_ids

_LOGIT_BUDGET_BYTES = 512 * 2**20  # raw logits kept during one batch (batch x steps x vocab x 4 bytes)


# ---------------------------------------------------------------- encoding
def _encode(loaded, prompts: list, settings: GenerationSettings):
    """Token ids per prompt (a string, or a conversation; the chat template applied as inference/chat.py says),
    cut from the left to fit the context; returns (ids, truncated, notes, max_new)."""
    context = loaded.capabilities.max_context
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
        ids, _ = chat.prompt_ids(loaded, prompt, settings)
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
    return GenerationResult(prompt=chat.last_user_text(prompt), text=text, new_tokens=len(kept), latency_s=latency,
                            tokens_per_s=len(kept) / latency if latency > 0 else 0.0, mean_logprob=mean_lp,
                            truncated=truncated, stop_reason=reason, note=note.strip(),
                            prompt_tokens=prompt_len, token_ids=list(kept))


def _seed(seed: int | None) -> None:
    if seed is not None:
        torch.manual_seed(int(seed))
        if torch.cuda.is_available():
            torch.cuda.manual_seed_all(int(seed))


def _with_implied_stops(loaded, prompts: list, settings: GenerationSettings) -> GenerationSettings:
    """A conversation given to a model without a chat template is a transcript: it stops before the user's
    next turn (chat.TRANSCRIPT_STOP), as the server does."""
    transcript = any(chat.is_conversation(p) for p in prompts) and (
        not loaded.capabilities.endpoint and not chat.has_template(loaded))
    if transcript and chat.TRANSCRIPT_STOP not in settings.stop:
        return GenerationSettings.from_dict(dict(settings.as_dict(), stop=settings.stop + [chat.TRANSCRIPT_STOP]))
    return settings


def _endpoint_prompt(prompt, settings: GenerationSettings):
    """What an endpoint gets: a string as it is (to /v1/completions); a conversation as its messages, with the
    settings' system turn (to /v1/chat/completions, where the server applies the model's own chat template)."""
    return chat.messages(prompt, settings) if chat.is_conversation(prompt) else prompt


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
    settings = _with_implied_stops(loaded, prompts, settings)
    if loaded.capabilities.endpoint:  # text over HTTP: no tokenizer or weights here
        return loaded.model.generate_texts([_endpoint_prompt(p, settings) for p in prompts], settings, progress)
    tok = loaded.tokenizer
    if tok.pad_token_id is None:
        raise ModelError(f"{loaded.entry.name}'s tokenizer has neither a padding nor an end-of-sequence token; "
                         "batched generation needs one.")
    encoded, truncated, notes, max_new = _encode(loaded, prompts, settings)
    context = loaded.capabilities.max_context
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
                out = generate_ids(loaded.model, input_ids=input_ids, attention_mask=mask, **kwargs)
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
    settings = _with_implied_stops(loaded, [prompt], settings)
    if loaded.capabilities.endpoint:  # text over HTTP: no tokenizer or weights here
        yield from loaded.model.stream_text(_endpoint_prompt(prompt, settings), settings)
        return
    tok = loaded.tokenizer
    encoded, truncated, notes, max_new = _encode(loaded, [prompt], settings)
    context = loaded.capabilities.max_context
    streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True, timeout=timeout)
    box: dict = {}

    def work():
        try:
            with torch.inference_mode(), loaded.lock:
                _seed(settings.seed)
                input_ids, mask = pad(encoded, tok.pad_token_id, "left", loaded.device)
                kwargs = _gen_kwargs(loaded, settings, max_new, input_ids.shape[1])
                t0 = time.perf_counter()
                out = generate_ids(loaded.model, input_ids=input_ids, attention_mask=mask, streamer=streamer, **kwargs)
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


def generate_group(loaded, rows: list[list[int]], limits: list[int], stops: list[list[str]],
                   settings: GenerationSettings, *, stopping=None, streamer=None,
                   processors: list | None = None) -> list[GenerationResult]:
    """One `generate` over prompts already tokenised, each with its own token limit and stop strings (the serve
    batcher's group). Left padding: a row's greedy tokens depend on its own prompt only, so each output equals
    the unbatched one. `stopping(width)` builds the per-row stopping criterion; `streamer` gets tokens as made.
    A sampled group with a seed runs in a forked RNG, so the same seed gives the same text whatever else runs.
    `processors`: logits processors run before temperature and top-p (transformers puts a caller's processors
    after its own penalties and before its sampling warpers); when the first is a `logprobs.StepLogprobs`, it
    records every step and each result's mean_logprob is the mean over its kept tokens."""
    from transformers import LogitsProcessorList, StoppingCriteriaList

    from .logprobs import StepLogprobs

    tok = loaded.tokenizer
    max_new = max(limits)
    input_ids, mask = pad(rows, tok.pad_token_id, "left", loaded.device)
    width = input_ids.shape[1]
    kwargs = _gen_kwargs(loaded, settings, max_new, width)
    kwargs.update(output_logits=False, return_dict_in_generate=False)
    if stopping is not None:
        kwargs["stopping_criteria"] = StoppingCriteriaList([stopping(width)])
    if streamer is not None:
        kwargs["streamer"] = streamer
    if processors:
        kwargs["logits_processor"] = LogitsProcessorList(processors)
    recorder = processors[0] if processors and isinstance(processors[0], StepLogprobs) else None
    seeded = settings.do_sample and settings.seed is not None
    devices = [torch.cuda.current_device()] if loaded.device.startswith("cuda") else []
    t0 = time.perf_counter()
    with torch.inference_mode(), loaded.lock, torch.random.fork_rng(devices=devices, enabled=seeded):
        if seeded:
            _seed(settings.seed)
        out = generate_ids(loaded.model, input_ids=input_ids, attention_mask=mask, **kwargs)
    latency = time.perf_counter() - t0
    if recorder is not None:
        recorder.finish(out[:, width:])
    new = out[:, width:].cpu().tolist()
    context = loaded.capabilities.max_context
    results = []
    for row, (ids, own_limit, own_stops) in enumerate(zip(rows, limits, stops)):
        own = GenerationSettings(max_new_tokens=own_limit, stop=own_stops)
        logprobs = [lp for lp, _ in recorder.rows(row, own_limit)] if recorder is not None else []
        results.append(_finish(loaded, own, "", new[row][:own_limit], logprobs, latency, False, "", len(ids),
                               own_limit, context))
    return results
