"""`serve` as a complete OpenAI-compatible server, checked with the real clients that call such servers.

One server for the module: a copy of the tiny GPT-2 with a chat template, started as `python -m llm_lab serve`
in a home of its own, with small limits (--max-prompts 8, --max-request-tokens 3000). The official `openai`
client sends every field; numbers are checked against a transformers forward over the same ids in this process
(log_softmax of the raw logits, 1e-4). lm-evaluation-harness's `local-completions` and `local-chat-completions`
run a multiple-choice and a generation task (local JSONL, a task YAML in tmp) against the server with their
default settings, compared with lm-eval's own `hf` backend on the same folder.
"""
import json
import shutil

import numpy as np
import openai
import pytest
import torch

from tests.test_serve import KEY, KEY_ENV, _start, _stop

CHAT_TEMPLATE = ("{% if tools %}<tools>{% for t in tools %}{{ t.function.name }} {% endfor %}\n{% endif %}"
                 "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<assistant>{% endif %}")  # tools: their names (a 128-token context)
PROMPT = "The list type is"


@pytest.fixture(scope="module")
def folder(tmp_path_factory, tiny_gpt2):
    """The tiny GPT-2 with a chat template (lm-eval's chat runs need one on both sides)."""
    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("chat-gpt2") / "model"
    shutil.copytree(tiny_gpt2, out)
    tok = AutoTokenizer.from_pretrained(out)
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory, folder):
    server = _start(tmp_path_factory, "tiny-lm", folder, "causal-lm", "--api-key-env", KEY_ENV,
                    "--batch-window-ms", "20", "--max-prompts", "8", "--max-request-tokens", "3000")
    server["client"] = openai.OpenAI(base_url=server["url"] + "/v1", api_key=KEY, max_retries=0, timeout=120)
    yield server
    _stop(server)


@pytest.fixture(scope="module")
def hf(folder):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(folder)


def _logsoftmax(hf, ids: list[int]) -> np.ndarray:
    """Row j: log P(next token | ids[:j + 1]), straight from transformers."""
    model, _ = hf
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    return torch.log_softmax(logits, -1).numpy()


def _greedy_ids(hf, ids: list[int], steps: int) -> list[int]:
    """Greedy decoding by hand: each step the forward's argmax."""
    made = []
    for _ in range(steps):
        made.append(int(_logsoftmax(hf, ids + made)[-1].argmax()))
    return made


def _check_top(tops: dict | list, row: np.ndarray, decode, k: int) -> None:
    """The top-k alternatives are the k largest of the forward's row (values to 1e-4, token texts equal)."""
    want = np.argsort(-row)[:k]
    got = list(tops.items()) if isinstance(tops, dict) else [(t.token, t.logprob) for t in tops]
    # the legacy dict keeps one entry per token text (two byte-level tokens may both show as U+FFFD)
    assert len(got) == (len({decode(int(i)) for i in want}) if isinstance(tops, dict) else k)
    for text, value in got:
        assert any(decode(int(i)) == text and abs(row[i] - value) < 1e-4 for i in want), (text, value)


# ---------------------------------------------------------------- completions
def test_completion_logprobs_and_echo_equal_a_transformers_forward(server, hf):
    _, tok = hf
    decode = lambda i: tok.decode([i])
    r = server["client"].completions.create(model="tiny-lm", prompt=PROMPT, max_tokens=4, temperature=0, logprobs=5,
                                            echo=True)
    choice = r.choices[0]
    prompt_ids = tok(PROMPT)["input_ids"]
    lp = choice.logprobs
    n = len(prompt_ids)
    assert lp.tokens[:n] == [decode(i) for i in prompt_ids] and choice.text.startswith(PROMPT)
    new_ids = _greedy_ids(hf, prompt_ids, 4)
    assert lp.tokens[n:] == [decode(i) for i in new_ids]
    assert choice.text == PROMPT + tok.decode(new_ids) and len(new_ids) == r.usage.completion_tokens == 4
    rows = _logsoftmax(hf, prompt_ids + new_ids)
    all_ids = prompt_ids + new_ids
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None  # the first token has no context
    for j in range(1, len(all_ids)):
        assert abs(lp.token_logprobs[j] - rows[j - 1, all_ids[j]]) < 1e-4
        _check_top(lp.top_logprobs[j], rows[j - 1], decode, 5)
    for j in range(n, len(all_ids)):  # greedy: each new token is the forward's argmax
        assert all_ids[j] == int(rows[j - 1].argmax())
    assert lp.text_offset == list(np.cumsum([0] + [len(t) for t in lp.tokens[:-1]]))
    assert all(choice.text[o:].startswith(t) for o, t in zip(lp.text_offset, lp.tokens))

    # without echo: the new tokens only, offsets in the returned text
    plain = server["client"].completions.create(model="tiny-lm", prompt=PROMPT, max_tokens=4, temperature=0, logprobs=2).choices[0]
    assert plain.text == choice.text[len(PROMPT):] and plain.logprobs.tokens == lp.tokens[n:]
    assert np.allclose(plain.logprobs.token_logprobs, lp.token_logprobs[n:], atol=1e-4)
    assert plain.logprobs.text_offset[0] == 0 and all(len(t) == 2 for t in plain.logprobs.top_logprobs)


