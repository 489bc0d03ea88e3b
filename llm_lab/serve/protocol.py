"""OpenAI's wire format: request fields checked as OpenAI checks them, errors in its shape, responses and
stream chunks as its clients parse them.

An error body is `{"error": {"message", "type", "param", "code"}}`. Status codes: 400 malformed JSON, an unknown
field ("Unrecognized request argument supplied: X", as OpenAI answers), a field of the wrong type or out of range,
a field this server does not implement (code `unsupported_parameter`, with what to do instead), a request over
the server's limits (`serve --max-prompts`, `--max-request-tokens`: code `request_too_large`), a prompt that does
not fit the context (`context_length_exceeded`); 401 no or a wrong API key; 404 an unknown path or model; 413 a
body over the size limit. Every 400 names the field in `param`, so the openai client raises `BadRequestError`
with `.param` set.

Every field of OpenAI's request schemas is honoured or refused by name; none is ignored:

| field | /v1/completions | /v1/chat/completions |
|---|---|---|
| model, prompt / messages, max_tokens (max_completion_tokens), temperature, top_p, stop (<= 4), seed, stream, stream_options.include_usage | honoured | honoured |
| n (<= 128), best_of (<= 20, >= n; ranked by summed log-probability, as vLLM) | honoured | n honoured |
| logprobs (completions 0..5: legacy {tokens, token_logprobs, top_logprobs, text_offset}; chat true + top_logprobs 0..20) | honoured, also streamed | honoured, also streamed |
| echo (the prompt first, its first token's logprob null; `max_tokens: 0` scores only), token-id prompts | honoured | - |
| presence_penalty, frequency_penalty (-2..2, over the generated tokens, as OpenAI defines them), logit_bias (-100..100 per token id) | honoured | honoured |
| response_format (text, json_object, json_schema: constrained decoding, `inference/structured.py`) | honoured (vLLM's extension) | honoured |
| tools + tool_choice "required" or {"type": "function", "function": {"name"}} (one call, by constrained decoding), tool_choice "none" | - | honoured |
| user, safety_identifier, prompt_cache_key (identifiers), metadata (<= 16 string pairs), store: false, service_tier: auto/default, modalities: ["text"], parallel_tool_calls (the answer is one call) | accepted | accepted |
| suffix | refused | - |
| tool_choice "auto" (the default with tools), tool_choice without tools, stop with a constraint, functions, function_call, audio, prediction, reasoning_effort, verbosity, web_search_options, store: true, other service tiers | - | refused |
| repetition_penalty (vLLM's extra field; 1 = none) | honoured | honoured |

Log-probabilities are the model's own (log-softmax of its raw logits), before temperature, top-p, penalties and
logit_bias, as vLLM reports them. Tokens are shown as their decoded text; `text_offset` is each token's offset
in the choice's `text` (the prompt included with echo); chat `bytes` are that text's UTF-8 bytes.
"""
import codecs
import json
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
    """A field OpenAI has that this server does not implement: 400, as OpenAI answers an unsupported one."""
    return ApiError(400, message, code="unsupported_parameter", param=param)


# ---------------------------------------------------------------- the fields
COMPLETION_FIELDS = ("model", "prompt", "best_of", "echo", "frequency_penalty", "logit_bias", "logprobs",
                     "max_tokens", "n", "presence_penalty", "seed", "stop", "stream", "stream_options", "suffix",
                     "temperature", "top_p", "user")
CHAT_FIELDS = ("messages", "model", "frequency_penalty", "function_call", "functions", "logit_bias", "logprobs",
               "top_logprobs", "max_completion_tokens", "max_tokens", "metadata", "modalities", "audio", "n",
               "parallel_tool_calls", "prediction", "presence_penalty", "prompt_cache_key", "reasoning_effort",
               "response_format", "safety_identifier", "seed", "service_tier", "stop", "store", "stream",
               "stream_options", "temperature", "tool_choice", "tools", "top_p", "user", "verbosity",
               "web_search_options")
