"""The HTTP application: OpenAI-compatible routes over one loaded registry model.

| path | model | what |
|---|---|---|
| `POST /v1/completions` | causal LM | OpenAI completions (`prompt`: a string or a list of strings, one choice each) |
| `POST /v1/chat/completions` | causal LM | OpenAI chat; the tokenizer's chat template, else a "role: content" transcript |
| `POST /v1/embeddings` | encoder, classifier | mean-pooled, L2-normalised embeddings (`inference.embed`); float or base64 |
| `POST /v1/classify` | classifier | labels and probabilities per input (`inference.classify`) |
| `GET /v1/models`, `/v1/models/{id}` | any | the served model |
| `GET /health` | any | `{"status": "ok"}`, without a key (for load balancers) |
| `GET /metrics` | any | Prometheus text format |

Every path but /health needs `Authorization: Bearer KEY` when the server has a key (compared in constant
time). Tokenising for the context check happens in the event loop with its own copy of the tokenizer; the
model and its tokenizer belong to the batcher's worker thread (a Rust tokenizer must not be used from two
threads while another tokenises with it).
"""
from __future__ import annotations

import asyncio
import base64
import copy
import hmac
import json
import time
from contextlib import asynccontextmanager

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
from ..inference import chat
from . import protocol
from .batcher import Batcher, Encoding, Generation, Sink
from .protocol import ApiError, Envelope

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


class Server:
    """One loaded model served: what the endpoints share."""

    def __init__(self, loaded, names: list[str], max_batch: int, window_ms: float, max_body: int):
        self.loaded, self.max_body = loaded, max_body
        self.name = loaded.entry.name
        self.names = {self.name, *names}
        self.tokenizer = copy.deepcopy(loaded.tokenizer)  # the event loop's own (see the module's docstring)
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
        """The request's max_tokens (chat without one: what is left of the context), or 400 naming the limit."""
        if max_tokens is None:
            max_tokens = self.limit - len(ids)
            if max_tokens < 1:
                raise protocol.context_error(self.limit, len(ids), 1, param)
        if len(ids) + max_tokens > self.limit:
            raise protocol.context_error(self.limit, len(ids), max_tokens, param)
        return max_tokens

    def chat_ids(self, messages: list[dict]) -> tuple[list[int], list[str]]:
        """The chat prompt's token ids and the stop strings it implies."""
        if getattr(self.tokenizer, "chat_template", None):  # the ids Compare, Arena and the Models chat use too
            return chat.template_ids(self.tokenizer, [dict(m, role="system" if m["role"] == "developer" else m["role"])
                                                      for m in messages]), []
        return self.prompt_ids(transcript(messages)), [TRANSCRIPT_STOP]

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
        s = protocol.sampling(body, chat)
        if chat:
            ids, implied = self.chat_ids(protocol.messages(body))
            s.stop = s.stop + [t for t in implied if t not in s.stop]
            encoded = [ids]
        else:
            texts = protocol.prompts(body)
            if s.stream and len(texts) > 1:
                raise protocol.unsupported("stream takes one prompt; send a list of prompts without stream.", "prompt")
            encoded = [self.prompt_ids(t) for t in texts]
        param = "messages" if chat else "prompt"
        items = [Generation(ids, self.room(ids, s.max_tokens, param), s) for ids in encoded]
        envelope = Envelope(self.name, "chat.completion" if chat else "text_completion",
                            protocol.new_id("chatcmpl" if chat else "cmpl"))
        if s.stream:
            return self.stream(items[0], envelope, chat)
        results = await asyncio.gather(*(asyncio.wrap_future(self.batcher.submit(item)) for item in items))
        prompt_tokens = sum(len(ids) for ids in encoded)
        made = sum(r.new_tokens for r in results)
        self.metrics.prompt.inc(prompt_tokens)
        self.metrics.generated.inc(made)
        choice = protocol.chat_choice if chat else protocol.completion_choice
        return JSONResponse(envelope.wrap([choice(i, r.text, protocol.finish_reason(r.stop_reason))
                                           for i, r in enumerate(results)], usage=protocol.usage(prompt_tokens, made)))

    def stream(self, item: Generation, envelope: Envelope, chat: bool) -> StreamingResponse:
        """Server-sent events as OpenAI sends them: `data: {chunk}` per piece of text, a last chunk with the
        finish_reason, a usage chunk when stream_options.include_usage, then `data: [DONE]`. Streams run alone
        (not batched). Text that could be the start of a stop string is held back until it is not."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        def post(kind: str, value) -> None:  # called by the worker thread
            try:
                loop.call_soon_threadsafe(events.put_nowait, (kind, value))
            except RuntimeError:  # the event loop is closed (the server stops): nobody is listening
                item.sink.cancelled = True

        item.sink = Sink(post)
        envelope.object = "chat.completion.chunk" if chat else "text_completion"
        stops = item.sampling.stop

        def chunk(text: str | None, reason: str | None = None, role: bool = False) -> str:
            if chat:
                delta = ({"role": "assistant", "content": ""} if role else {} if text is None else {"content": text})
                choice = protocol.chat_delta(0, delta, reason)
            else:
                choice = protocol.completion_choice(0, text or "", reason)
            return "data: " + json.dumps(envelope.wrap([choice])) + "\n\n"

        async def sse():
            ids, shown = [], ""
            try:
                self.batcher.submit(item)
                if chat:
                    yield chunk(None, role=True)
                while True:
                    kind, value = await events.get()
                    if kind == "tokens":
                        ids.extend(value)
                        safe = _safe_prefix(self.tokenizer.decode(ids, skip_special_tokens=True), stops)
                        if len(safe) > len(shown) and safe.startswith(shown):
                            yield chunk(safe[len(shown):])
                            shown = safe
                    elif kind == "done":
                        final = value.text
                        if len(final) > len(shown) and final.startswith(shown):
                            yield chunk(final[len(shown):])
                        self.metrics.prompt.inc(len(item.ids))
                        self.metrics.generated.inc(value.new_tokens)
                        yield chunk(None, protocol.finish_reason(value.stop_reason))
                        if item.sampling.include_usage:
                            yield "data: " + json.dumps(envelope.wrap(
                                [], usage=protocol.usage(len(item.ids), value.new_tokens))) + "\n\n"
                        yield "data: [DONE]\n\n"
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
               max_body: int = 1 << 20, names: list[str] | None = None) -> FastAPI:
    """The FastAPI application serving `loaded` (a registry.LoadedModel). `api_key=None`: no key needed."""
    server = Server(loaded, list(names or []), max_batch, window_ms, max_body)

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
