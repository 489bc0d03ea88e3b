"""OpenAI's wire format: request fields checked as OpenAI checks them, errors in its shape, responses and
stream chunks as its clients parse them.

An error body is `{"error": {"message", "type", "param", "code"}}`. Status codes: 400 malformed JSON, a field
of the wrong type or out of range, a prompt that does not fit the context (code `context_length_exceeded`,
naming the limit); 401 no or a wrong API key; 404 an unknown path or model; 413 a body over the limit; 422 a
field OpenAI accepts that this server does not implement (n > 1, logprobs, echo, tools, penalties, token-id
prompts). Fields OpenAI has that change nothing here (user, metadata, …) are accepted and ignored.
"""
import secrets
import time
from dataclasses import dataclass, field


class ApiError(Exception):
    """An error answered as OpenAI does: `status` and `{"error": {...}}`."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, code=code, param=param)


def unsupported(message: str, param: str | None = None) -> ApiError:
    return ApiError(422, message, code="unsupported_parameter", param=param)


# ---------------------------------------------------------------- field checks
def _number(body: dict, name: str, default: float, low: float, high: float, low_open: bool = False) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad(f"'{name}' must be a number, not {type(value).__name__}.", name, "invalid_type")
    if value < low or value > high or (low_open and value == low):
        bounds = f"{'above' if low_open else 'at least'} {low:g} and at most {high:g}"
        raise bad(f"'{name}' must be {bounds}; got {value!r}.", name, "invalid_value")
    return float(value)


def _integer(body: dict, name: str, low: int | None = None):
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(f"'{name}' must be an integer, not {type(value).__name__}.", name, "invalid_type")
    if low is not None and value < low:
        raise bad(f"'{name}' must be at least {low}; got {value}.", name, "invalid_value")
    return value


def _stops(body: dict) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise bad("'stop' must be a string or a list of strings.", "stop", "invalid_type")
    if len(stop) > 4:
        raise bad(f"'stop' takes at most 4 sequences; got {len(stop)}.", "stop", "invalid_value")
    return [s for s in stop if s]


def _refuse_unsupported(body: dict, chat: bool) -> None:
    n = _integer(body, "n", low=1)
    if n is not None and n > 1:
        raise unsupported(f"n={n}: this server returns one choice per prompt (n=1). Send the request {n} times "
                          "with sampling (temperature > 0) for several answers.", "n")
    best_of = _integer(body, "best_of", low=1)
    if best_of is not None and best_of > 1:
        raise unsupported("best_of > 1 is not supported: this server returns one choice per prompt.", "best_of")
    logprobs = body.get("logprobs")
    if logprobs not in (None, False) and not (not chat and logprobs == 0):
        raise unsupported("logprobs are not supported by this server.", "logprobs")
    if body.get("top_logprobs") not in (None, 0):
        raise unsupported("top_logprobs are not supported by this server.", "top_logprobs")
    if body.get("echo"):
        raise unsupported("echo is not supported by this server.", "echo")
    if body.get("suffix"):
        raise unsupported("suffix (insertion) is not supported by this server.", "suffix")
    for name in ("presence_penalty", "frequency_penalty"):
        value = body.get(name)
        if value not in (None, 0, 0.0):
            raise unsupported(f"{name} is not supported by this server (leave it out or 0).", name)
    if body.get("logit_bias"):
        raise unsupported("logit_bias is not supported by this server.", "logit_bias")
    for name in ("tools", "functions"):
        if body.get(name):
            raise unsupported(f"{name} (function calling) is not supported by this server.", name)
    fmt = body.get("response_format")
    if fmt not in (None, {}) and not (isinstance(fmt, dict) and fmt.get("type") == "text"):
        raise unsupported("response_format other than text is not supported by this server.", "response_format")


@dataclass
class Sampling:
    """What one request asks of generation. temperature 0 means greedy."""
    max_tokens: int | None
    temperature: float
    top_p: float
    stop: list[str]
    seed: int | None
    stream: bool
    include_usage: bool
    repetition_penalty: float = 1.0   # not OpenAI's: vLLM's extra field (1 = none), as Compare's setting


    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def sampling(body: dict, chat: bool) -> Sampling:
    """The generation fields of a completions or chat request, checked (400 / 422 as the module says)."""
    _refuse_unsupported(body, chat)
    max_tokens = _integer(body, "max_completion_tokens", low=1) if chat else None
    if max_tokens is None:
        max_tokens = _integer(body, "max_tokens", low=1)
    if max_tokens is None and not chat:
        max_tokens = 16  # OpenAI's default for completions; chat's default is the room left in the context
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise bad("'stream' must be true or false.", "stream", "invalid_type")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise bad("'stream_options' must be an object.", "stream_options", "invalid_type")
    seed = _integer(body, "seed")
    return Sampling(max_tokens=max_tokens, temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
                    top_p=_number(body, "top_p", 1.0, 0.0, 1.0, low_open=True), stop=_stops(body), seed=seed,
                    stream=stream, include_usage=bool(options.get("include_usage")),
                    repetition_penalty=_number(body, "repetition_penalty", 1.0, 0.0, 10.0, low_open=True))


def prompts(body: dict) -> list[str]:
    """The prompts of a completions request: a string, or a list of strings (one choice each)."""
    prompt = body.get("prompt")
    if prompt is None:
        raise bad("'prompt' is required.", "prompt", "missing_required_parameter")
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return prompt
    if isinstance(prompt, list) and prompt and all(isinstance(p, (int, list)) for p in prompt):
        raise unsupported("token-id prompts are not supported by this server: send the prompt as text.", "prompt")
    raise bad("'prompt' must be a string or a non-empty list of strings.", "prompt", "invalid_type")


ROLES = ("system", "developer", "user", "assistant", "tool")


def messages(body: dict) -> list[dict]:
    """Chat messages as [{"role", "content": str}]; content parts of type text are joined."""
    given = body.get("messages")
    if not isinstance(given, list) or not given:
        raise bad("'messages' must be a non-empty list of {role, content} objects.", "messages",
                  "missing_required_parameter" if given is None else "invalid_type")
    out = []
    for i, message in enumerate(given):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise bad(f"{where} must be an object with 'role' and 'content'.", where, "invalid_type")
        role = message.get("role")
        if role not in ROLES:
            raise bad(f"{where}.role must be one of {', '.join(ROLES)}; got {role!r}.", f"{where}.role",
                      "invalid_value")
        content = message.get("content")
        if content is None and role == "assistant":
            content = ""
        if isinstance(content, list):
            parts = []
            for j, part in enumerate(content):
                if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise unsupported(f"{where}.content[{j}]: only text parts ({{'type': 'text', 'text': …}}) are "
                                      "supported by this server.", f"{where}.content")
                parts.append(part["text"])
            content = "".join(parts)
        if not isinstance(content, str):
            raise bad(f"{where}.content must be a string or a list of text parts.", f"{where}.content",
                      "invalid_type")
        out.append({"role": role, "content": content})
    return out


def texts(body: dict) -> list[str]:
    """The `input` of an embeddings or classify request: a string or a non-empty list of non-empty strings."""
    given = body.get("input")
    if given is None:
        raise bad("'input' is required.", "input", "missing_required_parameter")
    if isinstance(given, str):
        given = [given]
    if isinstance(given, list) and given and all(isinstance(t, (int, list)) for t in given):
        raise unsupported("token-id inputs are not supported by this server: send text.", "input")
    if not isinstance(given, list) or not given or not all(isinstance(t, str) for t in given):
        raise bad("'input' must be a string or a non-empty list of strings.", "input", "invalid_type")
    if len(given) > 2048:
        raise bad(f"'input' takes at most 2048 texts; got {len(given)}.", "input", "invalid_value")
    empty = [i for i, t in enumerate(given) if not t.strip()]
    if empty:
        raise bad(f"'input' {empty[0]} is empty: every input needs some text.", "input", "invalid_value")
    return given


def context_error(limit: int, prompt_tokens: int, completion_tokens: int, param: str) -> ApiError:
    return bad(f"This model's maximum context length is {limit} tokens. However, you requested "
               f"{prompt_tokens + completion_tokens} tokens ({prompt_tokens} in the prompt, {completion_tokens} for "
               "the completion). Please reduce the prompt or max_tokens.", param, "context_length_exceeded")


def input_too_long(limit: int, index: int, tokens: int) -> ApiError:
    return bad(f"This model's maximum context length is {limit} tokens, however input {index} has {tokens} tokens. "
               "Please shorten it.", "input", "context_length_exceeded")


# ---------------------------------------------------------------- responses
def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def finish_reason(stop_reason: str) -> str:
    """OpenAI's finish_reason of a generation.GenerationResult's stop_reason."""
    return "stop" if stop_reason in ("eos", "stop_string") else "length"


def usage(prompt_tokens: int, completion_tokens: int = 0) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


@dataclass
class Envelope:
    """What every response and chunk of one request shares."""
    model: str
    object: str
    id: str
    created: int = field(default_factory=lambda: int(time.time()))

    def wrap(self, choices: list, **extra) -> dict:
        return {"id": self.id, "object": self.object, "created": self.created, "model": self.model,
                "system_fingerprint": None, "choices": choices, **extra}


def completion_choice(index: int, text: str, reason: str | None) -> dict:
    return {"index": index, "text": text, "logprobs": None, "finish_reason": reason}


def chat_choice(index: int, text: str, reason: str | None) -> dict:
    return {"index": index, "message": {"role": "assistant", "content": text, "refusal": None},
            "logprobs": None, "finish_reason": reason}


def chat_delta(index: int, delta: dict, reason: str | None) -> dict:
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": reason}
