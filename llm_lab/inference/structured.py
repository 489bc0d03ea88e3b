"""Constrained decoding for the OpenAI-compatible server: `response_format` and `tools`/`tool_choice`.

A request's format becomes a `Constraint` (a grammar compiled for the model's tokenizer); the constraint gives a
transformers `LogitsProcessor` that, at every step, lets the model pick only tokens that keep the output inside
the grammar, and lets it end (end-of-sequence) only when the JSON is complete:

    constraint = response_format_constraint(tok, model.config.vocab_size, {"type": "json_object"},
                                            stop_token_ids=eos_ids)   # the ids `generate` stops on
    model.generate(..., eos_token_id=eos_ids,
                   logits_processor=LogitsProcessorList([constraint.logits_processor(batch_size)]))

| request | constraint |
|---|---|
| `response_format` `{"type": "text"}` | None |
| `{"type": "json_object"}` | any JSON object (nested values of any kind) |
| `{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}` | that schema |
| `tools` + `tool_choice` `"required"` | one call to any tool: `{"name": ..., "arguments": {...}}`, arguments per its parameters |
| `tools` + `tool_choice` `{"type": "function", "function": {"name": X}}` | a call to X |
| `tool_choice` `"none"` | None |
| `tool_choice` `"auto"` (OpenAI's default when tools are given) | refused (`ConstraintError`, param "tool_choice") |

"auto" is refused because choosing between a text answer and a call needs a model-specific tool parser (each
model family marks calls its own way); this server calls tools only when told to.

Bad input raises `ConstraintError(message, param)` (a ValueError) naming the request field; the server answers it
as a 400 `invalid_request_error`. A schema is refused when it is not valid JSON Schema (checked with the
`jsonschema` package against its meta-schema) or when it uses a keyword the grammar would silently not enforce
(checked by hand with xgrammar 0.2.9: `not`, `if`/`then`/`else`, `oneOf`, `allOf` with several branches,
`uniqueItems`, `contains`, `dependentRequired`/`dependentSchemas`, `pattern` with `minLength`/`maxLength`, and the
formats idn-email, idn-hostname, iri, iri-reference, regex and unknown ones): every answer the server gives then
validates against the schema the user sent.

Output shape. JSON is written with json.dumps' separators (`", "`, `": "`), no other whitespace: a model cannot
spin in whitespace until max_tokens. Properties come in the schema's order; properties and array items the schema
does not list are not generated unless it allows them explicitly (`additionalProperties: true`/a schema;
xgrammar's strict mode, which is what OpenAI's `strict: true` demands of schemas anyway). `strict: false` is
accepted and constrains the same way (the output is a subset of what the schema allows).

What the caller does (the server, see llm_lab/serve):
- pass `stop_token_ids` = the ids `generate` stops on (the model's generation_config eos ids); the grammar allows
  exactly those once the JSON is complete. A finished JSON row gets only stop tokens afterwards.
- max_tokens running out before the JSON is complete leaves a prefix that does not parse: report finish_reason
  "length" as for any text, and do not parse it as a tool call (`parse_tool_call` raises on it).
- stop strings cut the JSON wherever they match: a constrained request should ignore `stop` or refuse it.
- inside a string with minLength/maxLength xgrammar 0.2.9 offers no escape sequences (mlc-ai/xgrammar#800):
  such values are one-line text without quotes or backslashes.
- one processor per `generate` call (it keeps the matchers' state); `logits_processor(constraints)` takes one
  Constraint or None per row, so constrained and free rows share a left-padded batch. Beam search does not work
  (beams reorder rows between steps).

Why xgrammar (checked here, 2 shared CPU cores, SmolLM2-135M's 49,152-token byte-level BPE vocabulary, against
outlines-core 0.2.14 and lm-format-enforcer 0.11.3 installed aside for the comparison; the script is in issue 21's report):
- speed: xgrammar builds its tokenizer info once (0.3-0.8 s, cached here per tokenizer), then compiles a
  4-property schema in 0.01-0.04 s and any-JSON-object in 0.01-0.05 s, and masks a token in ~0.01-0.02 ms
  (masks of context-free tokens are precomputed). outlines-core indexes the same schema in 0.07-0.9 s and
  answers 1-2 ms a token; lm-format-enforcer needs 3.5 s of tokenizer data, then 3 ms a token of Python.
- JSON Schema: all three follow recursive $ref and patterns; only xgrammar enforces numeric bounds (outlines-core
  and lm-format-enforcer both let `3` through `"minimum": 5`), and outlines-core's depth-limited regex rejects a
  valid 3-deep free-form object, so it cannot serve json_object. What xgrammar does not enforce is refused above.
- lm-format-enforcer's transformers integration does not import under transformers 5 (it imports
  transformers.tokenization_utils.PreTrainedTokenizerBase, gone in 5.x).
- CPU without triton: xgrammar's bitmask kernel for CPU float32 logits is C++ (`apply_token_bitmask_inplace_cpu`);
  for other devices and dtypes this module picks its pure-torch kernel (`torch_native`) rather than the default
  triton one, not installed here (tests check the two kernels agree).
- it is what vLLM and SGLang use for these same OpenAI fields, and it ships a transformers LogitsProcessor
  (xgrammar.contrib.hf) that this one is tested against: same tokens. Ours adds what serving needs: rows
  without a constraint in the same batch, rows the generator finished by a stop string, the model's own stop
  tokens, a grammar cache, a mask closing xgrammar's raw-control-character hole (`_printable_tokens`), and
  a fallback when earlier processors banned every allowed token.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import torch

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_CACHE_SIZE = 64  # compiled grammars kept (a few MB each at most for a 50k vocabulary)
# string formats xgrammar 0.2.9 enforces (the others it accepts and ignores: refused below)
_FORMATS = {"date", "time", "date-time", "duration", "email", "hostname", "ipv4", "ipv6", "uri", "uri-reference",
            "uri-template", "uuid", "json-pointer", "relative-json-pointer"}
_SEPARATORS = (", ", ": ")


class ConstraintError(ValueError):
    """A request field that cannot be honoured; `param` names it (OpenAI's error.param)."""

    def __init__(self, message: str, param: str | None):
        super().__init__(message)
        self.message, self.param = message, param


# ---------------------------------------------------------------- the constraint
@dataclass(frozen=True, eq=False)
class Constraint:
    """A compiled grammar for one tokenizer; `kind` is "json_object", "json_schema" or "tool_call".

    `schema` is the JSON Schema the output follows (None for json_object: any object); `tool_names` the tools a
    tool_call may name. `matches(text)` says whether a complete output is in the grammar."""

    kind: str
    grammar: object = field(repr=False)  # xgrammar.CompiledGrammar
    schema: dict | None
    stop_token_ids: tuple[int, ...]
    pad_token_id: int | None
    vocab_size: int
    tool_names: tuple[str, ...] = ()
    # packed like xgrammar's bitmask: tokens free of raw control bytes (see _printable_tokens)
    printable: torch.Tensor | None = field(default=None, repr=False)

    def logits_processor(self, batch_size: int = 1) -> GrammarLogitsProcessor:
        """A fresh processor for one `generate` call of `batch_size` rows, all under this constraint."""
        return logits_processor([self] * batch_size)

    def matches(self, text: str) -> bool:
        """Whether `text` is a complete output of this grammar (what a row that ended on a stop token holds)."""
        import xgrammar as xgr

        matcher = xgr.GrammarMatcher(self.grammar)
        return matcher.accept_string(text) and matcher.is_completed()


def logits_processor(constraints: list[Constraint | None]) -> GrammarLogitsProcessor:
    """One processor for a batch whose row i follows `constraints[i]` (None: unconstrained)."""
    return GrammarLogitsProcessor(constraints)


class GrammarLogitsProcessor:
    """A transformers LogitsProcessor masking each constrained row to the tokens its grammar allows next.

    It only reads each row's last token, so left padding does not matter. Built-in processors (repetition
    penalty, no-repeat n-grams) run before it and the sampling warpers (temperature, top-k, top-p) after it, so
    sampling picks among allowed tokens only. Should every allowed token have been banned before it (e.g. by
    no_repeat_ngram_size), the row picks uniformly among the allowed ones instead of leaving the grammar."""

    def __init__(self, constraints: list[Constraint | None]):
        import xgrammar as xgr

        if not constraints:
            raise ValueError("logits_processor needs one constraint (or None) per row")
        given = [c for c in constraints if c is not None]
        sizes = {c.vocab_size for c in given}
        if len(sizes) > 1:
            raise ValueError(f"constraints of one batch are compiled for different vocabulary sizes: {sorted(sizes)}")
        self.constraints = list(constraints)
        self.vocab_size = sizes.pop() if sizes else 0
        self.matchers = [xgr.GrammarMatcher(c.grammar) if c is not None else None for c in constraints]
        self.released: set[int] = set()  # rows the generator finished (stop string / own limit): no longer masked
        self.bitmask = xgr.allocate_token_bitmask(len(constraints), max(self.vocab_size, 1))
        self.started = False

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[0] != len(self.matchers):
            raise RuntimeError(f"this processor was built for {len(self.matchers)} rows, generate gave "
                               f"{input_ids.shape[0]}: build one per generate call (beam search is not supported)")
        if self.vocab_size and scores.shape[-1] != self.vocab_size:
            raise RuntimeError(f"the grammar was compiled for {self.vocab_size} tokens but the model scores "
                               f"{scores.shape[-1]}: pass the model's config.vocab_size when building the constraint")
        if self.started:
            self._accept(input_ids[:, -1].tolist())
        self.started = True
        masked, finished = [], []
        for row, matcher in enumerate(self.matchers):
            if matcher is None or row in self.released:
                continue
            if matcher.is_terminated():
                finished.append(row)
            else:
                matcher.fill_next_token_bitmask(self.bitmask, row)
                if self.constraints[row].printable is not None:
                    self.bitmask[row] &= self.constraints[row].printable
                masked.append(row)
        if masked:
            self._apply(scores, masked)
        for row in finished:  # the JSON is complete and ended: only stop tokens (in case generate goes on)
            stops = list(self.constraints[row].stop_token_ids)
            keep = scores[row, stops].clone()
            scores[row] = float("-inf")
            scores[row, stops] = keep
        return scores

    def _accept(self, last_tokens: list[int]) -> None:
        for row, matcher in enumerate(self.matchers):
            if matcher is None or row in self.released or matcher.is_terminated():
                continue
            token = last_tokens[row]
            if matcher.accept_token(token):
                continue
            if token == self.constraints[row].pad_token_id:
                # generate pads a row it finished by a stopping criterion (stop string, the row's own max_tokens)
                self.released.add(row)
                continue
            raise RuntimeError(f"row {row} took token {token}, which its grammar does not allow: a logits "
                               "processor after the grammar's changed the choice")

    def _apply(self, scores: torch.Tensor, rows: list[int]) -> None:
        import xgrammar as xgr

        bitmask = self.bitmask.to(scores.device)
        # xgrammar's default kernel on GPU is triton, not installed here; its pure-torch kernel runs anywhere
        backend = "cpu" if scores.device.type == "cpu" and scores.dtype == torch.float32 else "torch_native"
        xgr.apply_token_bitmask_inplace(scores, bitmask, vocab_size=self.vocab_size, indices=rows, backend=backend)
        dead = [r for r in rows if torch.isneginf(scores[r]).all()]
        for row in dead:  # every allowed token was banned before us: stay in the grammar, uniformly
            scores[row] = torch.where(_allowed(bitmask[row], self.vocab_size), 0.0, float("-inf"))


def _allowed(bitmask_row: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """The bool mask of allowed token ids from one row of xgrammar's packed int32 bitmask."""
    bits = (bitmask_row.unsqueeze(-1) >> torch.arange(32, device=bitmask_row.device)) & 1
    return bits.flatten()[:vocab_size].bool()


# ---------------------------------------------------------------- compiling, cached
_lock = threading.Lock()
_compilers: OrderedDict = OrderedDict()  # tokenizer key -> xgrammar.GrammarCompiler
_grammars: OrderedDict = OrderedDict()  # (tokenizer key, grammar key) -> CompiledGrammar
_stats = {"hits": 0, "misses": 0}


def cache_info() -> dict:
    """Compiled grammars kept, and how often a request found its grammar compiled already."""
    with _lock:
        return {"size": len(_grammars), **_stats}


def clear_cache() -> None:
    with _lock:
        _compilers.clear()
        _grammars.clear()
        _stats.update(hits=0, misses=0)


def tokenizer_fingerprint(tokenizer) -> str:
    """A hash of everything xgrammar reads from a tokenizer: its full serialisation (vocabulary, merges, added
    tokens, normaliser and decoder, which decide how token bytes are decoded) and its class. Computed for each
    request (~50 ms for SmolLM2's 49k vocabulary on 2 busy cores), so a tokenizer changed in place never reuses
    a stale grammar."""
    digest = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        digest.update(backend.to_str().encode())
    else:  # a slow tokenizer: its vocabulary and special tokens
        digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    digest.update(json.dumps(sorted(getattr(tokenizer, "special_tokens_map", {}).items()), default=str).encode())
    return digest.hexdigest()


def _compiler(tokenizer, vocab_size: int, stop_ids: tuple[int, ...]):
    """(key, xgrammar GrammarCompiler, printable-token bitmask) for this tokenizer, built once."""
    import xgrammar as xgr

    key = (tokenizer_fingerprint(tokenizer), vocab_size, stop_ids)
    with _lock:
        if key in _compilers:
            _compilers.move_to_end(key)
            return (key, *_compilers[key])
    info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=list(stop_ids))
    compiler = xgr.GrammarCompiler(info, max_threads=max(1, min(8, os.cpu_count() or 1)), cache_enabled=False)
    printable = _printable_tokens(info.decoded_vocab, vocab_size, stop_ids)
    with _lock:
        _compilers[key] = (compiler, printable)
        while len(_compilers) > 8:
            _compilers.popitem(last=False)
    return key, compiler, printable


def _printable_tokens(decoded_vocab: list[bytes], vocab_size: int, stop_ids: tuple[int, ...]) -> torch.Tensor:
    """The packed bitmask of tokens with no byte below 0x20 (stop tokens always in).

    xgrammar 0.2.9 lets a string with minLength/maxLength hold raw control characters (U+0000-U+001F but CR/LF),
    which JSON forbids (json.loads: "Invalid control character"; upstream mlc-ai/xgrammar#800, open). Our JSON
    has no whitespace but single spaces (any_whitespace=False), so no valid output contains such a byte: masking
    those tokens costs nothing and closes the hole."""
    import numpy as np

    ok = np.ones(((vocab_size + 31) // 32) * 32, dtype=bool)
    for token_id, raw in enumerate(decoded_vocab[:vocab_size]):
        ok[token_id] = not any(b < 0x20 for b in raw)
    ok[list(stop_ids)] = True
    return torch.from_numpy(np.packbits(ok, bitorder="little").view("<i4").astype(np.int32))


def _compile(tokenizer, vocab_size: int, stop_ids: tuple[int, ...], schema: dict, strict: bool, where: str,
             param: str):
    """(compiled grammar, printable mask) for `schema` (a JSON Schema), from the cache when this tokenizer
    compiled it before."""
    tok_key, compiler, printable = _compiler(tokenizer, vocab_size, stop_ids)
    text = json.dumps(schema, sort_keys=False, separators=(",", ":"))  # property order matters to the grammar
    key = (tok_key, text, strict)
    with _lock:
        if key in _grammars:
            _grammars.move_to_end(key)
            _stats["hits"] += 1
            return _grammars[key], printable
    try:
        grammar = compiler.compile_json_schema(text, any_whitespace=False, separators=_SEPARATORS, strict_mode=strict)
    except RuntimeError as exc:  # xgrammar: "[time] /project/cpp/file.cc:123: what is wrong"
        reason = re.sub(r"^\[[^\]]*\]\s*\S+:\d+:\s*", "", str(exc).strip()).splitlines()[0]
        raise ConstraintError(f"{where}: the schema cannot be enforced: {reason}", param) from None
    with _lock:
        _stats["misses"] += 1
        _grammars[key] = grammar
        while len(_grammars) > _CACHE_SIZE:
            _grammars.popitem(last=False)
    return grammar, printable


def _stop_ids(tokenizer, stop_token_ids) -> tuple[int, ...]:
    ids = stop_token_ids if stop_token_ids is not None else tokenizer.eos_token_id
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    if not ids:
        raise ValueError("the tokenizer has no end-of-sequence token: pass stop_token_ids (the ids generate stops on)")
    return tuple(sorted({int(i) for i in ids}))


def _constraint(kind, tokenizer, vocab_size, schema, strict, stop_token_ids, where, param,
                tool_names=()) -> Constraint:
    """Compile; an error names `where` (the field's path) in its message and `param` as its param."""
    stops = _stop_ids(tokenizer, stop_token_ids)
    grammar_schema = schema if schema is not None else {"type": "object"}
    grammar, printable = _compile(tokenizer, int(vocab_size), stops, grammar_schema, strict, where, param)
    return Constraint(kind, grammar, schema, stops, tokenizer.pad_token_id, int(vocab_size), tuple(tool_names),
                      printable)


# ---------------------------------------------------------------- checking schemas
def check_schema(schema, param: str) -> None:
    """Refuse what is not JSON Schema, or what the grammar would not enforce; `param` is named in the error."""
    if not isinstance(schema, dict):
        raise ConstraintError(f"{param} must be a JSON Schema object, got {type(schema).__name__}", param)
    try:
        from jsonschema import Draft202012Validator, SchemaError, validators
    except ImportError:  # validity is then left to xgrammar's compiler
        pass
    else:
        validator = validators.validator_for(schema, default=Draft202012Validator)
        try:
            validator.check_schema(schema)
        except SchemaError as exc:
            where = "".join(f"[{p!r}]" for p in exc.path)
            raise ConstraintError(f"{param}{where} is not valid JSON Schema: {exc.message}", param) from None
    problems = list(_unenforced(schema, ""))
    if problems:
        raise ConstraintError(f"{param} uses JSON Schema features constrained decoding cannot enforce: "
                              + "; ".join(problems), param)


_SINGLE = ("items", "additionalProperties", "unevaluatedProperties", "propertyNames", "additionalItems",
           "unevaluatedItems", "contains", "not", "if", "then", "else")
_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_LISTS = ("prefixItems", "anyOf", "oneOf", "allOf", "items")


def _unenforced(node, path: str):
    """(JSON pointer: why) for each keyword under `node` that xgrammar accepts but does not enforce."""
    if not isinstance(node, dict):
        return
    for word in ("not", "if", "then", "else", "contains", "minContains", "maxContains", "dependentRequired",
                 "dependentSchemas", "dependencies"):
        if word in node:
            yield f"{path or '/'}: {word!r} is not enforced"
    if node.get("uniqueItems") is True:
        yield f"{path or '/'}: 'uniqueItems' is not enforced"
    if "oneOf" in node:
        yield f"{path or '/'}: 'oneOf' is not enforced (only as anyOf): use anyOf with branches that cannot both match"
    if isinstance(node.get("allOf"), list) and len(node["allOf"]) > 1:
        yield f"{path or '/'}: 'allOf' with several schemas is not enforced: merge them into one schema"
    if "format" in node and node["format"] not in _FORMATS:
        yield f"{path or '/'}: format {node['format']!r} is not enforced (enforced: {', '.join(sorted(_FORMATS))})"
    if "pattern" in node and ("minLength" in node or "maxLength" in node):
        yield f"{path or '/'}: minLength/maxLength beside 'pattern' are not enforced: put the length in the pattern"
    ref = node.get("$ref")
    if isinstance(ref, str) and not ref.startswith("#"):
        yield f"{path or '/'}: $ref {ref!r} is not local: only references inside the schema ('#/...') are followed"
    for word in _SINGLE:
        if isinstance(node.get(word), dict):
            yield from _unenforced(node[word], f"{path}/{word}")
    for word in _MAPS:
        if isinstance(node.get(word), dict):
            for name, sub in node[word].items():
                yield from _unenforced(sub, f"{path}/{word}/{name}")
    for word in _LISTS:
        if isinstance(node.get(word), list):
            for i, sub in enumerate(node[word]):
                yield from _unenforced(sub, f"{path}/{word}/{i}")


# ---------------------------------------------------------------- response_format
def response_format_constraint(tokenizer, vocab_size: int, response_format: dict | None,
                               stop_token_ids=None) -> Constraint | None:
    """The constraint for an OpenAI `response_format` (None for text or no format).

    `vocab_size` is the model's output width (config.vocab_size), `stop_token_ids` the ids generate stops on
    (default: the tokenizer's eos). Raises ConstraintError(param="response_format") naming what is wrong."""
    param = "response_format"
    if response_format is None:
        return None
    if not isinstance(response_format, dict):
        raise ConstraintError("response_format must be an object such as {\"type\": \"json_object\"}", param)
    kind = response_format.get("type")
    extra = set(response_format) - {"type", "json_schema"}
    if extra:
        raise ConstraintError(f"response_format has unknown fields: {', '.join(sorted(extra))}", param)
    if kind == "text":
        return None
    if kind == "json_object":
        return _constraint("json_object", tokenizer, vocab_size, None, False, stop_token_ids, param, param)
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = _json_schema_spec(spec)
        if schema is None:  # OpenAI makes the schema optional: then any JSON object
            return _constraint("json_object", tokenizer, vocab_size, None, False, stop_token_ids, param, param)
        return _constraint("json_schema", tokenizer, vocab_size, schema, True, stop_token_ids,
                           "response_format.json_schema.schema", param)
    raise ConstraintError(f"response_format.type must be 'text', 'json_object' or 'json_schema', got {kind!r}", param)


def _json_schema_spec(spec) -> dict | None:
    """The schema of a checked `json_schema` object (`strict` is checked; both values constrain alike)."""
    param = "response_format"
    if not isinstance(spec, dict):
        raise ConstraintError("response_format.json_schema is required for type 'json_schema': "
                              "{\"name\": ..., \"schema\": {...}, \"strict\": true}", param)
    extra = set(spec) - {"name", "schema", "strict", "description"}
    if extra:
        raise ConstraintError(f"response_format.json_schema has unknown fields: {', '.join(sorted(extra))}", param)
    name = spec.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConstraintError("response_format.json_schema.name is required: 1 to 64 letters, digits, '_' or '-'"
                              f", got {name!r}", param)
    strict = spec.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise ConstraintError(f"response_format.json_schema.strict must be true or false, got {strict!r}", param)
    if "description" in spec and not isinstance(spec["description"], str):
        raise ConstraintError("response_format.json_schema.description must be a string", param)
    schema = spec.get("schema")
    if schema is not None:
        try:
            check_schema(schema, "response_format.json_schema.schema")
        except ConstraintError as exc:
            raise ConstraintError(exc.message, param) from None
    return schema


# ---------------------------------------------------------------- tools
def tool_call_constraint(tokenizer, vocab_size: int, tools, tool_choice,
                         stop_token_ids=None) -> Constraint | None:
    """The constraint for OpenAI `tools` + `tool_choice`: the output is one call, the JSON
    `{"name": NAME, "arguments": {...}}` with arguments following that tool's `parameters`.

    tool_choice "none" gives None; "required" any of the tools; {"type": "function", "function": {"name": X}}
    the tool X; "auto" (and None, OpenAI's default when tools are given) is refused: deciding between text and
    a call needs a model-specific tool parser. Raises ConstraintError naming the field ("tools[1].function.name")."""
    specs = check_tools(tools)
    names = _chosen(tool_choice, [s["name"] for s in specs])
    if not names:
        return None
    chosen = [(i, s) for i, s in enumerate(specs) if s["name"] in names]
    for i, spec in chosen:  # each tool alone first, so an error names the tool (cached: no cost the next time)
        at = f"tools[{i}].function.parameters"
        _constraint("tool_call", tokenizer, vocab_size, _call_schema(spec), True, stop_token_ids, at, at)
    calls = [_call_schema(s) for _, s in chosen]
    schema = calls[0] if len(calls) == 1 else {"anyOf": calls}
    return _constraint("tool_call", tokenizer, vocab_size, schema, True, stop_token_ids, "tools", "tools",
                       tuple(names))


def check_tools(tools) -> list[dict]:
    """Validate OpenAI `tools`; returns [{"name", "description", "parameters"}] (parameters defaulted)."""
    if not isinstance(tools, list) or not tools:
        raise ConstraintError("tools must be a non-empty list of {\"type\": \"function\", \"function\": {...}}",
                              "tools")
    specs, seen = [], set()
    for i, tool in enumerate(tools):
        at = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise ConstraintError(f"{at} must be an object", at)
        if tool.get("type") != "function":
            raise ConstraintError(f"{at}.type must be 'function' (the only tool type this server calls), "
                                  f"got {tool.get('type')!r}", f"{at}.type")
        function = tool.get("function")
        if not isinstance(function, dict):
            raise ConstraintError(f"{at}.function must be an object with a name", f"{at}.function")
        extra = set(function) - {"name", "description", "parameters", "strict"}
        if extra:
            raise ConstraintError(f"{at}.function has unknown fields: {', '.join(sorted(extra))}", f"{at}.function")
        name = function.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConstraintError(f"{at}.function.name must be 1 to 64 letters, digits, '_' or '-', got {name!r}",
                                  f"{at}.function.name")
        if name in seen:
            raise ConstraintError(f"{at}.function.name {name!r} is given twice", f"{at}.function.name")
        seen.add(name)
        if "description" in function and not isinstance(function["description"], str):
            raise ConstraintError(f"{at}.function.description must be a string", f"{at}.function.description")
        if function.get("strict") is not None and not isinstance(function["strict"], bool):
            raise ConstraintError(f"{at}.function.strict must be true or false", f"{at}.function.strict")
        specs.append({"name": name, "description": function.get("description", ""),
                      "parameters": _parameters(function.get("parameters"), f"{at}.function.parameters")})
    return specs


def _parameters(parameters, param: str) -> dict:
    if parameters is None:  # OpenAI: omitted parameters mean a function without arguments
        return {"type": "object", "properties": {}}
    check_schema(parameters, param)
    if parameters.get("type") != "object":
        raise ConstraintError(f"{param} must describe an object (\"type\": \"object\"): arguments are named",
                              param)
    return parameters


def _chosen(tool_choice, names: list[str]) -> list[str]:
    if tool_choice == "none":
        return []
    if tool_choice == "required":
        return names
    if tool_choice is None or tool_choice == "auto":
        raise ConstraintError(
            "tool_choice 'auto' (the default when tools are given) is not supported: this server calls a tool "
            "only when told to, since telling a text answer from a call needs a model-specific tool parser. Send "
            "tool_choice 'required' (a call to one of the tools), {\"type\": \"function\", \"function\": "
            "{\"name\": ...}} (that tool) or 'none' (a text answer).", "tool_choice")
    if isinstance(tool_choice, dict) and tool_choice.get("type") == "function":
        name = (tool_choice.get("function") or {}).get("name") if isinstance(tool_choice.get("function"),
                                                                           dict) else None
        if name not in names:
            raise ConstraintError(f"tool_choice names the function {name!r}, which is not among tools "
                                  f"({', '.join(names)})", "tool_choice")
        return [name]
    raise ConstraintError("tool_choice must be 'none', 'required' or {\"type\": \"function\", \"function\": "
                          f"{{\"name\": ...}}}}, got {json.dumps(tool_choice)[:200]}", "tool_choice")


def _call_schema(spec: dict) -> dict:
    return {"type": "object", "properties": {"name": {"const": spec["name"]}, "arguments": spec["parameters"]},
            "required": ["name", "arguments"]}


def tools_prompt(tools) -> str:
    """A system-message text telling the model the tools and the call format, for chat templates that do not
    render `tools` themselves (the grammar enforces the format; this helps the model fill it sensibly)."""
    lines = [('You can call these functions. Answer with one call as JSON: '
              '{"name": <function name>, "arguments": {<arguments>}}.')]
    for spec in check_tools(tools):
        lines.append(json.dumps({"name": spec["name"], "description": spec["description"],
                                 "parameters": spec["parameters"]}, ensure_ascii=False))
    return "\n".join(lines)


def parse_tool_call(text: str) -> tuple[str, str]:
    """(name, arguments as a JSON string) of a complete tool-call output, for the response's `tool_calls`.
    Raises ValueError on a text that is not one (e.g. cut by max_tokens: answer it with finish_reason "length")."""
    try:
        call = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"the output is not a complete tool call ({exc.msg} at character {exc.pos})") from None
    if not (isinstance(call, dict) and isinstance(call.get("name"), str) and isinstance(call.get("arguments"), dict)):
        raise ValueError('the output is not a tool call {"name": ..., "arguments": {...}}')  # noqa: TRY004
    return call["name"], json.dumps(call["arguments"], ensure_ascii=False)
