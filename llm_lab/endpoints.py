"""Endpoint models: the registry source `endpoint`, a model served by an OpenAI-compatible server (vLLM, TGI,
Ollama, llama.cpp's server, or LLM Lab's own `python -m llm_lab serve`).

An entry records a base URL (`location`), the server's model name, the NAME of an environment variable
holding the API key, and the verdict of the scoring probe (`meta = {"model", "api_key_env", "probe"}`). The key
itself is read from the process's environment at each call and is never stored: not in the database, the audit
log, job parameters or logs, and never shown (error texts are scrubbed of it).

Loaded, an endpoint is a `registry.LoadedModel` whose `model` is an `EndpointModel` and whose capabilities
say `endpoint=True` and provide text generation (`capabilities.GENERATES_TEXT`), plus log-likelihood scoring
(`capabilities.SCORES_TEXT`) when the probe said the server scores: Compare, Arena and the generation task use
it through `inference.generate` / `inference.stream` (`EndpointModel.generate_texts`, `stream_text`); the
multiple-choice and language-modelling tasks through `inference.loglikelihood` / `loglikelihood_rolling`
(`EndpointModel.score_texts`); every feature that needs logits, gradients, attention or weights refuses it
with the one capability message.

The probe (`probe`, at registration and when the user asks: `models probe NAME`, the Models page's button)
sends what lm-evaluation-harness's completions client sends to score: a known text with `echo: true`,
`logprobs: 1`, `max_tokens: 1`, temperature 0. It says "scores" only when the answer really carries the
prompt's log-probabilities: the echoed text starts with the prompt, the tokens (or their `text_offset`s) cover
it, and their log-probabilities are finite, at most 0 and not all 0 (the first token's may be null). Servers
that refuse echo, or silently drop the log-probabilities or fake them (llama.cpp, Ollama: lm-eval then scores
at chance) get "no", with the reason, which the capability message repeats.

Scoring over HTTP (`score_texts`): for a (text, start) request the server echoes the text with a
log-probability per token, and the context `text[:start]` alone tells how many of those tokens are the
context's (one more echo request per distinct context, remembered): the tokens after them are scored, greedy
when each was the server's top-1 (`top_logprobs`). That is lm-eval's split (the whole text, then the context's
own token count) with the server's tokenizer; character offsets are not used, because servers (vLLM, `serve`)
compute `text_offset` from token strings in which a piece of a multi-byte character reads "\ufffd", so they
drift from the text's characters after the first non-ASCII one. The first token of a text has no
log-probability (nothing precedes it): scoring a whole text (`start` 0) leaves it out and says so. A server that
stops returning them mid-run fails the run with that said.

Settings map to the OpenAI completions API: max_new_tokens → max_tokens, greedy → temperature 0,
sampling → temperature and top_p, seed → seed, stop strings → stop (the first four; all of them are also
cut on this side). repetition_penalty, no_repeat_ngram_size and top_k have no OpenAI equivalent: they are
not sent, and each result's note says so. A conversation (inference/chat.py) goes to the server's
/v1/chat/completions, where the server applies the model's own chat template; a string to /v1/completions.

Who may add one: anyone who may register models, locally. On a hosted server an admin may add any URL; a
non-admin only a URL whose host is on the operator's `endpoint_allow` list, with a key variable whose name
starts with `LLM_LAB_ENDPOINT_KEY_` (so a user can neither make the server call its internal addresses nor
send one of the server's other secrets to a host of their choosing). These checks come before the probe's
request. Redirects are never followed.
"""
from __future__ import annotations

import json
import math
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from itertools import pairwise
from urllib.parse import urlsplit

from . import capabilities, loaders, settings
from .errors import ModelError

SOURCE = "endpoint"
HOSTED_KEY_PREFIX = "LLM_LAB_ENDPOINT_KEY_"
MAX_STOPS = 4           # the OpenAI API takes at most four stop strings
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


class EndpointError(ModelError):
    pass


