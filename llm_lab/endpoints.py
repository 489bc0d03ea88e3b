"""Endpoint models: the registry source `endpoint`, a model served by an OpenAI-compatible server (vLLM, TGI,
Ollama, llama.cpp's server, or LLM Lab's own `python -m llm_lab serve`).

An entry records a base URL (`location`), the server's model name and the NAME of an environment variable
holding the API key (`meta = {"model": ..., "api_key_env": ...}`). The key itself is read from the process's
environment at each call and is never stored: not in the database, the audit log, job parameters or logs,
and never shown (error texts are scrubbed of it).

Loaded, an endpoint is a `registry.LoadedModel` whose `model` is an `EndpointModel` and whose capabilities
say `endpoint=True` and provide only text generation (`capabilities.GENERATES_TEXT`): Compare, Arena and the
generation benchmark task use it through `inference.generate` / `inference.stream`, which hand it the
prompts (`EndpointModel.generate_texts`, `EndpointModel.stream_text`); every feature that needs logits,
gradients, attention or weights refuses it with the one capability message.

Settings map to the OpenAI completions API: max_new_tokens → max_tokens, greedy → temperature 0,
sampling → temperature and top_p, seed → seed, stop strings → stop (the first four; all of them are also
cut on this side). repetition_penalty, no_repeat_ngram_size and top_k have no OpenAI equivalent: they are
not sent, and each result's note says so.

Who may add one: anyone who may register models, locally. On a hosted server an admin may add any URL; a
non-admin only a URL whose host is on the operator's `endpoint_allow` list, with a key variable whose name
starts with `LLM_LAB_ENDPOINT_KEY_` (so a user can neither make the server call its internal addresses nor
send one of the server's other secrets to a host of their choosing). Redirects are never followed.
"""
from __future__ import annotations

import json
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from urllib.parse import urlsplit

from . import capabilities, loaders, settings
from .errors import ModelError

SOURCE = "endpoint"
HOSTED_KEY_PREFIX = "LLM_LAB_ENDPOINT_KEY_"
MAX_STOPS = 4           # the OpenAI API takes at most four stop strings
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


class EndpointError(ModelError):
    pass


def timeout_s() -> float:
    """Seconds to wait for an endpoint's answer (between bytes of a stream), LLM_LAB_ENDPOINT_TIMEOUT."""
    return float(os.environ.get("LLM_LAB_ENDPOINT_TIMEOUT", "120"))


def concurrency() -> int:
    """Requests in flight at once when one model answers many prompts, LLM_LAB_ENDPOINT_CONCURRENCY."""
    return max(1, int(os.environ.get("LLM_LAB_ENDPOINT_CONCURRENCY", "4")))


# ---------------------------------------------------------------- entries
def check_url(url: str) -> str:
    """The base URL, checked (http or https, a host, no credentials, query or fragment) and without a trailing
    slash. With or without the `/v1` suffix: requests go to `<base>/v1/completions` either way."""
    url = (url or "").strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError as exc:
        raise EndpointError(f"{url!r} is not a valid URL ({exc}).") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EndpointError(f"The base URL must start with http:// or https:// and name a host, e.g. "
                            f"http://localhost:8000/v1 (got {url!r}).")
    if parts.username or parts.password:
        raise EndpointError("The base URL must not carry a user name or password: it is stored and shown. Put the "
                            "API key in an environment variable and give its name instead.")
    if parts.query or parts.fragment:
        raise EndpointError(f"The base URL must not have a query (?…) or fragment (#…): give the address the "
                            f"server's /v1 API lives under (got {url!r}).")
    return url.rstrip("/")


def api_root(base_url: str) -> str:
    return base_url if base_url.endswith("/v1") else base_url + "/v1"


def make_entry(name: str, base_url: str, model: str, api_key_env: str | None = None):
    """A registry entry for an endpoint (not registered yet: `add` does that)."""
    from .registry import ModelEntry

    model = (model or "").strip()
    if not model:
        raise EndpointError("Give the model name the server knows (the `model` of its requests, e.g. "
                            "meta-llama/Llama-3.1-8B-Instruct for vLLM, llama3 for Ollama).")
    if len(model) > 200 or any(ord(c) < 32 for c in model):
        raise EndpointError("The model name must be one line of at most 200 characters.")
    env = (api_key_env or "").strip().lstrip("$") or None
    if env and not ENV_NAME.fullmatch(env):
        raise EndpointError(f"{env!r} is not an environment variable name: give the NAME of the variable that holds "
                            "the API key (letters, digits and '_', e.g. OPENAI_API_KEY), never the key itself.")
    meta = {"model": model, "api_key_env": env}
    return ModelEntry(str(name).strip(), SOURCE, check_url(base_url), "causal-lm", meta=meta,
                      description=f"OpenAI-compatible endpoint: {model}")


