"""The HTTP application: OpenAI-compatible routes over one loaded registry model.

| path | model | what |
|---|---|---|
| `POST /v1/completions` | causal LM | OpenAI completions (`prompt`: a string, a list of strings, token ids or lists of them; n choices each; echo, logprobs, best_of: protocol.py) |
| `POST /v1/chat/completions` | causal LM | OpenAI chat; the tokenizer's chat template, else a "role: content" transcript; logprobs + top_logprobs, n |
| `POST /v1/embeddings` | encoder, classifier | mean-pooled, L2-normalised embeddings (`inference.embed`); float or base64 |
| `POST /v1/classify` | classifier | labels and probabilities per input (`inference.classify`) |
| `GET /v1/models`, `/v1/models/{id}` | any | the served model |
| `GET /health` | any | `{"status": "ok"}`, without a key (for load balancers) |
| `GET /metrics` | any | Prometheus text format |

Every path but /health needs `Authorization: Bearer KEY` when the server has a key (compared in constant
time). Limits per request (`--max-prompts`, `--max-request-tokens`: prompts, and prompt tokens plus best_of x
max_tokens) are refused with a 400 naming the field and the flag. Tokenising for the context check happens in the event loop with its own copy of the tokenizer; the
model and its tokenizer belong to the batcher's worker thread (a Rust tokenizer must not be used from two
threads while another tokenises with it).
"""
from __future__ import annotations

import asyncio
import base64
import copy
import functools
import hmac
import json
import re
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import capabilities as caps
from ..generation import GenerationResult
from ..inference import chat, structured
from . import protocol
from .batcher import Batcher, Encoding, Generation, Made, Scoring, Sink
from .protocol import ApiError, Envelope, TokenInfo

COMPLETIONS, CHAT, EMBEDDINGS, CLASSIFY = "/v1/completions", "/v1/chat/completions", "/v1/embeddings", "/v1/classify"
MODELS, HEALTH, METRICS = "/v1/models", "/health", "/metrics"
OPEN_PATHS = {HEALTH}
TRANSCRIPT_STOP = chat.TRANSCRIPT_STOP  # a model without a chat template stops before writing the user's next turn
transcript = chat.transcript            # its "role: content" lines, then "assistant:" (inference/chat.py)


