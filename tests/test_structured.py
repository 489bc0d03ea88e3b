"""Constrained decoding (llm_lab/inference/structured.py): response_format and tools through xgrammar.

Outputs are checked independently of the grammar: `json.loads` and the `jsonschema` package's validator (a
required dependency of this test file), and greedy decoding is compared token for token with xgrammar's own
transformers processor (xgrammar.contrib.hf) on the same model."""
import json

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LogitsProcessorList,
    StoppingCriteria,
)

from llm_lab.inference import structured
from llm_lab.inference.structured import ConstraintError

jsonschema = pytest.importorskip("jsonschema")

PROMPTS = ["Hello there", "A much longer prompt, with several more words in it"]  # left padding differs per row
PERSON = {"type": "object",
          "properties": {"name": {"type": "string", "maxLength": 8},
                         "age": {"type": "integer", "minimum": 0, "maximum": 120},
                         "role": {"enum": ["admin", "user", "guest"]},
                         "scores": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9},
                                    "maxItems": 3},
                         "active": {"type": "boolean"}},
          "required": ["name", "age", "role", "scores", "active"]}
TOOLS = [{"type": "function", "function": {
             "name": "get_weather", "description": "Current weather in a city",
             "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 10},
                                                             "unit": {"enum": ["celsius", "fahrenheit"]}},
                            "required": ["city", "unit"]}}},
         {"type": "function", "function": {
             "name": "add", "parameters": {"type": "object",
                                           "properties": {"a": {"type": "integer", "minimum": -99, "maximum": 99},
                                                          "b": {"type": "integer", "minimum": -99, "maximum": 99}},
                                           "required": ["a", "b"]}}}]


@pytest.fixture(scope="module")
def lm(tiny_gpt2):
    tok = AutoTokenizer.from_pretrained(tiny_gpt2)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2).eval()
    return tok, model


def _generate(lm, processors, prompts=PROMPTS, max_new_tokens=60, **kwargs):
    """New token ids per row (generate's pad tokens after the end included)."""
    tok, model = lm
    enc = tok(prompts, return_tensors="pt", padding=True)
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id,
                             eos_token_id=tok.eos_token_id, logits_processor=LogitsProcessorList(processors),
                             **kwargs)
    return out[:, enc["input_ids"].shape[1]:].tolist()


def _text(tok, ids):
    """The row's text up to its end-of-sequence token, and whether it ended on one."""
    ended = tok.eos_token_id in ids
    kept = ids[:ids.index(tok.eos_token_id)] if ended else ids
    return tok.decode(kept, skip_special_tokens=True), ended


def _person(lm):
    tok, model = lm
    return structured.response_format_constraint(
        tok, model.config.vocab_size, {"type": "json_schema",
                                       "json_schema": {"name": "person", "schema": PERSON, "strict": True}})


# ---------------------------------------------------------------- outputs follow the format
def test_a_json_schema_holds_under_sampling_with_several_seeds(lm):
    """Temperature, top-k, top-p and a repetition penalty around the mask: every row of a left-padded batch
    ends with JSON that validates against the schema (jsonschema, not the grammar, judges)."""
    tok, _ = lm
    constraint = _person(lm)
    for seed in range(4):
        torch.manual_seed(seed)
        rows = _generate(lm, [constraint.logits_processor(len(PROMPTS))], max_new_tokens=80, do_sample=True,
                         temperature=1.3, top_k=40, top_p=0.95, repetition_penalty=1.2)
        for ids in rows:
            text, ended = _text(tok, ids)
            assert ended, f"seed {seed}: no end-of-sequence within 80 tokens: {text!r}"
            jsonschema.validate(json.loads(text), PERSON)


def test_greedy_decoding_equals_xgrammars_own_transformers_processor(lm):
    """The same compiled grammar through xgrammar.contrib.hf.LogitsProcessor and through ours: same tokens."""
    from xgrammar.contrib.hf import LogitsProcessor as XgrammarProcessor

    constraint = _person(lm)
    ours = _generate(lm, [constraint.logits_processor(len(PROMPTS))], do_sample=False, max_new_tokens=80)
    theirs = _generate(lm, [XgrammarProcessor(constraint.grammar)], do_sample=False, max_new_tokens=80)
    assert ours == theirs
    tok, _ = lm
    for ids in ours:
        text, ended = _text(tok, ids)
        assert ended
        jsonschema.validate(json.loads(text), PERSON)