class NoLogprobs(EndpointError):
    """The answer carries no usable prompt log-probabilities (the text says what is missing)."""


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
    probe_ = clean_probe((entry.meta or {}).get("probe"))
    # exactly these keys: nothing else (never a key) rides along into the store
    entry.meta = dict(check.meta, probe=probe_) if probe_ else check.meta
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


def add(actor, name: str, base_url: str, model: str, api_key_env: str | None = None, probe_it: bool = True):
    """Register an endpoint model in the actor's workspace (audited as model.register, without any key), with
    the verdict of the scoring probe in its meta. Who may reach the URL is checked before the probe's request;
    a probe that fails (server down, key not set) registers the endpoint as one that does not score, saying why."""
    from . import registry

    entry = make_entry(name, base_url, model, api_key_env)
    if probe_it:
        actor.require("write", "register models")
        registry.check_name(entry.name)
        check_entry(actor, entry)
        entry.meta = dict(entry.meta, probe=probe(entry))
    return registry.register(actor, entry)


def probe_again(actor, name: str) -> dict:
    """Probe a registered endpoint again and store the verdict (who registered it or an admin may)."""
    from . import access, audit, registry, store

    entry = registry.resolve(actor, name)
    if entry.source != SOURCE:
        raise EndpointError(f"{name} is not an OpenAI-compatible endpoint (its source is {entry.source}): only "
                            "endpoints are probed.")
    actor.require("write", "probe an endpoint")
    check_entry(actor, entry)  # the operator's rules may have changed since it was added
    where = ("name=? AND workspace=?", (entry.name, entry.workspace))
    # who may change it is asked before the probe: no one else makes the server send its key to the endpoint
    if not access.scope(actor).update("models", {"name": entry.name}, *where):
        raise access.PermissionDenied(f"{actor.user} may not change {name}: only who registered it or an admin can.")
    verdict = probe(entry)
    access.scope(actor).update("models", {"meta": store.to_json(dict(entry.meta, probe=verdict))}, *where)
    audit.record(actor, "model.probe", entry.name, {"scores": verdict["scores"]})
    return verdict


def load(entry, head: str | None = None):
    """The loaded form of an endpoint entry: nothing is contacted until it generates or scores."""
    from .registry import LoadedModel

    if head not in (None, "causal-lm"):
        raise EndpointError(f"{entry.name} is an OpenAI-compatible endpoint: it opens only as causal-lm (it "
                            f"returns generated text), not as {head}.")
    caps = capabilities.Capabilities("causal-lm", capabilities.endpoint_provides(entry), max_context=0, endpoint=True)
    return LoadedModel(entry, EndpointModel(entry), None, "endpoint", "-", caps, 0.0)


# the registry opens an endpoint entry with this (llm_lab/loaders.py): nothing loaded, nothing cached
loaders.register(loaders.Loader("endpoint", opens=lambda entry: entry.source == SOURCE, open=load,
                                check_entry=check_entry, order=10))


# ---------------------------------------------------------------- the scoring probe
PROBE_TEXT = "The quick brown fox jumps over the lazy dog. It was a bright cold day in April."
PROBE_KEYS = {"scores": bool, "reason": str, "checked_at": float, "tokens": int, "top_logprobs": bool,
              "failed": bool}  # failed: the probe got no answer to judge (server down, key refused)


def probe_timeout() -> float:
    """The probe waits less than a generation: a registration should not hang on a server that is down."""
    return min(timeout_s(), 30.0)


def clean_probe(value) -> dict | None:
    """A stored verdict with only its known keys and types (None: there is none)."""
    if not isinstance(value, dict) or not isinstance(value.get("scores"), bool):
        return None
    out = {}
    for key, kind in PROBE_KEYS.items():
        item = value.get(key)
        if isinstance(item, kind) or (kind is float and isinstance(item, int) and not isinstance(item, bool)):
            out[key] = kind(item)[:500] if kind is str else kind(item)
    return out