def host_allowed(base_url: str) -> bool:
    """Whether the URL's host is on the operator's `endpoint_allow` list: `host`, `host:port`, `*.domain`."""
    parts = urlsplit(base_url)
    host = (parts.hostname or "").casefold()
    port = parts.port or (443 if parts.scheme == "https" else 80)
    for pattern in settings.get("endpoint_allow"):
        pattern = str(pattern).strip().casefold()
        if pattern in (host, f"{host}:{port}") or (pattern.startswith("*.") and host.endswith(pattern[1:])):
            return True
    return False


def check_entry(actor, entry) -> None:
    """What registry.register checks for an endpoint: the URL, model and key variable, and on a hosted server
    who may add it (see the module docstring)."""
    check = make_entry(entry.name, entry.location, (entry.meta or {}).get("model", ""),
                       (entry.meta or {}).get("api_key_env"))
    entry.location, entry.head = check.location, "causal-lm"
    entry.meta = check.meta  # exactly these keys: nothing else (never a key) rides along into the store
    if settings.hosted() and not actor.can("server"):
        if not host_allowed(entry.location):
            allowed = ", ".join(settings.get("endpoint_allow")) or "none"
            raise EndpointError(f"This server lets you add endpoints only on the hosts its operator allows "
                                f"(setting endpoint_allow: {allowed}). Ask an admin to add this endpoint, or to "
                                "allow its host.")
        env = entry.meta.get("api_key_env")
        if env and not env.startswith(HOSTED_KEY_PREFIX):
            raise EndpointError(f"On this server an endpoint's key variable must be one the operator set for "
                                f"endpoints: its name starts with {HOSTED_KEY_PREFIX} (got {env}). Ask an admin "
                                "which one holds the key you need.")


def key_missing(name: str, api_key_env: str | None) -> str | None:
    """Why calls to endpoint `name` fail here for want of its key (None: it is set, or none is needed)."""
    if not api_key_env or os.environ.get(api_key_env):
        return None
    return (f"{name} needs its API key in the environment variable {api_key_env}, which is not set where LLM Lab "
            f"runs (the dashboard and its worker read it). Set it (export {api_key_env}=…) and restart LLM Lab, or "
            "register the endpoint without a key variable if its server needs none.")


def add(actor, name: str, base_url: str, model: str, api_key_env: str | None = None):
    """Register an endpoint model in the actor's workspace (audited as model.register, without any key)."""
    from . import registry

    return registry.register(actor, make_entry(name, base_url, model, api_key_env))


def load(entry, head: str | None = None):
    """The loaded form of an endpoint entry: nothing is contacted until it generates."""
    from .registry import LoadedModel

    if head not in (None, "causal-lm"):
        raise EndpointError(f"{entry.name} is an OpenAI-compatible endpoint: it opens only as causal-lm (it "
                            f"returns generated text), not as {head}.")
    caps = capabilities.Capabilities("causal-lm", capabilities.ENDPOINT_PROVIDES, max_context=0, endpoint=True)
    return LoadedModel(entry, EndpointModel(entry), None, "endpoint", "-", caps, 0.0)


# the registry opens an endpoint entry with this (llm_lab/loaders.py): nothing loaded, nothing cached
loaders.register(loaders.Loader("endpoint", opens=lambda entry: entry.source == SOURCE, open=load,
                                check_entry=check_entry, order=10))


# ---------------------------------------------------------------- the client
_client = None
_client_lock = threading.Lock()


def client():
    """One HTTP client for every endpoint (thread-safe, pooled); redirects are not followed."""
    global _client
    import httpx

    with _client_lock:
        if _client is None:
            _client = httpx.Client(follow_redirects=False, limits=httpx.Limits(max_connections=32))
        return _client


def not_applied(settings_) -> str:
    """The note on every result of settings the OpenAI completions API cannot carry."""
    parts = []
    if settings_.repetition_penalty != 1:
        parts.append(f"repetition_penalty {settings_.repetition_penalty:g}")
    if settings_.no_repeat_ngram_size:
        parts.append(f"no_repeat_ngram_size {settings_.no_repeat_ngram_size}")
    if settings_.do_sample and settings_.top_k:
        parts.append(f"top_k {settings_.top_k}")
    if not parts:
        return ""
    return ("Not applied by the endpoint (the OpenAI completions API has no such setting): " + ", ".join(parts) + ".")