def test_json_object_ends_only_when_the_object_is_complete(lm):
    """The random tiny model writes long strings, so rows may run out of tokens: then the text is a prefix of
    an object; a row that ended holds a complete JSON object."""
    tok, model = lm
    constraint = structured.response_format_constraint(tok, model.config.vocab_size, {"type": "json_object"})
    for seed in range(3):
        torch.manual_seed(seed)
        for ids in _generate(lm, [constraint.logits_processor(len(PROMPTS))], max_new_tokens=40, do_sample=True):
            text, ended = _text(tok, ids)
            if ended:
                assert isinstance(json.loads(text), dict)
            else:
                assert text.startswith("{")
                with pytest.raises(json.JSONDecodeError):  # cut short: the caller answers finish_reason "length"
                    json.loads(text)


def test_end_of_sequence_is_masked_until_the_json_is_complete(lm):
    """Teacher forcing through the processor: at each step of a known object, EOS is allowed only at the end."""
    tok, model = lm
    constraint = structured.response_format_constraint(tok, model.config.vocab_size, {"type": "json_object"})
    processor = constraint.logits_processor(1)
    target = tok('{"a": [1, 2], "b": {"c": null}}', add_special_tokens=False)["input_ids"]
    ids = torch.tensor([[5]])
    eos_allowed = []
    for token in [*target, None]:
        scores = processor(ids, torch.zeros(1, model.config.vocab_size))
        eos_allowed.append(bool(scores[0, tok.eos_token_id] > float("-inf")))
        if token is not None:
            assert scores[0, token] > float("-inf"), f"token {token} of a valid object was masked"
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    assert eos_allowed == [False] * len(target) + [True]
    ids = torch.cat([ids, torch.tensor([[tok.eos_token_id]])], dim=1)  # ended: only stop tokens from now on
    scores = processor(ids, torch.zeros(1, model.config.vocab_size))
    assert torch.isfinite(scores[0]).nonzero().flatten().tolist() == [tok.eos_token_id]


def test_raw_control_characters_are_kept_out_of_length_bounded_strings(lm):
    """xgrammar 0.2.9 lets `{"type": "string", "maxLength": n}` take U+0000-U+001F raw (mlc-ai/xgrammar#800),
    which json.loads refuses; our processor masks those tokens where xgrammar's own does not."""
    from xgrammar.contrib.hf import LogitsProcessor as XgrammarProcessor

    tok, model = lm
    control = [i for token, i in tok.get_vocab().items()
               if any(b < 0x20 for b in tok.convert_tokens_to_string([token]).encode()) and i != tok.eos_token_id]
    assert control, "the tiny tokenizer has byte tokens for control characters"
    constraint = _person(lm)
    prefix = tok('{"name": "', add_special_tokens=False)["input_ids"]
    results = []
    for processor in (constraint.logits_processor(1), XgrammarProcessor(constraint.grammar)):
        ids = torch.tensor([[5]])
        for token in [*prefix, None]:  # teacher forcing up to inside the bounded string
            scores = processor(ids, torch.zeros(1, model.config.vocab_size))
            if token is not None:
                ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
        results.append(torch.isfinite(scores[0, control]))
    ours, xgrammars = results
    assert xgrammars.sum() >= 20 and not ours.any()  # xgrammar allows the bytes \x00-\x1f but CR/LF there


def test_a_row_whose_allowed_tokens_were_all_banned_earlier_stays_in_the_grammar(lm):
    """E.g. no_repeat_ngram_size banned the only token the grammar allows: uniform over the allowed ones."""
    tok, model = lm
    processor = _person(lm).logits_processor(1)
    scores = torch.full((1, model.config.vocab_size), float("-inf"))
    scores[0, tok.convert_tokens_to_ids("x")] = 0.0  # the only token left, and not '{'
    out = processor(torch.tensor([[5]]), scores)
    assert torch.isfinite(out[0]).nonzero().flatten().tolist() == tok('{', add_special_tokens=False)["input_ids"]


def test_tool_calls_parse_and_their_arguments_follow_the_tools_parameters(lm):
    tok, model = lm
    parameters = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    for choice, allowed in [("required", {"get_weather", "add"}),
                            ({"type": "function", "function": {"name": "add"}}, {"add"})]:
        constraint = structured.tool_call_constraint(tok, model.config.vocab_size, TOOLS, choice)
        assert set(constraint.tool_names) == allowed
        for seed in range(2):
            torch.manual_seed(seed)
            for ids in _generate(lm, [constraint.logits_processor(len(PROMPTS))], max_new_tokens=100,
                                 do_sample=True):
                text, ended = _text(tok, ids)
                assert ended, text
                name, arguments = structured.parse_tool_call(text)
                assert name in allowed
                jsonschema.validate(json.loads(arguments), parameters[name])