def verdict(scores: bool, reason: str, **more) -> dict:
    return dict(scores=scores, reason=reason, checked_at=time.time(), **more)


def probe(entry) -> dict:
    """Does the server behind `entry` return prompt log-probabilities with echo? The verdict, with its reason."""
    model = EndpointModel(entry)
    try:
        payload = model.post_json(model.url, model.score_body(PROBE_TEXT), probe_timeout())
        tokens = echoed(payload, PROBE_TEXT)
        covers(tokens, payload, PROBE_TEXT)
        plausible(tokens)
    except EndpointError as exc:
        reason = str(exc).rstrip(".?! ")
        if isinstance(exc, NoLogprobs):
            return verdict(False, reason)
        return verdict(False, f"the probe's request failed: {reason}", failed=True)
    scored = [t for t in tokens if t.logprob is not None]
    top = all(t.top1 is not None for t in scored)
    return verdict(True, f"it echoed the {len(tokens)}-token probe text with a log-probability for "
                         f"{len(scored)} of its tokens" + ("" if top else " (no top_logprobs: greedy is not known)"),
                   tokens=len(tokens), top_logprobs=top)


@dataclass
class Token:
    text: str | None            # as the server spells it (a piece of a character may read "\ufffd")
    logprob: float | None       # None: the server gives none (the first token: nothing precedes it)
    top1: bool | None           # whether it was the server's top choice (None: no top_logprobs)


def _choice(payload) -> dict:
    choices = payload.get("choices") if isinstance(payload, dict) else None
    if not choices or not isinstance(choices[0], dict):
        raise NoLogprobs("its answer has no choices")
    return choices[0]


def echoed(payload: dict, prompt: str) -> list[Token]:
    """The prompt's tokens with their log-probabilities out of an echo answer (OpenAI's legacy completions
    `logprobs`: tokens, token_logprobs, top_logprobs). The prompt's tokens are all but the generated ones at the
    end (usage.completion_tokens; else one, as lm-eval counts: max_tokens is 1). NoLogprobs says what is wrong."""
    choice = _choice(payload)
    if not str(choice.get("text") or "").startswith(prompt):
        raise NoLogprobs("it did not echo the prompt (the answer's text does not start with it), so `echo` is "
                         "ignored")
    lp = choice.get("logprobs")
    if not isinstance(lp, dict) or not isinstance(lp.get("token_logprobs"), list) or not lp["token_logprobs"]:
        raise NoLogprobs("its answer carries no logprobs (the server drops the `logprobs` field)")
    values = lp["token_logprobs"]
    made = (payload.get("usage") or {}).get("completion_tokens")
    made = made if isinstance(made, int) and 0 <= made <= len(values) else 1
    n = len(values) - made
    if n < 1:
        raise NoLogprobs(f"it gave {len(values)} log-probabilities, none of them the prompt's")
    tokens = lp.get("tokens") if isinstance(lp.get("tokens"), list) and len(lp["tokens"]) == len(values) else None
    top = lp.get("top_logprobs") if isinstance(lp.get("top_logprobs"), list) and len(lp["top_logprobs"]) == len(values) \
        else None
    out = []
    for i in range(n):
        value = values[i]
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)
                                  or not math.isfinite(value)):
            raise NoLogprobs(f"the log-probability of prompt token {i + 1} is {value!r}, not a finite number")
        best = top[i] if top and isinstance(top[i], dict) and top[i] else None
        top1 = None if best is None or value is None else bool(value >= max(map(float, best.values())) - 1e-6)
        text = tokens[i] if tokens and isinstance(tokens[i], str) else None
        out.append(Token(text, None if value is None else float(value), top1))
    return out