class EndpointModel:
    """A model behind an OpenAI-compatible /v1/completions. `inference.generate` / `inference.stream` call
    `generate_texts` / `stream_text`; the results are `generation.GenerationResult`s like a local model's."""

    def __init__(self, entry):
        self.entry = entry
        self.name = entry.name
        self.base_url = entry.location
        self.model = (entry.meta or {}).get("model", "")
        self.api_key_env = (entry.meta or {}).get("api_key_env")
        self.url = api_root(self.base_url) + "/completions"

    # ------------------------------------------------------------ requests
    def _key(self) -> str | None:
        missing = key_missing(self.name, self.api_key_env)
        if missing:
            raise EndpointError(missing)
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    def _headers(self) -> dict:
        key = self._key()
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _scrub(self, text: str) -> str:
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        return text.replace(key, "***") if key else text

    def body(self, prompt: str, settings_, stream: bool = False) -> dict:
        body = {"model": self.model, "prompt": prompt, "max_tokens": int(settings_.max_new_tokens)}
        if settings_.do_sample:
            body.update(temperature=float(settings_.temperature), top_p=float(settings_.top_p))
        else:
            body["temperature"] = 0.0   # greedy
        if settings_.seed is not None:
            body["seed"] = int(settings_.seed)
        if settings_.stop:
            body["stop"] = list(settings_.stop[:MAX_STOPS])
        if stream:
            body.update(stream=True, stream_options={"include_usage": True})
        return body

    def _fail(self, exc) -> EndpointError:
        """The message for a failed call: what happened, with the server's own words, and what to check."""
        import httpx

        where = f"{self.name} ({self.url})"
        if isinstance(exc, httpx.TimeoutException):
            return EndpointError(f"{where} did not answer within {timeout_s():g} s ({type(exc).__name__}). The "
                                 "server may be overloaded or the model still loading; LLM_LAB_ENDPOINT_TIMEOUT sets "
                                 "the wait.")
        if isinstance(exc, httpx.ConnectError):
            return EndpointError(f"Cannot connect to {where}: {self._scrub(str(exc)) or 'connection refused'}. Is the "
                                 "server running, and is the base URL right?")
        return EndpointError(f"The request to {where} failed: {self._scrub(str(exc))}")

    def _status_error(self, status: int, text: str) -> EndpointError:
        said = self._scrub(server_message(text)).rstrip().rstrip(".")
        where = f"{self.name} ({self.url})"
        if status in (401, 403) and self.api_key_env:
            return EndpointError(f"{where} refused the API key (HTTP {status}): {said}. The key comes from the "
                                 f"environment variable {self.api_key_env}; check it is the right one for this server.")
        if status in (401, 403):
            return EndpointError(f"{where} wants an API key (HTTP {status}): {said}. Register the endpoint again with "
                                 "the name of the environment variable that holds it (--api-key-env).")
        if status == 404:
            return EndpointError(f"{where} answered HTTP 404 (not found): {said}. Check the model name "
                                 f"{self.model!r} and the base URL (the server's OpenAI API lives under …/v1).")
        return EndpointError(f"{where} answered HTTP {status}: {said}")

    def _post(self, prompt: str, settings_) -> tuple[dict, float]:
        import httpx

        headers = self._headers()
        t0 = time.perf_counter()
        try:
            response = client().post(self.url, json=self.body(prompt, settings_), headers=headers,
                                     timeout=httpx.Timeout(timeout_s(), connect=10.0))
        except httpx.HTTPError as exc:
            raise self._fail(exc) from None
        latency = time.perf_counter() - t0
        if response.status_code != 200:
            raise self._status_error(response.status_code, response.text)
        try:
            payload = response.json()
            return payload, latency
        except ValueError:
            raise EndpointError(f"{self.name} ({self.url}) did not answer with JSON: "
                                f"{self._scrub(response.text[:200])!r}") from None

    # ------------------------------------------------------------ generation
    def generate_texts(self, prompts: list[str], settings_, progress=None) -> list:
        """One request per prompt, a few in flight at once (`concurrency()`); results in prompt order. Each
        result's latency is its own request's wall time."""
        self._key()  # a missing key is said once, before any request
        results = [None] * len(prompts)
        with ThreadPoolExecutor(max_workers=min(concurrency(), len(prompts)), thread_name_prefix="llm-lab-endpoint") as pool:
            futures = {pool.submit(self._post, prompt, settings_): i for i, prompt in enumerate(prompts)}
            done = 0
            try:
                for future in as_completed(futures):
                    i = futures[future]
                    payload, latency = future.result()
                    results[i] = self._result(prompts[i], payload, latency, settings_)
                    done += 1
                    if progress:
                        progress(done, len(prompts))
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        return results

    def _result(self, prompt: str, payload: dict, latency: float, settings_, first_token_s: float | None = None):
        choices = payload.get("choices") or []
        if not choices:
            raise EndpointError(f"{self.name} answered without choices: {self._scrub(json.dumps(payload)[:200])}")
        choice = choices[0]
        return self._finish(prompt, choice.get("text") or "", choice.get("finish_reason"), choice.get("stop_reason"),
                            payload.get("usage") or {}, latency, settings_, first_token_s)

    def _finish(self, prompt, text, finish_reason, stop_reason, usage, latency, settings_, first_token_s=None,
                counted: int | None = None):
        from .generation import GenerationResult

        if finish_reason == "length":
            reason = "max_new_tokens"
        elif isinstance(stop_reason, str):  # vLLM names the stop string that ended the text
            reason = "stop_string"
        else:  # "stop": the end of the text, or (the server does not say which) one of the stop strings
            reason = "stop" if settings_.stop else "eos"
        hits = [text.find(s) for s in settings_.stop if s in text]  # every stop string, also past the fourth
        if hits:
            text, reason = text[:min(hits)], "stop_string"
        notes = [not_applied(settings_)]
        tokens = usage.get("completion_tokens")
        if tokens is None:
            tokens = counted or 0
            notes.append("The server reported no token counts" + (" (counted from its stream)." if counted else "."))
        return GenerationResult(prompt=prompt, text=text, new_tokens=int(tokens), latency_s=latency,
                                tokens_per_s=tokens / latency if latency > 0 else 0.0, mean_logprob=None,
                                truncated=False, stop_reason=reason, note=" ".join(n for n in notes if n),
                                prompt_tokens=int(usage.get("prompt_tokens") or 0), first_token_s=first_token_s)

    def stream_text(self, prompt: str, settings_):
        """Yield text pieces as the server sends them (server-sent events), then the GenerationResult (with the
        time to the first piece)."""
        import httpx

        headers = self._headers()
        t0 = time.perf_counter()
        first = None
        pieces, finish_reason, stop_reason, usage, chunks = [], None, None, {}, 0
        shown = 0
        try:
            with client().stream("POST", self.url, json=self.body(prompt, settings_, stream=True), headers=headers,
                                 timeout=httpx.Timeout(timeout_s(), connect=10.0)) as response:
                if response.status_code != 200:
                    raise self._status_error(response.status_code, response.read().decode("utf-8", "replace"))
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    try:
                        event = json.loads(data)
                    except ValueError:
                        raise EndpointError(f"{self.name} sent a stream event that is not JSON: "
                                            f"{self._scrub(data[:200])!r}") from None
                    if event.get("error"):
                        raise EndpointError(f"{self.name} ({self.url}) failed while streaming: "
                                            f"{self._scrub(server_message(json.dumps(event)))}")
                    usage = event.get("usage") or usage
                    for choice in event.get("choices") or []:
                        piece = choice.get("text") or ""
                        finish_reason = choice.get("finish_reason") or finish_reason
                        stop_reason = choice.get("stop_reason") or stop_reason
                        if piece:
                            chunks += 1
                            if first is None:
                                first = time.perf_counter() - t0
                            pieces.append(piece)
                            # never show text past a stop string (cut here too, as the local models' stream does)
                            text = "".join(pieces)
                            hits = [text.find(s) for s in settings_.stop if s in text]
                            visible = text[:min(hits)] if hits else text
                            if len(visible) > shown:
                                yield visible[shown:]
                                shown = len(visible)
        except httpx.HTTPError as exc:
            raise self._fail(exc) from None
        latency = time.perf_counter() - t0
        yield self._finish(prompt, "".join(pieces), finish_reason, stop_reason, usage, latency, settings_, first,
                           counted=chunks)

    def check(self) -> float:
        """One tiny request (one new token): its latency in seconds, or the error saying what is wrong."""
        from .generation import GenerationSettings

        _payload, latency = self._post("Hello", GenerationSettings(max_new_tokens=1))
        return latency

    def info(self, loaded) -> dict:
        """The Models page's card of an endpoint (no key: only the variable's name, and whether it is set)."""
        env = self.api_key_env
        return {"name": self.name, "source": SOURCE, "head": "causal-lm", "architecture": "OpenAI-compatible endpoint",
                "base_url": self.base_url, "model": self.model, "api_key_env": env,
                "api_key_set": bool(env and os.environ.get(env)), "can": sorted(loaded.capabilities.provides),
                "device": "endpoint", "dtype": "-", "head_is_new": False, "labels": [], "load_seconds": 0.0,
                "parameters": None, "max_context": None}


def server_message(text: str) -> str:
    """The server's own error message out of its answer: OpenAI's {"error": {"message"}}, FastAPI's {"detail"},
    or the text itself (shortened)."""
    try:
        payload = json.loads(text)
    except (ValueError, TypeError):
        return (text or "").strip()[:300] or "(no message)"
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:500]
        if isinstance(error, str):
            return error[:500]
        for key in ("detail", "message"):
            if payload.get(key):
                value = payload[key]
                return (value if isinstance(value, str) else json.dumps(value))[:500]
    return json.dumps(payload)[:300]