def test_token_id_prompts_and_scoring_only(server, hf):
    _, tok = hf
    ids = tok("A dictionary maps keys to values")["input_ids"]
    client = server["client"]
    as_text = client.completions.create(model="tiny-lm", prompt="A dictionary maps keys to values", max_tokens=5, temperature=0)
    as_ids = client.completions.create(model="tiny-lm", prompt=ids, max_tokens=5, temperature=0)
    assert as_ids.choices[0].text == as_text.choices[0].text
    both = client.completions.create(model="tiny-lm", prompt=[ids, ids[:3]], max_tokens=0, echo=True, logprobs=0)
    rows = _logsoftmax(hf, ids)
    assert [c.index for c in both.choices] == [0, 1] and both.usage.completion_tokens == 0
    first = both.choices[0].logprobs
    assert first.token_logprobs[0] is None and len(first.tokens) == len(ids)
    assert np.allclose(first.token_logprobs[1:], [rows[j - 1, ids[j]] for j in range(1, len(ids))], atol=1e-4)
    assert both.choices[0].text == tok.decode(ids) and both.choices[1].logprobs.tokens == [tok.decode([i])
                                                                                          for i in ids[:3]]
    for bad in ([ids + [10 ** 6]], [[]], [ids, "text"]):
        with pytest.raises(openai.BadRequestError) as info:
            client.completions.create(model="tiny-lm", prompt=bad, max_tokens=1)
        assert info.value.param == "prompt"
    with pytest.raises(openai.BadRequestError) as info:  # max_tokens 0 only scores with echo
        client.completions.create(model="tiny-lm", prompt=ids, max_tokens=0)
    assert info.value.param == "max_tokens"


def test_text_offsets_and_bytes_of_special_tokens_and_characters_split_over_tokens(server, hf):
    """text_offset counts the characters of the returned text before each token: a special token the text
    leaves out adds none, and the byte-level pieces of one character start where it starts (the tokenizer's
    own offset mapping says the same); chat `bytes` are a piece's own bytes, not U+FFFD's."""
    _, tok = hf
    text = "x日本 ok"
    encoded = tok(text, return_offsets_mapping=True)
    assert len(encoded["input_ids"]) > len(text) - 1  # 日 and 本 are split over several byte-level tokens
    ids = [tok.eos_token_id] + encoded["input_ids"]  # a special token first: decoding leaves it out
    choice = server["client"].completions.create(model="tiny-lm", prompt=ids, max_tokens=0, echo=True,
                                                 logprobs=0).choices[0]
    assert choice.text == text
    assert choice.logprobs.text_offset == [0] + [start for start, _ in encoded["offset_mapping"]]

    # a byte that is no character's start (日's second piece, alone) shows as one U+FFFD in the text
    ids = tok("a")["input_ids"] + tok("日")["input_ids"][1:2] + tok("b")["input_ids"]
    choice = server["client"].completions.create(model="tiny-lm", prompt=ids, max_tokens=0, echo=True,
                                                 logprobs=0).choices[0]
    assert choice.text == tok.decode(ids) == "a\ufffdb" and choice.logprobs.text_offset == [0, 1, 2]

    first_piece = tok("日")["input_ids"][0]
    r = server["client"].chat.completions.create(
        model="tiny-lm", messages=[{"role": "user", "content": "hi"}], max_tokens=1, temperature=0, logprobs=True,
        top_logprobs=1, logit_bias={str(first_piece): 100})
    token = r.choices[0].logprobs.content[0]
    assert token.token == "\ufffd" and token.bytes == list("日".encode()[:1])