def covers(tokens: list[Token], payload: dict, prompt: str) -> None:
    """The probe's check that these are the prompt's tokens: they spell it out (after at most two tokens the
    server put in front, such as BOS), or their text_offsets climb from 0 to within it."""
    texts = [t.text for t in tokens]
    if all(isinstance(t, str) for t in texts) and any("".join(texts[k:]) == prompt for k in range(min(3, len(texts)))):
        return
    offsets = (_choice(payload).get("logprobs") or {}).get("text_offset")
    if isinstance(offsets, list) and len(offsets) > len(tokens) and offsets[0] == 0 \
            and all(isinstance(o, int) for o in offsets) and all(a <= b for a, b in pairwise(offsets)) \
            and offsets[len(tokens) - 1] < len(prompt) <= offsets[len(tokens)]:
        return
    raise NoLogprobs(f"its {len(tokens)} logprobs tokens do not spell out the prompt, nor do their text_offsets "
                     "cover it: they are not the prompt's")


def plausible(tokens: list[Token]) -> None:
    """Refuse log-probabilities that cannot be real: null past the first tokens, above 0, or all 0 (servers
    that fill the field with zeros)."""
    values = [t.logprob for t in tokens]
    given = [v for v in values if v is not None]
    if len(given) < len(values) - 1 or (values and values[-1] is None):
        raise NoLogprobs(f"it gave log-probabilities for only {len(given)} of the prompt's {len(values)} tokens "
                         "(only the first may be null)")
    if len(given) < 2:
        raise NoLogprobs("it gave fewer than two prompt log-probabilities")
    if any(v > 1e-4 for v in given):
        raise NoLogprobs(f"its prompt log-probabilities include {max(given):g}, above 0: they are not "
                         "log-probabilities")
    if all(abs(v) < 1e-9 for v in given):
        raise NoLogprobs("its prompt log-probabilities are all 0: the server fills the field without computing "
                         "them (lm-eval would score at chance)")