EXTRA_FIELDS = ("repetition_penalty",)  # vLLM's extra sampling field, documented in the README
COMPLETION_EXTRA = ("response_format",)  # vLLM's extension of completions: the same constrained decoding as chat
MAX_N, MAX_BEST_OF, MAX_LOGPROBS, MAX_TOP_LOGPROBS = 128, 20, 5, 20

# chat fields this server does not implement: what a caller should do instead
_CHAT_REFUSED = {
    "functions": "function calling is not supported by this server: describe the function in a message and ask "
                 "for its arguments as text.",
    "function_call": "function calling is not supported by this server: leave function_call out.",
    "audio": "audio output is not supported by this server: it answers text only; leave audio out.",
    "prediction": "predicted outputs are not supported by this server: leave prediction out.",
    "reasoning_effort": "this model has no reasoning-effort setting: leave reasoning_effort out.",
    "verbosity": "this server has no verbosity setting: ask for a shorter or longer answer in the message, or set "
                 "max_completion_tokens.",
    "web_search_options": "this server cannot search the web: leave web_search_options out.",
}


def check_fields(body: dict, chat: bool) -> None:
    """400 for the first field OpenAI's schema does not have (and this server does not document)."""
    known = set(CHAT_FIELDS if chat else COMPLETION_FIELDS + COMPLETION_EXTRA) | set(EXTRA_FIELDS)
    for name in body:
        if name not in known:
            raise bad(f"Unrecognized request argument supplied: {name}", name, "unknown_parameter")


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


def _integer(body: dict, name: str, low: int | None = None, high: int | None = None):
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(f"'{name}' must be an integer, not {type(value).__name__}.", name, "invalid_type")
    if low is not None and value < low:
        raise bad(f"'{name}' must be at least {low}; got {value}.", name, "invalid_value")
    if high is not None and value > high:
        raise bad(f"'{name}' must be at most {high}; got {value}.", name, "invalid_value")
    return value