def test_n_with_a_seed_is_reproducible_and_best_of_ranks_by_summed_logprob(server):
    client = server["client"]
    ask = {"prompt": PROMPT, "max_tokens": 6, "temperature": 1.0, "seed": 11, "logprobs": 0}
    first = client.completions.create(model="tiny-lm", n=4, **ask)
    again = client.completions.create(model="tiny-lm", n=4, **ask)
    texts = [c.text for c in first.choices]
    assert texts == [c.text for c in again.choices] and len(set(texts)) > 1 and first.usage.completion_tokens == 24
    best = client.completions.create(model="tiny-lm", n=2, best_of=4, **ask)  # the same 4 samples, the 2 likeliest returned
    ranked = sorted(first.choices, key=lambda c: -sum(c.logprobs.token_logprobs))
    assert [c.text for c in best.choices] == [c.text for c in ranked[:2]]
    assert [c.index for c in best.choices] == [0, 1]
    greedy = client.completions.create(model="tiny-lm", prompt=[PROMPT, "import os"], n=2, max_tokens=5, temperature=0)
    assert [c.index for c in greedy.choices] == [0, 1, 2, 3]  # prompt-major, as OpenAI orders them
    assert greedy.choices[0].text == greedy.choices[1].text != greedy.choices[2].text == greedy.choices[3].text
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="tiny-lm", prompt=PROMPT, n=3, best_of=2)
    assert info.value.param == "best_of"


def test_streaming_carries_each_chunks_logprobs(server):
    client = server["client"]
    ask = {"prompt": PROMPT, "max_tokens": 8, "temperature": 0, "logprobs": 2, "echo": True}
    whole = client.completions.create(model="tiny-lm", **ask).choices[0]
    chunks = list(client.completions.create(model="tiny-lm", stream=True, **ask))
    texts = "".join(c.choices[0].text for c in chunks if c.choices)
    tokens = [t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.tokens]
    values = [v for c in chunks if c.choices and c.choices[0].logprobs for v in c.choices[0].logprobs.token_logprobs]
    offsets = [o for c in chunks if c.choices and c.choices[0].logprobs for o in c.choices[0].logprobs.text_offset]
    assert texts == whole.text and tokens == whole.logprobs.tokens and offsets == whole.logprobs.text_offset
    assert values[0] is None and np.allclose(values[1:], whole.logprobs.token_logprobs[1:], atol=1e-6)
    assert len([c for c in chunks if c.choices and c.choices[0].text]) > 2  # it did stream

    chat = {"messages": [{"role": "user", "content": "What is a list?"}], "max_tokens": 8, "temperature": 0,
            "logprobs": True, "top_logprobs": 3}
    answer = client.chat.completions.create(model="tiny-lm", **chat).choices[0]
    pieces = list(client.chat.completions.create(model="tiny-lm", stream=True, **chat))
    content = [t for p in pieces if p.choices and p.choices[0].logprobs for t in p.choices[0].logprobs.content]
    assert [t.token for t in content] == [t.token for t in answer.logprobs.content]
    assert np.allclose([t.logprob for t in content], [t.logprob for t in answer.logprobs.content], atol=1e-6)
    assert "".join(p.choices[0].delta.content or "" for p in pieces if p.choices) == answer.message.content


# ---------------------------------------------------------------- chat
def test_chat_logprobs_top_logprobs_and_n(server, hf):
    _, tok = hf
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is a list?"}]
    r = server["client"].chat.completions.create(model="tiny-lm", messages=messages, max_tokens=6, temperature=0,
                                                 logprobs=True, top_logprobs=4, n=2)
    assert [c.index for c in r.choices] == [0, 1] and r.choices[0].message.content == r.choices[1].message.content
    prompt_ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)[
        "input_ids"]
    content = r.choices[0].logprobs.content
    new_ids = _greedy_ids(hf, prompt_ids, len(content))
    assert [t.token for t in content] == [tok.decode([i]) for i in new_ids]
    rows = _logsoftmax(hf, prompt_ids + new_ids)
    for j, token in enumerate(content):
        row = rows[len(prompt_ids) + j - 1]
        assert abs(token.logprob - row[new_ids[j]]) < 1e-4 and new_ids[j] == int(row.argmax())
        # bytes: the token's own (a byte-level piece that is not UTF-8 alone shows as U+FFFD in `token`)
        assert bytes(token.bytes).decode("utf-8", "replace") == token.token and len(token.top_logprobs) == 4
        _check_top(token.top_logprobs, row, lambda i: tok.decode([i]), 4)
    assert "".join(t.token for t in content) == r.choices[0].message.content
    assert b"".join(bytes(t.bytes) for t in content).decode("utf-8", "replace") == tok.decode(new_ids)