class Metrics:
    """Prometheus metrics of one server (a registry of its own)."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("llm_lab_serve_requests", "HTTP requests by endpoint and status code",
                                ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram("llm_lab_serve_request_seconds", "Request latency (a stream: until its last byte)",
                                 ["endpoint"], registry=self.registry,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120))
        self.batch = Histogram("llm_lab_serve_batch_size", "Requests that shared one model call",
                               ["kind"], registry=self.registry, buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64))
        self.generated = Counter("llm_lab_serve_generated_tokens", "Completion tokens generated",
                                 registry=self.registry)
        self.prompt = Counter("llm_lab_serve_prompt_tokens", "Prompt and input tokens read", registry=self.registry)


def _label(path: str) -> str:
    known = (COMPLETIONS, CHAT, EMBEDDINGS, CLASSIFY, MODELS, HEALTH, METRICS)
    return path if path in known else (MODELS if path.startswith(MODELS + "/") else "other")


def _error_response(error: ApiError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


class _Gate:
    """ASGI middleware: the API key check, and per-request metrics (status and latency)."""

    def __init__(self, app, api_key: str | None, metrics: Metrics):
        self.app, self.key, self.metrics = app, api_key.encode() if api_key else None, metrics

    def _refusal(self, scope) -> ApiError | None:
        if self.key is None or scope["path"] in OPEN_PATHS:
            return None
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, given = header.partition(b" ")
        if not header or scheme.lower() != b"bearer" or not given.strip():
            return ApiError(401, "You didn't provide an API key. Send it in the Authorization header: "
                                 "'Authorization: Bearer YOUR_KEY'.", code="missing_api_key")
        if not hmac.compare_digest(given.strip(), self.key):
            return ApiError(401, "Incorrect API key provided.", code="invalid_api_key")
        return None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        endpoint, status, t0 = _label(scope["path"]), [500], time.perf_counter()

        async def sending(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            refusal = self._refusal(scope)
            if refusal:
                await _error_response(refusal)(scope, receive, sending)
            else:
                await self.app(scope, receive, sending)
        finally:
            self.metrics.requests.labels(endpoint, str(status[0])).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - t0)


@dataclass
class Prompt:
    """One prompt of a request: its text (None: given as token ids), ids, the tokens it may make, and its
    log-probabilities once scored (echo)."""
    text: str | None
    ids: list[int]
    max_tokens: int = 0
    scored: object = None


DEFAULT_MAX_PROMPTS = 256               # lm-eval sends batch_size prompts per request (default 1)
DEFAULT_MAX_REQUEST_TOKENS = 1 << 18    # 262,144: 128 prompts of lm-eval's 2,048-token max_length


class Server:
    """One loaded model served: what the endpoints share."""

    def __init__(self, loaded, names: list[str], max_batch: int, window_ms: float, max_body: int,
                 max_prompts: int = DEFAULT_MAX_PROMPTS, max_request_tokens: int = DEFAULT_MAX_REQUEST_TOKENS):
        self.loaded, self.max_body = loaded, max_body
        self.max_prompts, self.max_request_tokens = max_prompts, max_request_tokens
        self.vocab = _vocab_size(loaded)
        self.eos_ids = _eos_ids(loaded)
        self._token_texts: dict[int, str] = {}
        self._token_raws: dict[int, bytes] = {}
        self.name = loaded.entry.name
        self.names = {self.name, *names}
        self.tokenizer = copy.deepcopy(loaded.tokenizer)  # the event loop's own (see the module's docstring)
        self._special_ids = set(self.tokenizer.all_special_ids)
        self.limit = loaded.capabilities.max_context
        self.metrics = Metrics()
        self.batcher = Batcher(loaded, max_batch=max_batch, window_s=window_ms / 1000,
                               on_batch=lambda kind, size: self.metrics.batch.labels(kind).observe(size))
        self.created = int(time.time())

    # ------------------------------------------------------------ what this model serves
    def routes(self) -> list[str]:
        """The HTTP paths this model answers ("endpoint" in LLM Lab is a remote model: endpoints.py)."""
        capability = self.loaded.capabilities
        out = []
        if capability.has(caps.CAUSAL_LM):
            out += [COMPLETIONS, CHAT]
        if capability.has(caps.CLASSIFIER):
            out += [CLASSIFY, EMBEDDINGS]
        elif capability.has(caps.ENCODER):
            out.append(EMBEDDINGS)
        return out + [MODELS, HEALTH, METRICS]

    def require(self, path: str) -> None:
        if path not in self.routes():
            raise ApiError(400, f"{self.name} is served as a {self.loaded.head} model: {path} does not apply to it. "
                                f"This server answers {', '.join(self.routes())}.", code="unsupported_endpoint")

    def check_model(self, body: dict) -> None:
        model = body.get("model")
        if model is not None and model not in self.names:
            raise ApiError(404, f"The model {model!r} does not exist on this server: it serves {self.name!r}.",
                           code="model_not_found", param="model")

    async def body(self, request: Request) -> dict:
        """The JSON object of a request: 413 over the size limit, 400 when it is not JSON or not an object."""
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body:
            raise self._too_large()
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                raise self._too_large()
            chunks.append(chunk)
        try:
            body = json.loads(b"".join(chunks))
        except (ValueError, UnicodeDecodeError) as exc:
            raise protocol.bad(f"The request body is not valid JSON ({exc}).", code="invalid_json") from exc
        except RecursionError as exc:  # the parser recurses once per level: thousands of [[[[ exhaust the stack
            raise protocol.bad("The request body is not valid JSON: it is nested too deeply to be read. Send an "
                               "object a few levels deep.", code="invalid_json") from exc
        if not isinstance(body, dict):
            raise protocol.bad("The request body must be a JSON object.", code="invalid_json")
        return body

    def _too_large(self) -> ApiError:
        return ApiError(413, f"The request body is larger than this server's limit of {self.max_body // 1024} KB "
                             "(serve --max-request-kb).", code="request_too_large")

    # ------------------------------------------------------------ tokens
    def prompt_ids(self, text: str, special: bool = True) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=special)["input_ids"]
        if not ids and self.tokenizer.bos_token_id is not None:
            ids = [self.tokenizer.bos_token_id]  # an empty prompt: continue from the start of a text
        if not ids:
            raise protocol.bad("The prompt is empty and this model has no start-of-text token to begin from.",
                               "prompt", "invalid_value")
        return ids

    def room(self, ids: list[int], max_tokens: int | None, param: str) -> int:
        """The request's max_tokens (chat without one: what is left of the context), or 400 naming the limit.
        0 (echo: score the prompt only) needs the prompt to fit."""
        if max_tokens is None:
            max_tokens = self.limit - len(ids)
            if max_tokens < 1:
                raise protocol.context_error(self.limit, len(ids), 1, param)
        if len(ids) + max_tokens > self.limit:
            raise protocol.context_error(self.limit, len(ids), max_tokens, param)
        return max_tokens

    def chat_ids(self, messages: list[dict], tools: list | None = None) -> tuple[list[int], list[str]]:
        """The chat prompt's token ids and the stop strings it implies. `tools` (a tool call is asked for): a
        template that renders tools gets them; otherwise a system message lists them (`structured.tools_prompt`)."""
        template = getattr(self.tokenizer, "chat_template", None)
        turns = [dict(m, role="system" if m["role"] == "developer" else m["role"]) for m in messages]
        if tools and template and "tools" in str(template):
            return self.tool_template_ids(turns, tools), []
        if tools:
            turns = _with_system(turns, structured.tools_prompt(tools))
        if template:  # the ids Compare, Arena and the Models chat use too
            return chat.template_ids(self.tokenizer, turns), []
        return self.prompt_ids(transcript(turns)), [TRANSCRIPT_STOP]

    def tool_template_ids(self, turns: list[dict], tools: list) -> list[int]:
        try:
            encoded = self.tokenizer.apply_chat_template(turns, tools=tools, add_generation_prompt=True,
                                                         tokenize=True, return_dict=True)
        except Exception as exc:  # jinja2's errors and whatever a template's raise_exception raises
            raise protocol.bad(f"The model's chat template refused these messages and tools: {exc}.",
                               "messages", "invalid_value") from exc
        ids = encoded["input_ids"]
        return list(ids[0] if ids and isinstance(ids[0], list) else ids)

    def constrain(self, body: dict, s) -> None:
        """`s.constraint` from response_format or tools + tool_choice (400 naming the field when refused)."""
        tools, choice = body.get("tools"), body.get("tool_choice")
        stops = sorted(self.eos_ids)
        try:
            fmt = structured.response_format_constraint(self.tokenizer, self.vocab, body.get("response_format"),
                                                        stop_token_ids=stops)
            call = (structured.tool_call_constraint(self.tokenizer, self.vocab, tools, choice, stop_token_ids=stops)
                    if tools is not None else None)
        except structured.ConstraintError as exc:
            raise protocol.bad(exc.message, exc.param, "invalid_value") from None
        if fmt is not None and call is not None:
            raise protocol.bad("A tool call is JSON of its own: 'response_format' cannot also constrain the answer. "
                               "Send response_format text (or leave it out) with tool_choice, or tool_choice 'none'.",
                               "response_format", "invalid_value")
        s.constraint = call or fmt
        s.named_tool = call is not None and isinstance(choice, dict)
        if s.constraint is not None and s.stop:
            raise protocol.unsupported("'stop' cannot be used with response_format or a tool call: a stop string "
                                       "would cut the JSON. The grammar ends the answer; leave stop out.", "stop")

    def counted(self, texts: list[str]) -> int:
        total = 0
        for i, text in enumerate(texts):
            n = len(self.tokenizer(text, add_special_tokens=True)["input_ids"])
            if n > self.limit:
                raise protocol.input_too_long(self.limit, i, n)
            total += n
        return total

    # ------------------------------------------------------------ generation
    async def generate(self, body: dict, chat: bool):
        self.check_model(body)
        self.require(CHAT if chat else COMPLETIONS)
        s = protocol.sampling(body, chat, self.vocab)
        param = "messages" if chat else "prompt"
        self.constrain(body, s)
        if chat:
            calling = s.constraint is not None and s.constraint.kind == "tool_call"
            ids, implied = self.chat_ids(protocol.messages(body), body["tools"] if calling else None)
            if s.constraint is None:  # the grammar ends a constrained answer (and its JSON holds no newline)
                s.stop = s.stop + [t for t in implied if t not in s.stop]
            prompts = [Prompt(None, ids)]
        else:
            given = protocol.prompts(body, self.vocab)
            if len(given) > self.max_prompts:
                raise protocol.over_limit("prompts", len(given), self.max_prompts, "--max-prompts", "prompt")
            if s.stream and len(given) > 1:
                raise protocol.unsupported("stream takes one prompt; send a list of prompts without stream.", "prompt")
            prompts = [Prompt(p, self.prompt_ids(p)) if isinstance(p, str) else Prompt(None, p) for p in given]
        for p in prompts:
            p.max_tokens = self.room(p.ids, s.max_tokens, param)
        self.check_tokens(prompts, s, param, body)
        envelope = Envelope(self.name, "chat.completion" if chat else "text_completion",
                            protocol.new_id("chatcmpl" if chat else "cmpl"))
        if s.stream:
            return await self.stream(prompts[0], s, envelope, chat)
        made = await asyncio.gather(*(self.run(p, s) for p in prompts))
        prompt_tokens = sum(len(p.ids) for p in prompts)
        generated = sum(m.result.new_tokens for own in made for m in own)
        self.metrics.prompt.inc(prompt_tokens)
        self.metrics.generated.inc(generated)
        choices = []
        for p, own in zip(prompts, made):
            for m in self.best(own, s):
                choices.append(self.choice(len(choices), p, m, s, chat))
        return JSONResponse(envelope.wrap(choices, usage=protocol.usage(prompt_tokens, generated)))

    def check_tokens(self, prompts: list[Prompt], s, param: str, body: dict) -> None:
        """The request's total tokens (prompts, plus best_of x max_tokens each) within --max-request-tokens."""
        prompt_tokens = sum(len(p.ids) for p in prompts)
        total = prompt_tokens + s.best_of * sum(p.max_tokens for p in prompts)
        if total > self.max_request_tokens:
            name = param if prompt_tokens > self.max_request_tokens else (
                "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens")
            raise protocol.over_limit("tokens (prompt tokens plus best_of/n x max_tokens)", total,
                                      self.max_request_tokens, "--max-request-tokens", name)

    async def run(self, prompt: Prompt, s) -> list[Made]:
        """The request's choices for one prompt (best_of of them), prompt log-probabilities attached when echo
        asks for them. A greedy echo of one new token (lm-evaluation-harness's scoring request) and `max_tokens:
        0` are one prompt forward in the batcher's scoring group; the rest generate (and score the prompt apart)."""
        k = s.logprobs or 0
        one_token = s.greedy and prompt.max_tokens == 1 and not s.processed and s.constraint is None
        if s.echo and (prompt.max_tokens == 0 or one_token):
            scored = (await asyncio.wrap_future(self.batcher.submit(Scoring([prompt.ids], k))))[0]
            prompt.scored = scored
            if prompt.max_tokens == 0:
                return [Made(self.nothing(prompt))] * s.best_of
            return [Made(self.one_token(prompt, scored.next_id, scored.next_logprob, s.stop),
                         [(scored.next_logprob, scored.next_top)])] * s.best_of
        futures = [self.batcher.submit(Generation(prompt.ids, prompt.max_tokens, s, copies=s.best_of))]
        if s.echo and s.logprobs is not None:
            futures.append(self.batcher.submit(Scoring([prompt.ids], k)))
        done = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
        if len(done) > 1:
            prompt.scored = done[1][0]
        return done[0]

    def nothing(self, prompt: Prompt) -> GenerationResult:
        return GenerationResult(prompt="", text="", new_tokens=0, latency_s=0.0, tokens_per_s=0.0, mean_logprob=None,
                                stop_reason="max_new_tokens", prompt_tokens=len(prompt.ids), token_ids=[])

    def one_token(self, prompt: Prompt, token: int, logprob: float, stops: list[str]) -> GenerationResult:
        """The greedy one-token continuation, cut as `inference.generate` cuts it (end-of-sequence, stop strings)."""
        eos = token in self.eos_ids
        text = "" if eos else self.tokenizer.decode([token], skip_special_tokens=True)
        reason = "eos" if eos else "max_new_tokens"
        hits = [text.find(stop) for stop in stops if stop in text]
        if hits:
            text, reason = text[:min(hits)], "stop_string"
        return GenerationResult(prompt="", text=text, new_tokens=1, latency_s=0.0, tokens_per_s=0.0,
                                mean_logprob=logprob, stop_reason=reason, prompt_tokens=len(prompt.ids),
                                token_ids=[token])

    @staticmethod
    def best(made: list[Made], s) -> list[Made]:
        """n of the best_of choices: the highest summed log-probability first (vLLM's ranking)."""
        if s.best_of <= s.n:
            return made
        return sorted(made, key=lambda m: -sum(lp for lp, _ in m.logprobs or []))[:s.n]

    def choice(self, index: int, prompt: Prompt, made: Made, s, chat: bool) -> dict:
        result = made.result
        reason = protocol.finish_reason(result.stop_reason)
        if chat:
            logprobs = protocol.chat_logprobs(self.token_infos(made, s, chat=True)) if s.logprobs is not None else None
            calls = self.tool_calls(result, s)
            return protocol.chat_choice(index, result.text, self.call_reason(s) if calls else reason, logprobs, calls)
        text = (self.prompt_text(prompt) if s.echo else "") + result.text
        logprobs = None
        if s.logprobs is not None:
            tokens = (self.prompt_infos(prompt, s.logprobs) if s.echo else []) + self.token_infos(made, s, chat=False)
            logprobs = protocol.completion_logprobs(tokens)
        return protocol.completion_choice(index, text, reason, logprobs)

    @staticmethod
    def tool_calls(result, s) -> list[dict] | None:
        """The answer's tool_calls when a call was asked for and the grammar completed it (ended on a stop
        token); None otherwise (cut by max_tokens: the text goes out as content, finish_reason "length")."""
        if s.constraint is None or s.constraint.kind != "tool_call" or result.stop_reason != "eos":
            return None
        name, arguments = structured.parse_tool_call(result.text)
        return [protocol.tool_call(name, arguments)]

    @staticmethod
    def call_reason(s) -> str:
        """OpenAI's finish_reason of a call: "stop" when tool_choice named the function, else "tool_calls"."""
        return "stop" if s.named_tool else "tool_calls"

    # ------------------------------------------------------------ tokens as text
    def token_text(self, token: int) -> str:
        text = self._token_texts.get(token)
        if text is None:
            text = self._token_texts[token] = self.tokenizer.decode([token], skip_special_tokens=False)
        return text

    def token_raw(self, token: int) -> bytes:
        """The bytes `token` adds to a decoded text (TokenInfo.raw): b"" for a special token (decoding skips
        it); a byte-level BPE token's own bytes (or a "<0xNN>" byte-fallback token's byte), which a piece of a
        character split over tokens has though its text is U+FFFD; else its text's UTF-8."""
        raw = self._token_raws.get(token)
        if raw is None:
            raw = self._token_raws[token] = _token_bytes(self.tokenizer, token, self.token_text(token),
                                                         self._special_ids)
        return raw

    def info(self, token: int, logprob: float | None, top: list, k: int) -> TokenInfo:
        return TokenInfo(self.token_text(token), logprob, self._top(top, k), self.token_raw(token))

    def _top(self, top: list, k: int) -> list[tuple[str, float, bytes]]:
        return [(self.token_text(t), v, self.token_raw(t)) for t, v in top[:k]]

    def prompt_text(self, prompt: Prompt) -> str:
        return prompt.text if prompt.text is not None else self.tokenizer.decode(prompt.ids, skip_special_tokens=True)

    def prompt_infos(self, prompt: Prompt, k: int) -> list[TokenInfo]:
        scored = prompt.scored
        return [self.info(t, lp, top, k) for t, lp, top in zip(prompt.ids, scored.token_logprobs, scored.top)]

    def token_infos(self, made: Made, s, chat: bool, ids: list[int] | None = None,
                    entries: list | None = None) -> list[TokenInfo]:
        """The generated tokens' log-probabilities; chat shows the content's tokens (not end-of-sequence)."""
        ids = made.result.token_ids if ids is None else ids
        entries = made.logprobs if entries is None else entries
        out = []
        for token, (lp, top) in zip(ids, entries or []):
            if chat and token in self.eos_ids:
                break
            out.append(self.info(token, lp, top, s.logprobs or 0))
        return out

    # ------------------------------------------------------------ streaming
    async def stream(self, prompt: Prompt, s, envelope: Envelope, chat: bool) -> StreamingResponse:
        """Server-sent events as OpenAI sends them: `data: {chunk}` per piece of text (with its tokens'
        log-probabilities when asked), a last chunk with the finish_reason, a usage chunk when
        stream_options.include_usage, then `data: [DONE]`. Streams run alone (not batched). Text that could be
        the start of a stop string is held back until it is not. Echo sends the prompt (and its log-probabilities)
        first."""
        if s.echo and (s.logprobs is not None or prompt.max_tokens == 0):
            prompt.scored = (await asyncio.wrap_future(self.batcher.submit(Scoring([prompt.ids], s.logprobs or 0))))[0]
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        item = Generation(prompt.ids, prompt.max_tokens, s)

        def post(kind: str, value) -> None:  # called by the worker thread
            try:
                loop.call_soon_threadsafe(events.put_nowait, (kind, value))
            except RuntimeError:  # the event loop is closed (the server stops): nobody is listening
                item.sink.cancelled = True

        item.sink = Sink(post)
        envelope.object = "chat.completion.chunk" if chat else "text_completion"
        state = {"sent": 0}  # characters of text sent (text_offset of the next chunk's first token)

        def chunk(text: str | None, reason: str | None = None, role: bool = False, tokens=None,
                  calls: list | None = None) -> str:
            logprobs = None
            if tokens is not None and s.logprobs is not None:
                logprobs = (protocol.chat_logprobs(tokens) if chat
                            else protocol.completion_logprobs(tokens, state["sent"]))
            state["sent"] += len(text or "")
            if chat:
                delta = ({"role": "assistant", "content": ""} if role else {} if text is None else {"content": text})
                if calls:  # OpenAI's streamed call: its index, then id, type and function as they go
                    delta = {"tool_calls": [dict(call, index=i) for i, call in enumerate(calls)]}
                choice = protocol.chat_delta(0, delta, reason, logprobs)
            else:
                choice = protocol.completion_choice(0, text or "", reason, logprobs)
            return "data: " + json.dumps(envelope.wrap([choice])) + "\n\n"

        async def sse():
            ids, shown, pending, entries = [], "", [], []
            held = s.constraint is not None and s.constraint.kind == "tool_call"  # a call goes out whole, at its end
            try:
                if chat:
                    yield chunk(None, role=True)
                if s.echo:
                    yield chunk(self.prompt_text(prompt), tokens=self.prompt_infos(prompt, s.logprobs or 0)
                                if prompt.scored else None)
                if prompt.max_tokens == 0:
                    result = self.nothing(prompt)
                    yield chunk(None, protocol.finish_reason(result.stop_reason))
                    for tail in self._stream_end(prompt, result, s, envelope):
                        yield tail
                    return
                self.batcher.submit(item)
                while True:
                    kind, value = await events.get()
                    if kind == "tokens":
                        new_ids, new_entries = value
                        ids.extend(new_ids)
                        pending.extend(new_ids)
                        entries.extend((new_entries or [])[:1])  # one row: its (logprob, top) of this step
                        safe = _safe_prefix(self.tokenizer.decode(ids, skip_special_tokens=True), s.stop)
                        if not held and len(safe) > len(shown) and safe.startswith(shown):
                            infos = self._pending_infos(pending, entries, s, chat)
                            pending, entries = [], []
                            yield chunk(safe[len(shown):], tokens=infos)
                            shown = safe
                    elif kind == "done":
                        result = value.result
                        kept = len(result.token_ids) - (len(ids) - len(pending))  # tokens not sent yet, kept
                        infos = self._pending_infos(pending[:max(0, kept)], entries[:max(0, kept)], s, chat)
                        final = result.text
                        calls = self.tool_calls(result, s) if held else None
                        if calls:
                            yield chunk(None, tokens=infos, calls=calls)
                            yield chunk(None, self.call_reason(s))
                            for tail in self._stream_end(prompt, result, s, envelope):
                                yield tail
                            return
                        if len(final) > len(shown) and final.startswith(shown):
                            yield chunk(final[len(shown):], tokens=infos)
                        elif infos:
                            yield chunk("", tokens=infos)
                        yield chunk(None, protocol.finish_reason(result.stop_reason))
                        for tail in self._stream_end(prompt, result, s, envelope):
                            yield tail
                        return
                    else:
                        error = ApiError(500, f"Generation failed: {type(value).__name__}: {value}",
                                         "server_error", "generation_failed")
                        yield "data: " + json.dumps(error.body()) + "\n\n"
                        yield "data: [DONE]\n\n"
                        return
            finally:
                item.sink.cancelled = True  # a client that left stops the generation at its next token

        return StreamingResponse(sse(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    def _pending_infos(self, ids: list[int], entries: list, s, chat: bool) -> list[TokenInfo] | None:
        if s.logprobs is None:
            return None
        return self.token_infos(None, s, chat, ids=ids, entries=entries)

    def _stream_end(self, prompt: Prompt, result, s, envelope: Envelope):
        self.metrics.prompt.inc(len(prompt.ids))
        self.metrics.generated.inc(result.new_tokens)
        if s.include_usage:
            yield "data: " + json.dumps(envelope.wrap([], usage=protocol.usage(len(prompt.ids),
                                                                                result.new_tokens))) + "\n\n"
        yield "data: [DONE]\n\n"

    # ------------------------------------------------------------ classify / embed
    async def encode(self, body: dict, kind: str) -> JSONResponse:
        self.check_model(body)
        self.require(CLASSIFY if kind == "classify" else EMBEDDINGS)
        texts = protocol.texts(body)
        fmt = body.get("encoding_format") or "float"
        if kind == "embed" and fmt not in ("float", "base64"):
            raise protocol.bad(f"'encoding_format' must be 'float' or 'base64'; got {fmt!r}.", "encoding_format",
                               "invalid_value")
        dims = body.get("dimensions")
        tokens = self.counted(texts)
        values = await asyncio.wrap_future(self.batcher.submit(Encoding(kind, texts)))
        self.metrics.prompt.inc(tokens)
        used = {"prompt_tokens": tokens, "total_tokens": tokens}
        if kind == "classify":
            labels = self.loaded.labels or [str(i) for i in range(values.shape[1])]
            data = [{"object": "classification", "index": i, "label": labels[int(np.argmax(row))],
                     "probabilities": {label: float(p) for label, p in zip(labels, row)}}
                    for i, row in enumerate(values)]
            return JSONResponse({"object": "list", "model": self.name, "data": data, "usage": used})
        if dims is not None and dims != values.shape[1]:
            raise protocol.unsupported(f"'dimensions' {dims!r}: this model's embeddings have {values.shape[1]} "
                                       "dimensions and this server does not shorten them.", "dimensions")
        data = [{"object": "embedding", "index": i,
                 "embedding": (base64.b64encode(np.asarray(row, dtype="<f4").tobytes()).decode() if fmt == "base64"
                               else [float(v) for v in row])} for i, row in enumerate(values)]
        return JSONResponse({"object": "list", "model": self.name, "data": data, "usage": used})

    def model_card(self) -> dict:
        return {"id": self.name, "object": "model", "created": self.created, "owned_by": "llm-lab",
                "head": self.loaded.head, "max_context": self.limit, "endpoints": self.routes()}


def _vocab_size(loaded) -> int:
    """Token ids the model takes (its embedding rows; the tokenizer's count when the config has none)."""
    config = loaded.model.config
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(getattr(config, "vocab_size", 0) or len(loaded.tokenizer))


def _eos_ids(loaded) -> set[int]:
    """The ids that end a generation (the model's generation config, else the tokenizer's)."""
    eos = getattr(getattr(loaded.model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = loaded.tokenizer.eos_token_id
    return set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}


_BYTE_TOKEN = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


@functools.cache
def _byte_decoder() -> dict[str, int]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return {char: byte for byte, char in bytes_to_unicode().items()}


def _token_bytes(tokenizer, token: int, text: str, special: set[int]) -> bytes:
    """See Server.token_raw. The byte-level reading is used only where it agrees with the tokenizer's own
    decoding of the token (so a tokenizer of another kind falls back to the text's bytes)."""
    if token in special:
        return b""
    piece = tokenizer.convert_ids_to_tokens(token)
    if isinstance(piece, str):
        match = _BYTE_TOKEN.match(piece)
        if match:
            return bytes([int(match.group(1), 16)])
        decoder = _byte_decoder()
        if piece and all(c in decoder for c in piece):
            raw = bytes(decoder[c] for c in piece)
            if raw.decode("utf-8", "replace") == text:
                return raw
    return text.encode("utf-8")


def _with_system(turns: list[dict], text: str) -> list[dict]:
    """`text` at the start of the system message (one is added first when there is none)."""
    if turns and turns[0]["role"] == "system":
        return [dict(turns[0], content=text + "\n\n" + turns[0]["content"])] + turns[1:]
    return [{"role": "system", "content": text}] + turns


def _safe_prefix(text: str, stops: list[str]) -> str:
    """The part of the text decoded so far that can be shown: up to the first stop string, without an
    unfinished character (U+FFFD at the end) or an ending that could be the start of a stop string."""
    text = text.rstrip("\ufffd")
    hits = [text.find(s) for s in stops if s in text]
    if hits:
        return text[:min(hits)]
    for k in range(max([len(s) for s in stops] + [1]) - 1, 0, -1):
        if any(text.endswith(s[:k]) for s in stops if len(s) > k):
            return text[:-k]
    return text


def create_app(loaded, api_key: str | None, max_batch: int = 16, window_ms: float = 10.0,
               max_body: int = 1 << 20, names: list[str] | None = None, max_prompts: int = DEFAULT_MAX_PROMPTS,
               max_request_tokens: int = DEFAULT_MAX_REQUEST_TOKENS) -> FastAPI:
    """The FastAPI application serving `loaded` (a registry.LoadedModel). `api_key=None`: no key needed.
    `max_prompts` / `max_request_tokens`: the most prompts, and prompt plus completion tokens, one request
    may ask for (400 naming the field beyond them)."""
    server = Server(loaded, list(names or []), max_batch, window_ms, max_body, max_prompts, max_request_tokens)

    @asynccontextmanager
    async def lifespan(app):
        server.batcher.start()
        try:
            yield
        finally:
            server.batcher.stop()

    app = FastAPI(title=f"LLM Lab: {server.name}", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.server = server

    @app.exception_handler(ApiError)
    async def api_error(request, exc: ApiError):
        return _error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc: StarletteHTTPException):
        if exc.status_code == 404:
            return _error_response(ApiError(404, f"No such path: {request.method} {request.url.path}. This server "
                                                 f"answers {', '.join(server.routes())}.", code="not_found"))
        return _error_response(ApiError(exc.status_code, str(exc.detail), code="http_error"))

    @app.exception_handler(Exception)
    async def server_error(request, exc: Exception):
        return _error_response(ApiError(500, f"{type(exc).__name__}: {exc}", "server_error", "internal_error"))

    @app.post(COMPLETIONS)
    async def completions(request: Request):
        return await server.generate(await server.body(request), chat=False)

    @app.post(CHAT)
    async def chat_completions(request: Request):
        return await server.generate(await server.body(request), chat=True)

    @app.post(EMBEDDINGS)
    async def embeddings(request: Request):
        return await server.encode(await server.body(request), "embed")

    @app.post(CLASSIFY)
    async def classify(request: Request):
        return await server.encode(await server.body(request), "classify")

    @app.get(MODELS)
    async def models():
        return {"object": "list", "data": [server.model_card()]}

    @app.get(MODELS + "/{model_id:path}")
    async def model(model_id: str):
        if model_id not in server.names:
            raise ApiError(404, f"The model {model_id!r} does not exist on this server: it serves {server.name!r}.",
                           code="model_not_found")
        return server.model_card()

    @app.get(HEALTH)
    async def health():
        return {"status": "ok"}

    @app.get(METRICS)
    async def metrics():
        return Response(generate_latest(server.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(_Gate, api_key=api_key, metrics=server.metrics)
    return app