def test_parse_tool_call_refuses_a_call_cut_short():
    assert structured.parse_tool_call('{"name": "add", "arguments": {"a": 1, "b": 2}}') == ("add",
                                                                                           '{"a": 1, "b": 2}')
    with pytest.raises(ValueError, match="not a complete tool call"):
        structured.parse_tool_call('{"name": "add", "arguments": {"a": 1')


# ---------------------------------------------------------------- batches
def test_a_row_without_a_constraint_decodes_as_if_there_were_none(lm):
    tok, _ = lm
    plain = _generate(lm, [], do_sample=False, max_new_tokens=20)
    mixed = _generate(lm, [structured.logits_processor([None, _person(lm)])], do_sample=False, max_new_tokens=20)
    assert mixed[0] == plain[0]
    assert mixed[1] != plain[1] and tok.decode(mixed[1]).startswith('{"name": "')


class _StopRowZeroAfter(StoppingCriteria):
    """Ends row 0 after `n` new tokens (as a stop string or the row's own max_tokens would)."""

    def __init__(self, start, n):
        self.start, self.n = start, n

    def __call__(self, input_ids, scores, **kwargs):
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool)
        done[0] = input_ids.shape[1] - self.start >= self.n
        return done


def test_a_row_the_generator_ends_early_is_released(lm):
    """generate pads a row a stopping criterion ended; the processor stops following it, the other row goes on."""
    tok, _ = lm
    width = tok(PROMPTS, return_tensors="pt", padding=True)["input_ids"].shape[1]
    rows = _generate(lm, [_person(lm).logits_processor(2)], do_sample=False,
                     stopping_criteria=[_StopRowZeroAfter(width, 3)], max_new_tokens=80)
    assert rows[0][3:] == [tok.pad_token_id] * (len(rows[0]) - 3)
    text, ended = _text(tok, rows[1])
    assert ended
    jsonschema.validate(json.loads(text), PERSON)


def test_the_cpu_and_pure_torch_kernels_agree():
    """The CPU kernel (C++) and the pure-torch one (used off CPU, where xgrammar's default needs triton)."""
    import xgrammar as xgr

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 1000, generator=generator)
    bitmask = torch.randint(-2**31, 2**31 - 1, (3, 32), dtype=torch.int32, generator=generator)
    a, b = logits.clone(), logits.clone()
    xgr.apply_token_bitmask_inplace(a, bitmask, vocab_size=1000, indices=[0, 2], backend="cpu")
    xgr.apply_token_bitmask_inplace(b, bitmask, vocab_size=1000, indices=[0, 2], backend="torch_native")
    assert torch.equal(a, b)
    allowed = structured._allowed(bitmask[0], 1000)
    assert torch.equal(torch.isfinite(a[0]), allowed) and torch.equal(a[1], logits[1])


# ---------------------------------------------------------------- the cache
def test_grammars_are_compiled_once_per_tokenizer_and_schema(lm):
    tok, model = lm
    structured.clear_cache()
    first = _person(lm)
    assert structured.cache_info() == {"size": 1, "hits": 0, "misses": 1}
    again = _person(lm)
    assert again.grammar is first.grammar and structured.cache_info()["hits"] == 1
    other = dict(PERSON, required=["name"])
    structured.response_format_constraint(tok, model.config.vocab_size, {
        "type": "json_schema", "json_schema": {"name": "person", "schema": other}})
    assert structured.cache_info()["misses"] == 2


def test_a_changed_tokenizer_gets_its_own_grammar(tiny_gpt2):
    tok = AutoTokenizer.from_pretrained(tiny_gpt2)
    before = structured.tokenizer_fingerprint(tok)
    assert structured.tokenizer_fingerprint(AutoTokenizer.from_pretrained(tiny_gpt2)) == before
    tok.add_tokens(["<extra-token>"])
    assert structured.tokenizer_fingerprint(tok) != before


# ---------------------------------------------------------------- refusals name the field
@pytest.mark.parametrize("response_format, words", [
    ({"type": "xml"}, "response_format.type must be"),
    ({"type": "json_schema"}, "response_format.json_schema is required"),
    ({"type": "json_schema", "json_schema": {"schema": PERSON}}, "json_schema.name is required"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "foo"}}}, "is not valid JSON Schema"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "object", "properties": {"a": {"not": {"type": "null"}}}}}}, "/properties/a: 'not' is not enforced"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"oneOf": [{"type": "string"}]}}}, "use anyOf"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"$ref": "#/$defs/missing"}}},
     "the schema cannot be enforced"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": PERSON, "strict": "yes"}}, "strict must be"),
])
def test_bad_response_formats_are_refused_naming_the_field(lm, response_format, words):
    tok, model = lm
    with pytest.raises(ConstraintError, match=words) as caught:
        structured.response_format_constraint(tok, model.config.vocab_size, response_format)
    assert caught.value.param == "response_format"