# ---------------------------------------------------------------- honoured fields
def _greedy_with(hf, prompt: str, steps: int, adjust) -> str:
    """Greedy decoding by hand with transformers: `adjust(logits, made_ids)` changes the raw logits."""
    model, tok = hf
    ids = tok(prompt)["input_ids"]
    made = []
    with torch.no_grad():
        for _ in range(steps):
            logits = model(input_ids=torch.tensor([ids + made])).logits[0, -1].float()
            made.append(int(adjust(logits, made).argmax()))
    return tok.decode(made)


def test_penalties_and_logit_bias_follow_openais_definition(server, hf):
    client = server["client"]

    def penalised(logits, made):
        counts = torch.bincount(torch.tensor(made, dtype=torch.long), minlength=logits.shape[0]).float() \
            if made else torch.zeros_like(logits)
        return logits - counts * 1.5 - (counts > 0).float() * 0.7

    got = client.completions.create(model="tiny-lm", prompt=PROMPT, max_tokens=8, temperature=0, frequency_penalty=1.5,
                                    presence_penalty=0.7).choices[0].text
    assert got == _greedy_with(hf, PROMPT, 8, penalised) != _greedy_with(hf, PROMPT, 8, lambda x, m: x)
    _, tok = hf
    target = tok(" dictionary", add_special_tokens=False)["input_ids"][0]
    biased = client.completions.create(model="tiny-lm", prompt=PROMPT, max_tokens=3, temperature=0, logit_bias={str(target): 100})
    assert biased.choices[0].text == tok.decode([target] * 3)
    # identifiers and tags are accepted; they change nothing
    plain = client.chat.completions.create(model="tiny-lm", messages=[{"role": "user", "content": "hi"}], max_tokens=4, temperature=0)
    tagged = client.chat.completions.create(model="tiny-lm", messages=[{"role": "user", "content": "hi"}], max_tokens=4, temperature=0,
                                            user="u1", safety_identifier="s1", prompt_cache_key="k", store=False,
                                            metadata={"team": "a"}, service_tier="auto", modalities=["text"],
                                            parallel_tool_calls=False, response_format={"type": "text"})
    assert tagged.choices[0].message.content == plain.choices[0].message.content


# ---------------------------------------------------------------- refusals
CHAT_REFUSED = {"functions": [{"name": "f", "parameters": {}}], "function_call": "auto",
                "tool_choice": "required",  # without tools
                "audio": {"voice": "alloy", "format": "wav"}, "modalities": ["text", "audio"],
                "prediction": {"type": "content", "content": "x"}, "reasoning_effort": "low", "verbosity": "low",
                "web_search_options": {}, "store": True, "service_tier": "flex",
                "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 5}}},
                "top_logprobs": 2, "n": 129}


@pytest.mark.parametrize("field", sorted(CHAT_REFUSED))
def test_every_unsupported_chat_field_is_refused_by_name(server, field):
    with pytest.raises(openai.BadRequestError) as info:
        server["client"].chat.completions.create(model="tiny-lm", messages=[{"role": "user", "content": "hi"}], max_tokens=2,
                                                 extra_body={field: CHAT_REFUSED[field]})
    assert info.value.status_code == 400 and info.value.param == field
    assert info.value.body["type"] == "invalid_request_error" and info.value.body["message"]


@pytest.mark.parametrize("body,param", [
    ({"suffix": "end"}, "suffix"), ({"frobnicate": 1}, "frobnicate"), ({"logprobs": 6}, "logprobs"),
    ({"n": 2, "stream": True}, "n"), ({"best_of": 21}, "best_of"), ({"logit_bias": {"abc": 1}}, "logit_bias"),
    ({"presence_penalty": 3}, "presence_penalty"), ({"stream_options": {"include_usage": True}}, "stream_options"),
    ({"echo": "yes"}, "echo"), ({"top_logprobs": 2}, "top_logprobs"),
    ({"logit_bias": {"²": 1}}, "logit_bias"),  # a digit int() cannot read: was a 500
    ({"seed": 2 ** 70, "temperature": 1}, "seed")])  # beyond OpenAI's int64 (torch overflowed: was a 500)