def _boolean(body: dict, name: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad(f"'{name}' must be true or false.", name, "invalid_type")
    return value


def _string(body: dict, name: str) -> None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise bad(f"'{name}' must be a string.", name, "invalid_type")


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


def _logit_bias(body: dict, vocab: int) -> dict[int, float]:
    given = body.get("logit_bias")
    if given is None:
        return {}
    if not isinstance(given, dict):
        raise bad("'logit_bias' must be an object mapping token ids to a bias from -100 to 100.", "logit_bias",
                  "invalid_type")
    out = {}
    for key, value in given.items():
        # isdecimal, not isdigit: "²" is a digit int() cannot read
        token = int(key) if isinstance(key, str) and key.strip().isdecimal() else None
        if token is None or token >= vocab:
            raise bad(f"'logit_bias' key {key!r} is not a token id of this model (0 to {vocab - 1}).",
                      "logit_bias", "invalid_value")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not -100 <= value <= 100:
            raise bad(f"'logit_bias' value for token {key} must be a number from -100 to 100; got {value!r}.",
                      "logit_bias", "invalid_value")
        if value:
            out[token] = float(value)
    return out


def _accepted_identifiers(body: dict) -> None:
    """Fields that identify the caller or tag the request: checked, and asking nothing of generation."""
    for name in ("user", "safety_identifier", "prompt_cache_key"):
        _string(body, name)
    metadata = body.get("metadata")
    if metadata is not None and (not isinstance(metadata, dict) or len(metadata) > 16 or not all(
            isinstance(k, str) and isinstance(v, str) and len(k) <= 64 and len(v) <= 512 for k, v in metadata.items())):
        raise bad("'metadata' must be an object of at most 16 string keys (<= 64 characters) and string values "
                  "(<= 512 characters).", "metadata", "invalid_value")


def _refuse_chat_extras(body: dict) -> None:
    for name, why in _CHAT_REFUSED.items():
        if body.get(name) is not None:
            raise unsupported(f"'{name}': {why}", name)
    if body.get("store") not in (None, False):
        raise unsupported("'store': this server does not store completions; leave store out or false.", "store")
    if body.get("service_tier") not in (None, "auto", "default"):
        raise unsupported(f"'service_tier' {body['service_tier']!r}: this server has one tier; send 'auto' or "
                          "'default' or leave it out.", "service_tier")
    modalities = body.get("modalities")
    if modalities is not None and modalities != ["text"]:
        raise unsupported("'modalities': this server answers text only; send [\"text\"] or leave it out.",
                          "modalities")
    if body.get("tools") is None and body.get("tool_choice") not in (None, "none"):
        raise bad("'tool_choice' is only allowed when 'tools' are given: send the tools to choose from, or leave "
                  "tool_choice out.", "tool_choice", "invalid_value")
    if body.get("parallel_tool_calls") is not None and not isinstance(body["parallel_tool_calls"], bool):
        raise bad("'parallel_tool_calls' must be true or false.", "parallel_tool_calls", "invalid_type")


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
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict = field(default_factory=dict)   # token id -> bias added to its logit
    logprobs: int | None = None       # alternatives per token (0: the chosen token's only); None: not asked
    echo: bool = False
    n: int = 1
    best_of: int = 1
    constraint: object = None         # a structured.Constraint (response_format / tool call); None: free text
    named_tool: bool = False          # tool_choice named one function (OpenAI then answers finish_reason "stop")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def processed(self) -> bool:
        """Logits are changed before choosing (penalties, bias): such a request runs alone in the batcher."""
        return (self.repetition_penalty != 1 or bool(self.presence_penalty) or bool(self.frequency_penalty)
                or bool(self.logit_bias))


def sampling(body: dict, chat: bool, vocab: int) -> Sampling:
    """The generation fields of a completions or chat request, checked (400 naming the field)."""
    check_fields(body, chat)
    _accepted_identifiers(body)
    if chat:
        _refuse_chat_extras(body)
    elif body.get("suffix") not in (None, ""):
        raise unsupported("'suffix' (text insertion) is not supported by this server: put the text after the gap "
                          "in the prompt and ask for what comes between, or leave suffix out.", "suffix")
    echo = False if chat else _boolean(body, "echo")
    max_tokens = _integer(body, "max_completion_tokens", low=1) if chat else None
    legacy = _integer(body, "max_tokens", low=0 if echo else 1)
    if max_tokens is not None and legacy is not None and legacy != max_tokens:
        raise bad(f"'max_tokens' ({legacy}) and 'max_completion_tokens' ({max_tokens}) disagree: send one of them "
                  "(max_completion_tokens is the current name).", "max_tokens", "invalid_value")
    if max_tokens is None:
        max_tokens = legacy
    if max_tokens is None and not chat:
        max_tokens = 16  # OpenAI's default for completions; chat's default is the room left in the context
    stream = _boolean(body, "stream")
    options = body.get("stream_options")
    if options is not None:
        if not stream:
            raise bad("'stream_options' is only allowed when 'stream' is true.", "stream_options", "invalid_value")
        if not isinstance(options, dict):
            raise bad("'stream_options' must be an object.", "stream_options", "invalid_type")
        for key in options:
            if key not in ("include_usage", "include_obfuscation"):
                raise bad(f"Unrecognized stream option: {key}", f"stream_options.{key}", "unknown_parameter")
        if options.get("include_obfuscation"):  # OpenAI's padding against side channels: none is sent here
            raise unsupported("stream_options.include_obfuscation is not supported by this server (its chunks carry "
                              "no obfuscation padding): leave it out or false.", "stream_options.include_obfuscation")
    options = options or {}
    n = _integer(body, "n", low=1, high=MAX_N) or 1
    best_of = n if chat else (_integer(body, "best_of", low=1, high=MAX_BEST_OF) or n)
    if best_of < n:
        raise bad(f"'best_of' ({best_of}) must be at least 'n' ({n}).", "best_of", "invalid_value")
    if stream and (n > 1 or best_of > 1):
        name = "n" if n > 1 else "best_of"
        raise unsupported(f"'{name}' > 1 cannot be streamed by this server: send the request without stream, or "
                          f"stream {n if name == 'n' else 1} requests with different seeds.", name)
    return Sampling(max_tokens=max_tokens, temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
                    top_p=_number(body, "top_p", 1.0, 0.0, 1.0, low_open=True), stop=_stops(body),
                    seed=_integer(body, "seed", low=-2 ** 63, high=2 ** 63 - 1), stream=stream, include_usage=bool(options.get("include_usage")),
                    repetition_penalty=_number(body, "repetition_penalty", 1.0, 0.0, 10.0, low_open=True),
                    presence_penalty=_number(body, "presence_penalty", 0.0, -2.0, 2.0),
                    frequency_penalty=_number(body, "frequency_penalty", 0.0, -2.0, 2.0),
                    logit_bias=_logit_bias(body, vocab), logprobs=_logprobs(body, chat), echo=echo, n=n,
                    best_of=best_of)


def _logprobs(body: dict, chat: bool) -> int | None:
    if not chat:
        return _integer(body, "logprobs", low=0, high=MAX_LOGPROBS)
    wanted = _boolean(body, "logprobs")
    top = _integer(body, "top_logprobs", low=0, high=MAX_TOP_LOGPROBS)
    if top is not None and not wanted:
        raise bad("'top_logprobs' needs 'logprobs': true.", "top_logprobs", "invalid_value")
    return (top or 0) if wanted else None


def prompts(body: dict, vocab: int) -> list:
    """The prompts of a completions request, one choice (or n) each: a string, a list of strings, a list of token
    ids, or a list of lists of token ids (ids checked against the vocabulary)."""
    prompt = body.get("prompt")
    if prompt is None:
        raise bad("'prompt' is required.", "prompt", "missing_required_parameter")
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return prompt
    if isinstance(prompt, list) and prompt and all(_is_id(t) for t in prompt):
        prompt = [prompt]
    if isinstance(prompt, list) and prompt and all(isinstance(p, list) and p and all(_is_id(t) for t in p)
                                                   for p in prompt):
        for i, ids in enumerate(prompt):
            wrong = [t for t in ids if not 0 <= t < vocab]
            if wrong:
                raise bad(f"'prompt' {i} has token id {wrong[0]}, outside this model's vocabulary (0 to "
                          f"{vocab - 1}).", "prompt", "invalid_value")
        return [list(ids) for ids in prompt]
    raise bad("'prompt' must be a string, a non-empty list of strings, a non-empty list of token ids, or a list of "
              "non-empty lists of token ids.", "prompt", "invalid_type")


def _is_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def over_limit(what: str, given: int, limit: int, flag: str, param: str) -> ApiError:
    """A request over one of the server's limits: 400 naming the field, the limit and the flag that raises it."""
    return bad(f"This request has {given} {what}; this server takes at most {limit} per request (the server's "
               f"{flag} option raises it). Split the request.", param, "request_too_large")


ROLES = ("system", "developer", "user", "assistant", "tool")


# OpenAI's message fields: tool_call_id pairs a tool result with the one call this server makes (nothing to
# match against), refusal/annotations/audio come back from an assistant turn and are not sent to the model
MESSAGE_FIELDS = {"role", "content", "name", "tool_calls", "tool_call_id", "refusal", "annotations", "audio",
                  "function_call"}


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
        unknown = sorted(set(message) - MESSAGE_FIELDS)
        if unknown:
            raise bad(f"Unrecognized field in {where}: {unknown[0]}", f"{where}.{unknown[0]}", "unknown_parameter")
        for field_ in ("function_call", "audio"):  # an earlier turn's deprecated call or audio: nothing to read
            if message.get(field_) is not None:
                raise unsupported(f"{where}.{field_} is not supported by this server: send earlier calls as "
                                  "tool_calls and earlier answers as text content.", f"{where}.{field_}")
        if message.get("name") not in (None, ""):  # no chat template here reads it: it would be dropped unsaid
            raise unsupported(f"{where}.name is not supported by this server (the model's chat template has no place "
                              "for a participant's name): put the name in the content.", f"{where}.name")
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
        if role == "assistant" and message.get("tool_calls"):
            # an earlier call goes back to the model as the JSON it wrote (the format the grammar makes it write)
            content = "\n".join([content] * bool(content) + _calls_text(message["tool_calls"], where))
        out.append({"role": role, "content": content})
    return out


def _calls_text(calls, where: str) -> list[str]:
    """An assistant message's tool_calls as `{"name": ..., "arguments": {...}}` lines."""
    param = f"{where}.tool_calls"
    if not isinstance(calls, list):
        raise bad(f"{param} must be a list of tool calls.", param, "invalid_type")
    lines = []
    for j, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        try:
            arguments = json.loads(function["arguments"])
            if not isinstance(function["name"], str) or not isinstance(arguments, dict):
                raise TypeError
        except (TypeError, KeyError, ValueError, RecursionError):
            raise bad(f"{param}[{j}] must be {{\"type\": \"function\", \"function\": {{\"name\": ..., \"arguments\": "
                      "a JSON object as text}}}.", param, "invalid_value") from None
        lines.append(json.dumps({"name": function["name"], "arguments": arguments}, ensure_ascii=False))
    return lines


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


def completion_choice(index: int, text: str, reason: str | None, logprobs: dict | None = None) -> dict:
    return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": reason}


def chat_choice(index: int, text: str, reason: str | None, logprobs: dict | None = None,
                tool_calls: list | None = None) -> dict:
    message = {"role": "assistant", "content": None if tool_calls else text, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"index": index, "message": message, "logprobs": logprobs, "finish_reason": reason}


def tool_call(name: str, arguments: str) -> dict:
    """One entry of a message's `tool_calls` (`arguments`: the JSON text of the arguments)."""
    return {"id": "call_" + secrets.token_hex(12), "type": "function",
            "function": {"name": name, "arguments": arguments}}


def chat_delta(index: int, delta: dict, reason: str | None, logprobs: dict | None = None) -> dict:
    return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": reason}


# ---------------------------------------------------------------- log-probabilities
@dataclass
class TokenInfo:
    """One token of a choice: its text, log-probability (None: the first prompt token) and alternatives.
    `raw`: the bytes the token adds to the choice's text (b"" for a special token the text leaves out; a piece
    of a character split over tokens is its own bytes, which its text shows as U+FFFD); None: its text's."""
    text: str
    logprob: float | None
    top: list[tuple]               # (token text, log-probability[, raw bytes]), most likely first
    raw: bytes | None = None

    @property
    def contributed(self) -> bytes:
        return self.text.encode("utf-8") if self.raw is None else self.raw


def completion_logprobs(tokens: list[TokenInfo], offset: int = 0) -> dict:
    """OpenAI's legacy shape; `offset`: where the first token starts in the choice's text (a stream's later
    chunks go on from the text sent before). A token's text_offset is the number of characters of the text
    before it: counted from the bytes the tokens before it add, decoded as the tokenizer decodes them (a
    special token the text leaves out adds none; an invalid byte is one U+FFFD; a token that starts inside a
    character split over tokens starts where that character starts: the decoder holds the unfinished piece)."""
    offsets, decoder = [], codecs.getincrementaldecoder("utf-8")("replace")
    for t in tokens:
        offsets.append(offset)
        offset += len(decoder.decode(t.contributed))
    return {"tokens": [t.text for t in tokens], "token_logprobs": [t.logprob for t in tokens],
            "top_logprobs": [None if t.logprob is None else _top_dict(t.top) for t in tokens],
            "text_offset": offsets}


def _top_dict(top: list[tuple]) -> dict:
    out: dict = {}
    for text, value, *_ in top:  # two ids that decode to the same text: the likelier one stays (listed first)
        out.setdefault(text, value)
    return out


def chat_logprobs(tokens: list[TokenInfo]) -> dict:
    return {"content": [dict(_chat_token(t.text, t.logprob, t.raw),
                             top_logprobs=[_chat_token(*alt) for alt in t.top]) for t in tokens], "refusal": None}


def _chat_token(text: str, logprob: float, raw: bytes | None = None) -> dict:
    """`bytes`: the token's own UTF-8 bytes (a piece of a character split over tokens too, which `token` can only
    show as U+FFFD: OpenAI sends them so a client can join the pieces)."""
    return {"token": text, "logprob": logprob, "bytes": list(raw if raw else text.encode("utf-8"))}