def test_text_means_no_constraint_and_a_json_schema_without_schema_any_object(lm):
    tok, model = lm
    assert structured.response_format_constraint(tok, model.config.vocab_size, {"type": "text"}) is None
    assert structured.response_format_constraint(tok, model.config.vocab_size, None) is None
    schemaless = structured.response_format_constraint(tok, model.config.vocab_size, {
        "type": "json_schema", "json_schema": {"name": "anything"}})
    assert schemaless.kind == "json_object" and schemaless.matches('{"any": ["thing", 1]}')
    assert not schemaless.matches("[1]")


def _tool(name, parameters=None):
    function = {"name": name} if parameters is None else {"name": name, "parameters": parameters}
    return {"type": "function", "function": function}


@pytest.mark.parametrize("tools, choice, param, words", [
    (TOOLS, "auto", "tool_choice", "calls a tool only when told to"),
    (TOOLS, None, "tool_choice", "tool_choice 'auto'"),
    (TOOLS, {"type": "function", "function": {"name": "nope"}}, "tool_choice", "'nope', which is not among"),
    (TOOLS, "sometimes", "tool_choice", "tool_choice must be"),
    ([], "required", "tools", "non-empty list"),
    ([TOOLS[0], _tool("bad name!")], "required", "tools[1].function.name", "letters, digits"),
    ([TOOLS[0], _tool("get_weather")], "required", "tools[1].function.name", "given twice"),
    ([{"type": "custom", "custom": {"name": "x"}}], "required", "tools[0].type", "must be 'function'"),
    ([_tool("f", {"type": "array"})], "required", "tools[0].function.parameters", "must describe an object"),
    ([TOOLS[0], _tool("f", {"type": "object", "properties": {"x": {"type": 3}}})], "required",
     "tools[1].function.parameters", "not valid JSON Schema"),
])
def test_bad_tools_are_refused_naming_the_field(lm, tools, choice, param, words):
    tok, model = lm
    with pytest.raises(ConstraintError, match=words) as caught:
        structured.tool_call_constraint(tok, model.config.vocab_size, tools, choice)
    assert caught.value.param == param


def test_tool_choice_none_means_no_constraint(lm):
    tok, model = lm
    assert structured.tool_call_constraint(tok, model.config.vocab_size, TOOLS, "none") is None


# ---------------------------------------------------------------- the real chat model
def test_the_chat_model_calls_a_tool_and_answers_a_json_object(chat_model_file):
    """SmolLM2-135M-Instruct through the registry, greedy, its chat template with the tools in a system message:
    the call names the tool with sensible arguments, and a json_object answer parses."""
    from llm_lab import registry
    from llm_lab.access import LOCAL

    loaded = registry.load(LOCAL, registry.CHAT_MODEL)
    tok, model = loaded.tokenizer, loaded.model
    stops = model.generation_config.eos_token_id

    def answer(messages, constraint):
        enc = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with torch.inference_mode(), loaded.lock:
            out = model.generate(**enc, max_new_tokens=40, do_sample=False, pad_token_id=tok.pad_token_id,
                                 eos_token_id=stops, logits_processor=LogitsProcessorList([constraint.logits_processor()]))
        new = out[0, enc["input_ids"].shape[1]:].tolist()
        assert new[-1] in constraint.stop_token_ids, "the answer did not end within 40 tokens"
        return tok.decode(new, skip_special_tokens=True)

    call = structured.tool_call_constraint(tok, model.config.vocab_size, TOOLS[:1], "required", stop_token_ids=stops)
    text = answer([{"role": "system", "content": structured.tools_prompt(TOOLS[:1])},
                   {"role": "user", "content": "What is the weather in Paris?"}], call)
    name, arguments = structured.parse_tool_call(text)
    assert name == "get_weather"
    jsonschema.validate(json.loads(arguments), TOOLS[0]["function"]["parameters"])
    assert "Paris" in json.loads(arguments)["city"]

    obj = structured.response_format_constraint(tok, model.config.vocab_size, {"type": "json_object"},
                                                stop_token_ids=stops)
    text = answer([{"role": "user", "content": "Describe Paris as a JSON object with keys name and country."}], obj)
    assert isinstance(json.loads(text), dict), text