def test_completion_refusals_name_the_field(server, body, param):
    with pytest.raises(openai.BadRequestError) as info:
        server["client"].completions.create(model="tiny-lm", prompt=PROMPT, max_tokens=2, extra_body=body)
    assert info.value.param == param
    if param == "frobnicate":
        assert info.value.body["message"] == "Unrecognized request argument supplied: frobnicate"


def test_limits_are_refused_with_the_flag_that_raises_them(server):
    client = server["client"]
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="tiny-lm", prompt=["x"] * 9, max_tokens=1)
    assert info.value.param == "prompt" and "--max-prompts" in info.value.body["message"]
    assert "at most 8" in info.value.body["message"]
    with pytest.raises(openai.BadRequestError) as info:  # 8 prompts x 20 choices x 20 tokens > 3000
        client.completions.create(model="tiny-lm", prompt=["x"] * 8, max_tokens=20, n=20, temperature=1)
    assert info.value.param == "max_tokens" and "--max-request-tokens" in info.value.body["message"]
    ok = client.completions.create(model="tiny-lm", prompt=["x"] * 8, max_tokens=2, temperature=0)
    assert len(ok.choices) == 8


# ---------------------------------------------------------------- constrained decoding
# enums, bounded numbers, booleans and short strings: the random tiny model ends its JSON within max_tokens
SCHEMA = {"type": "object", "properties": {
    "kind": {"enum": ["list", "dict", "set"]}, "size": {"type": "integer", "minimum": 0, "maximum": 99},
    "sorted": {"type": "boolean"}, "note": {"type": "string", "maxLength": 8}},
    "required": ["kind", "size", "sorted", "note"], "additionalProperties": False}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city.",
                                           "parameters": {"type": "object", "properties": {
                                               "city": {"enum": ["Paris", "Oslo"]},
                                               "unit": {"enum": ["C", "F"]}},
                                               "required": ["city", "unit"], "additionalProperties": False}}},
         {"type": "function", "function": {"name": "add", "parameters": {
             "type": "object", "properties": {"a": {"type": "integer", "minimum": -9, "maximum": 9},
                                              "b": {"type": "number", "minimum": 0, "maximum": 1}},
             "required": ["a", "b"], "additionalProperties": False}}}]
ASK = [{"role": "user", "content": "Describe the list type."}]


def _streamed(client, **ask) -> tuple[str, list, str]:
    """(content, tool_calls as (name, arguments) pairs, finish_reason) reassembled from a stream's deltas."""
    content, calls, reason = "", {}, None
    for chunk in client.chat.completions.create(model="tiny-lm", stream=True, **ask):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        content += delta.content or ""
        for call in delta.tool_calls or []:
            entry = calls.setdefault(call.index, ["", ""])
            entry[0] += call.function.name or ""
            entry[1] += call.function.arguments or ""
        reason = chunk.choices[0].finish_reason or reason
    return content, [tuple(calls[i]) for i in sorted(calls)], reason


def test_response_format_json_schema_and_json_object(server, hf):
    import jsonschema

    client = server["client"]
    fmt = {"type": "json_schema", "json_schema": {"name": "listing", "schema": SCHEMA, "strict": True}}
    ask = {"messages": ASK, "max_tokens": 60, "temperature": 0, "response_format": fmt}
    r = client.chat.completions.create(model="tiny-lm", n=2, **ask)
    answer = r.choices[0]
    assert answer.finish_reason == "stop" and r.choices[1].message.content == answer.message.content
    jsonschema.validate(json.loads(answer.message.content), SCHEMA)
    assert _streamed(client, **ask) == (answer.message.content, [], "stop")
    # sent together, a constrained and a free request may share one batch: each gets what it gets alone
    from concurrent.futures import ThreadPoolExecutor

    plain = {"prompt": PROMPT, "max_tokens": 8, "temperature": 0}
    alone = client.completions.create(model="tiny-lm", **plain).choices[0].text
    with ThreadPoolExecutor(2) as pool:
        both = [pool.submit(client.chat.completions.create, model="tiny-lm", **ask),
                pool.submit(client.completions.create, model="tiny-lm", **plain)]
        assert both[0].result().choices[0].message.content == answer.message.content
        assert both[1].result().choices[0].text == alone
    # any object: the random model's free strings run long, so logit_bias pulls "}" up; the grammar (after the
    # bias) still decides where it may go
    close = hf[1]("}", add_special_tokens=False)["input_ids"][0]
    free = client.chat.completions.create(model="tiny-lm", messages=ASK, max_tokens=60, temperature=0,
                                          logit_bias={str(close): 100},
                                          response_format={"type": "json_object"}).choices[0]
    assert free.finish_reason == "stop" and isinstance(json.loads(free.message.content), dict)
    assert free.message.content.startswith("{")
    # /v1/completions takes response_format too (vLLM's extension), also sampled
    done = client.completions.create(model="tiny-lm", prompt=PROMPT, max_tokens=60, temperature=1.0, seed=3,
                                     extra_body={"response_format": fmt}).choices[0]
    assert done.finish_reason == "stop"
    jsonschema.validate(json.loads(done.text), SCHEMA)