def span_scores(tokens: list[Token], first: int, text: str) -> tuple[list[float], bool, int, int]:
    """(log-probabilities, greedy, tokens left out, their characters) of the prompt's tokens from index `first`
    on. A token without a log-probability (a text's first) is left out and counted; its characters are those it
    spells at the text's start (none for a BOS the server put in front)."""
    chosen = tokens[first:]
    if first and not chosen:  # the continuation added no token of its own (empty, or merged into the context's
        return [], True, 0, 0  # last): log P = 0, greedy, as the local model and lm-eval's `hf` backend score it
    if not chosen:
        raise NoLogprobs("the text got no tokens")
    if first and any(t.logprob is None for t in chosen):
        raise NoLogprobs("a continuation token has no log-probability")
    logprobs = [t.logprob for t in chosen if t.logprob is not None]
    greedy = all(t.top1 for t in chosen if t.logprob is not None)
    left_out = [t for t in chosen if t.logprob is None]
    spelled = "".join(t.text or "" for t in left_out)
    chars = len(spelled) if spelled and "\ufffd" not in spelled and text.startswith(spelled) else 0
    return logprobs, bool(greedy), len(left_out), chars


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
    """A model behind an OpenAI-compatible /v1/completions and /v1/chat/completions. `inference.generate` /
    `inference.stream` call `generate_texts` / `stream_text` (the results are `generation.GenerationResult`s
    like a local model's); `inference.loglikelihood` / `loglikelihood_rolling` call `score_texts`."""

    def __init__(self, entry):
        self.entry = entry
        self.name = entry.name
        self.base_url = entry.location
        self.model = (entry.meta or {}).get("model", "")
        self.api_key_env = (entry.meta or {}).get("api_key_env")
        self.url = api_root(self.base_url) + "/completions"
        self.chat_url = api_root(self.base_url) + "/chat/completions"
        self._counted: dict[str, int] = {}     # context -> its token count on the server (score_one)
        self._counted_lock = threading.Lock()

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

    def body(self, prompt, settings_, stream: bool = False) -> dict:
        """The request for a prompt: a string to /v1/completions, a conversation (a list of messages) to
        /v1/chat/completions."""
        text = {"messages": list(prompt)} if isinstance(prompt, (list, tuple)) else {"prompt": prompt}
        body = {"model": self.model, **text, "max_tokens": int(settings_.max_new_tokens)}
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

    def url_for(self, prompt) -> str:
        return self.chat_url if isinstance(prompt, (list, tuple)) else self.url

    def score_body(self, text: str) -> dict:
        """What lm-evaluation-harness's completions client sends to score: the text echoed with the
        log-probability (and the top-1) of each of its tokens, one new token, greedy."""
        return {"model": self.model, "prompt": text, "max_tokens": 1, "temperature": 0.0, "echo": True,
                "logprobs": 1}

    def _fail(self, exc, url: str | None = None) -> EndpointError:
        """The message for a failed call: what happened, with the server's own words, and what to check."""
        import httpx

        where = f"{self.name} ({url or self.url})"
        if isinstance(exc, httpx.TimeoutException):
            return EndpointError(f"{where} did not answer within {timeout_s():g} s ({type(exc).__name__}). The "
                                 "server may be overloaded or the model still loading; LLM_LAB_ENDPOINT_TIMEOUT sets "
                                 "the wait.")
        if isinstance(exc, httpx.ConnectError):
            return EndpointError(f"Cannot connect to {where}: {self._scrub(str(exc)) or 'connection refused'}. Is the "
                                 "server running, and is the base URL right?")
        return EndpointError(f"The request to {where} failed: {self._scrub(str(exc))}")

    def _status_error(self, status: int, text: str, url: str | None = None) -> EndpointError:
        said = self._scrub(server_message(text)).rstrip().rstrip(".")
        where = f"{self.name} ({url or self.url})"
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

    def post_json(self, url: str, body: dict, timeout: float | None = None) -> dict:
        """POST `body` to `url`; the JSON answer, or the EndpointError saying what went wrong."""
        import httpx

        headers = self._headers()
        wait = timeout or timeout_s()
        try:
            response = client().post(url, json=body, headers=headers, timeout=httpx.Timeout(wait, connect=min(wait, 10.0)))
        except httpx.HTTPError as exc:
            raise self._fail(exc, url) from None
        if response.status_code != 200:
            raise self._status_error(response.status_code, response.text, url)
        try:
            payload = response.json()
        except ValueError:
            raise EndpointError(f"{self.name} ({url}) did not answer with JSON: "
                                f"{self._scrub(response.text[:200])!r}") from None
        if not isinstance(payload, dict):
            raise EndpointError(f"{self.name} ({url}) answered {self._scrub(json.dumps(payload)[:200])}, not an object")
        return payload

    def _post(self, prompt, settings_) -> tuple[dict, float]:
        t0 = time.perf_counter()
        payload = self.post_json(self.url_for(prompt), self.body(prompt, settings_))
        return payload, time.perf_counter() - t0

    # ------------------------------------------------------------ generation
    def generate_texts(self, prompts: list, settings_, progress=None) -> list:
        """One request per prompt (a string, or a conversation: a list of messages, sent to the chat endpoint), a
        few in flight at once (`concurrency()`); results in prompt order. Each result's latency is its own
        request's wall time."""
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
        text = choice.get("text") if "text" in choice else (choice.get("message") or {}).get("content")
        return self._finish(prompt, text or "", choice.get("finish_reason"), choice.get("stop_reason"),
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
        if isinstance(prompt, (list, tuple)):  # a conversation: its result shows the last user turn
            prompt = next((m["content"] for m in reversed(prompt) if m.get("role") == "user"), "")
        tokens = usage.get("completion_tokens")
        if tokens is None:
            tokens = counted or 0
            notes.append("The server reported no token counts" + (" (counted from its stream)." if counted else "."))
        return GenerationResult(prompt=prompt, text=text, new_tokens=int(tokens), latency_s=latency,
                                tokens_per_s=tokens / latency if latency > 0 else 0.0, mean_logprob=None,
                                truncated=False, stop_reason=reason, note=" ".join(n for n in notes if n),
                                prompt_tokens=int(usage.get("prompt_tokens") or 0), first_token_s=first_token_s)

    def stream_text(self, prompt, settings_):
        """Yield text pieces as the server sends them (server-sent events), then the GenerationResult (with the
        time to the first piece). A conversation streams from the chat endpoint."""
        import httpx

        headers = self._headers()
        t0 = time.perf_counter()
        first = None
        pieces, finish_reason, stop_reason, usage, chunks = [], None, None, {}, 0
        shown = 0
        try:
            url = self.url_for(prompt)
            with client().stream("POST", url, json=self.body(prompt, settings_, stream=True), headers=headers,
                                 timeout=httpx.Timeout(timeout_s(), connect=10.0)) as response:
                if response.status_code != 200:
                    raise self._status_error(response.status_code, response.read().decode("utf-8", "replace"), url)
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
                        raise EndpointError(f"{self.name} ({url}) failed while streaming: "
                                            f"{self._scrub(server_message(json.dumps(event)))}")
                    usage = event.get("usage") or usage
                    for choice in event.get("choices") or []:
                        piece = choice.get("text") or (choice.get("delta") or {}).get("content") or ""
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
            raise self._fail(exc, self.url_for(prompt)) from None
        latency = time.perf_counter() - t0
        yield self._finish(prompt, "".join(pieces), finish_reason, stop_reason, usage, latency, settings_, first,
                           counted=chunks)

    # ------------------------------------------------------------ scoring
    def echo(self, text: str) -> list[Token]:
        """The prompt tokens of `text` with their log-probabilities (one echo request)."""
        return echoed(self.post_json(self.url, self.score_body(text)), text)

    def context_tokens(self, context: str) -> int:
        """How many tokens the server makes of `context` alone (remembered: the options of a question share it)."""
        with self._counted_lock:
            if context in self._counted:
                return self._counted[context]
        n = len(self.echo(context))
        with self._counted_lock:
            self._counted[context] = n
            if len(self._counted) > 10_000:
                self._counted.pop(next(iter(self._counted)))
        return n

    def score_one(self, text: str, start: int) -> tuple[list[float], bool, int, int]:
        """(log-probabilities, greedy, tokens left out, their characters) of `text` from character `start` on:
        the text's tokens after those of `text[:start]` alone, as lm-eval splits a pair (the whole text, then
        the context's own token count), so the server's tokenizer decides and no character offsets are needed."""
        first = self.context_tokens(text[:start]) if start else 0
        return span_scores(self.echo(text), first, text)

    def score_texts(self, requests: list[tuple[str, int]], positions: list[int] | None = None,
                    on_done=None) -> list:
        """Per (text, start) request, `score_one`'s answer; a few in flight at once (`concurrency()`), each one
        request. `positions` scores only those (the others stay None); `on_done(position, answer)` hears of each
        as it comes (in this thread). A server that stops returning log-probabilities fails the run, saying so."""
        self._key()  # a missing key is said once, before any request
        todo = list(range(len(requests))) if positions is None else list(positions)
        out = [None] * len(requests)
        if not todo:
            return out
        with ThreadPoolExecutor(max_workers=min(concurrency(), len(todo)), thread_name_prefix="llm-lab-score") as pool:
            futures = {pool.submit(self.score_one, *requests[p]): p for p in todo}
            try:
                for future in as_completed(futures):
                    p = futures[future]
                    try:
                        out[p] = future.result()
                    except NoLogprobs as exc:
                        raise NoLogprobs(
                            f"{self.name} ({self.url}) stopped returning prompt log-probabilities with echo (request "
                            f"{p + 1} of {len(requests)}): {str(exc).rstrip('.')}. Its probe found them: the server "
                            f"may have been replaced or restarted with other settings. Probe it again (`python -m "
                            f"llm_lab models probe {self.name}`)") from None
                    if on_done:
                        on_done(p, out[p])
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        return out

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