def test_forced_tool_calls_validate_against_the_tools_parameters(server):
    import jsonschema

    client = server["client"]
    params = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    ask = {"messages": ASK, "max_tokens": 60, "temperature": 0, "tools": TOOLS}
    required = client.chat.completions.create(model="tiny-lm", tool_choice="required", **ask).choices[0]
    named = client.chat.completions.create(
        model="tiny-lm", tool_choice={"type": "function", "function": {"name": "add"}}, **ask).choices[0]
    assert required.finish_reason == "tool_calls" and named.finish_reason == "stop"  # as OpenAI answers
    for choice in (required, named):
        (call,) = choice.message.tool_calls
        assert choice.message.content is None and call.type == "function" and call.id.startswith("call_")
        jsonschema.validate(json.loads(call.function.arguments), params[call.function.name])
    assert named.message.tool_calls[0].function.name == "add"
    streamed = _streamed(client, tool_choice="required", **ask)
    call = required.message.tool_calls[0].function
    assert streamed == ("", [(call.name, call.arguments)], "tool_calls")
    # the call goes back to the model in the next turn, with the tool's answer
    follow = ASK + [required.message.model_dump(exclude_none=True),
                    {"role": "tool", "tool_call_id": required.message.tool_calls[0].id, "content": "ok"}]
    after = client.chat.completions.create(model="tiny-lm", messages=follow, max_tokens=3, temperature=0,
                                           tools=TOOLS, tool_choice="none").choices[0]
    assert after.message.tool_calls is None and after.finish_reason in ("stop", "length")


@pytest.mark.parametrize("extra,param", [
    ({"tools": TOOLS}, "tool_choice"),  # OpenAI's default "auto" needs a model-specific parser: refused
    ({"tools": TOOLS, "tool_choice": "auto"}, "tool_choice"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"tool_choice": {"type": "function", "function": {"name": "add"}}}, "tool_choice"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
        "x": {"type": "string", "minLength": "long"}}}}}], "tool_choice": "required"}, "tools[0].function.parameters"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"not": {}}}}},
     "response_format"),
    ({"response_format": {"type": "yaml"}}, "response_format"),
    ({"response_format": {"type": "json_object"}, "stop": ["}"]}, "stop"),
    ({"response_format": {"type": "json_object"}, "tools": TOOLS, "tool_choice": "required"}, "response_format")])
def test_constraints_refused_name_the_field(server, extra, param):
    with pytest.raises(openai.BadRequestError) as info:
        server["client"].chat.completions.create(model="tiny-lm", messages=ASK, max_tokens=2, extra_body=extra)
    assert info.value.status_code == 400 and info.value.param == param and info.value.body["message"]


# ---------------------------------------------------------------- lm-evaluation-harness
MC = [{"question": q, "choices": c, "answer": a} for q, c, a in [
    ("A list in Python is", [" mutable", " immutable", " a number"], 0),
    ("The keyword to define a function is", [" def", " func", " lambda x"], 0),
    ("Tuples are", [" immutable sequences", " mutable maps", " threads"], 0),
    ("import os gives access to", [" the operating system", " the network only"], 0),
    ("A dictionary maps keys to", [" values", " functions", " nothing at all"], 0),
    ("Strings are", [" immutable", " mutable"], 1)]]
GEN = [{"question": q, "answer": a} for q, a in [("The list type is", "x"), ("def main(", "x"),
                                                 ("A generator function", "x"), ("class Foo:", "x")]]


def _tasks(tmp_path) -> None:
    for name, rows, body in [
        ("a1_mc", MC, ('output_type: multiple_choice\ndoc_to_text: "{{question}}"\ndoc_to_choice: "{{choices}}"\n'
                       "doc_to_target: answer\nmetric_list:\n  - metric: acc\n  - metric: acc_norm\n")),
        ("a1_gen", GEN, ('output_type: generate_until\ndoc_to_text: "{{question}}"\ndoc_to_target: answer\n'
                         'generation_kwargs:\n  until: ["\\n\\n"]\n  max_gen_toks: 12\n  do_sample: false\n'
                         "metric_list:\n  - metric: exact_match\n"))]:
        data = tmp_path / f"{name}.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        (tmp_path / f"{name}.yaml").write_text(
            f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n"
            f"test_split: test\n{body}")


def _evaluate(model: str, model_args: str, tasks: list[str], tmp_path, chat: bool = False) -> dict:
    import lm_eval
    from lm_eval.tasks import TaskManager

    out = lm_eval.simple_evaluate(model=model, model_args=model_args, tasks=tasks, log_samples=True,
                                  task_manager=TaskManager(include_path=str(tmp_path)), apply_chat_template=chat)
    return {task: sorted(out["samples"][task], key=lambda s: s["doc_id"]) for task in tasks}


@pytest.mark.slow
def test_lm_eval_local_completions_equal_lm_evals_hf_backend(server, folder, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    _tasks(tmp_path)
    tasks = ["a1_mc", "a1_gen"]
    ours = _evaluate("local-completions", f"model=tiny-lm,base_url={server['url']}/v1/completions,"
                                          f"tokenizer={folder},tokenizer_backend=huggingface", tasks, tmp_path)
    theirs = _evaluate("hf", f"pretrained={folder},device=cpu,dtype=float32", tasks, tmp_path)
    pairs = 0
    for a, b in zip(ours["a1_mc"], theirs["a1_mc"], strict=True):
        for (ll_a, greedy_a), (ll_b, greedy_b) in zip([r[0] for r in a["resps"]], [r[0] for r in b["resps"]],
                                                      strict=True):
            assert abs(ll_a - ll_b) < 1e-4 and greedy_a == greedy_b
            pairs += 1
        assert a["acc"] == b["acc"] and a["acc_norm"] == b["acc_norm"]
    assert pairs == sum(len(r["choices"]) for r in MC)
    got = [s["resps"][0][0] for s in ours["a1_gen"]]
    assert got == [s["resps"][0][0] for s in theirs["a1_gen"]] and any(got)


@pytest.mark.slow
def test_lm_eval_local_chat_completions_equal_lm_evals_hf_backend(server, folder, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    _tasks(tmp_path)
    ours = _evaluate("local-chat-completions", f"model=tiny-lm,base_url={server['url']}/v1/chat/completions",
                     ["a1_gen"], tmp_path, chat=True)
    theirs = _evaluate("hf", f"pretrained={folder},device=cpu,dtype=float32", ["a1_gen"], tmp_path, chat=True)
    got = [s["resps"][0][0] for s in ours["a1_gen"]]
    assert got == [s["resps"][0][0] for s in theirs["a1_gen"]] and any(got)


def test_message_fields_and_token_limits_are_honoured_or_refused_by_name(server):
    """No field is dropped unsaid: a participant's name, an unknown message field, obfuscation padding, and
    max_tokens disagreeing with max_completion_tokens are each refused naming the field."""
    client = server["client"]
    base = {"model": "tiny-lm", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "temperature": 0}
    cases = [
        ({"messages": [{"role": "user", "content": "hi", "name": "ana"}]}, "messages[0].name"),
        ({"messages": [{"role": "user", "content": "hi", "colour": "red"}]}, "messages[0].colour"),
        ({"max_completion_tokens": 5}, "max_tokens"),
        ({"stream": True, "stream_options": {"include_obfuscation": True}}, "stream_options.include_obfuscation"),
    ]
    for extra, param in cases:
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(**dict(base, **extra))
        assert caught.value.param == param, (extra, caught.value.body)
    same = client.chat.completions.create(**dict(base, max_completion_tokens=4))  # agreeing: fine
    assert same.usage.completion_tokens <= 4
