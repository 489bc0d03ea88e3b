"""The chat template everywhere a chat model generates: serve's /v1/chat/completions, the benchmark generation task
and generation attributions read the same token ids as `tokenizer.apply_chat_template(messages,
add_generation_prompt=True)`; /v1/completions and `chat: false` read the raw prompt.

Most tests use the tiny random GGUF chat model (tests/gguf_tiny.py, ChatML template, loads in under a second);
the built-in smollm2-chat shows that the templated question gets a sensible answer.
"""
import numpy as np
import pytest
import torch

from llm_lab import registry
from llm_lab.access import LOCAL
from llm_lab.generation import GenerationSettings
from llm_lab.inference import chat
from llm_lab.serve import app as serve_app
from tests.gguf_tiny import write_tiny_llama

QUESTION = "What is the capital of France?"
CONVERSATION = [{"role": "system", "content": "You answer in one word."},
                {"role": "user", "content": "Hello world"},
                {"role": "assistant", "content": "hi"},
                {"role": "user", "content": "Name the capital of France."}]


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    return write_tiny_llama(tmp_path_factory.mktemp("tiny-chat") / "tiny.gguf")["path"]


@pytest.fixture(scope="module")
def tiny_chat(tiny_file):
    return registry.load(LOCAL, str(tiny_file))


@pytest.fixture(scope="module")
def smollm2(chat_model_file):
    return registry.load(LOCAL, registry.CHAT_MODEL)


@pytest.fixture(params=["tiny", "smollm2"])
def chat_lm(request):
    return request.getfixturevalue("tiny_chat" if request.param == "tiny" else "smollm2")


def _template(loaded, turns) -> list[int]:
    """transformers' own answer: the reference every path must equal."""
    encoded = loaded.tokenizer.apply_chat_template(turns, add_generation_prompt=True)
    return list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)


def _server(loaded):
    return serve_app.Server(loaded, [], max_batch=1, window_ms=0, max_body=1 << 16)


# ---------------------------------------------------------------- the ids
def test_the_tiny_models_template_is_chatml_written_out(tiny_chat):
    """An independent check of the reference itself: ChatML text, tokenized without added special tokens."""
    text = "<|im_start|>user\nHello world<|im_end|>\n<|im_start|>assistant\n"
    expected = tiny_chat.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert chat.prompt_ids(tiny_chat, "Hello world", GenerationSettings()) == (expected, [])
    assert expected[0] == tiny_chat.tokenizer.convert_tokens_to_ids("<|im_start|>")


def test_a_prompt_and_a_conversation_get_the_templates_ids_everywhere(chat_lm):
    single = [{"role": "user", "content": QUESTION}]
    assert chat.has_template(chat_lm)
    assert chat.prompt_ids(chat_lm, QUESTION, GenerationSettings()) == (_template(chat_lm, single), [])
    assert _server(chat_lm).chat_ids(single) == (_template(chat_lm, single), [])
    assert chat.prompt_ids(chat_lm, CONVERSATION, GenerationSettings()) == (_template(chat_lm, CONVERSATION), [])
    assert _server(chat_lm).chat_ids(CONVERSATION) == (_template(chat_lm, CONVERSATION), [])
    # the settings' system turn comes first; the raw switch gives the plain tokens
    with_system = chat.prompt_ids(chat_lm, QUESTION, GenerationSettings(system="Be brief."))[0]
    assert with_system == _template(chat_lm, [{"role": "system", "content": "Be brief."}] + single)
    raw = chat.prompt_ids(chat_lm, QUESTION, GenerationSettings(chat=False))[0]
    assert raw == chat_lm.tokenizer(QUESTION)["input_ids"] != _template(chat_lm, single)


# ---------------------------------------------------------------- serve
def test_serve_chat_is_templated_and_completions_stay_raw(tiny_chat):
    from fastapi.testclient import TestClient

    ask = {"messages": CONVERSATION, "max_tokens": 3, "temperature": 0}
    expected_chat = tiny_chat.tokenizer.decode(_greedy(tiny_chat, _template(tiny_chat, CONVERSATION), 3),
                                               skip_special_tokens=True)
    raw_ids = tiny_chat.tokenizer("Hello world")["input_ids"]
    with TestClient(serve_app.create_app(tiny_chat, None, names=["tiny-chat"])) as client:
        body = client.post("/v1/chat/completions", json=ask).json()
        completion = client.post("/v1/completions", json={"prompt": "Hello world", "max_tokens": 3,
                                                          "temperature": 0}).json()
    assert body["usage"]["prompt_tokens"] == len(_template(tiny_chat, CONVERSATION))
    assert body["choices"][0]["message"]["content"] == expected_chat
    assert completion["usage"]["prompt_tokens"] == len(raw_ids)
    assert completion["choices"][0]["text"] == tiny_chat.tokenizer.decode(_greedy(tiny_chat, raw_ids, 3),
                                                                          skip_special_tokens=True)


def _greedy(loaded, ids: list[int], n: int) -> list[int]:
    """n greedy tokens by repeated full forward passes (no generate(), no cache): the independent reference."""
    seq = list(ids)
    with torch.no_grad():
        for _ in range(n):
            logits = loaded.model(input_ids=torch.tensor([seq], device=loaded.device)).logits[0, -1]
            seq.append(int(torch.argmax(logits)))
            if seq[-1] == loaded.tokenizer.eos_token_id:
                break
    out = seq[len(ids):]
    return out[:-1] if out and out[-1] == loaded.tokenizer.eos_token_id else out


def test_served_chat_model_answers_paris_in_openais_shape(smollm2):
    from fastapi.testclient import TestClient

    messages = [{"role": "user", "content": QUESTION}]
    with TestClient(serve_app.create_app(smollm2, None, names=[registry.CHAT_MODEL])) as client:
        r = client.post("/v1/chat/completions", json={"model": registry.CHAT_MODEL, "messages": messages,
                                                      "max_tokens": 48, "temperature": 0})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["model"] == registry.CHAT_MODEL and isinstance(body["created"], int)
    (choice,) = body["choices"]
    assert choice["index"] == 0 and choice["message"]["role"] == "assistant"
    assert "Paris" in choice["message"]["content"] and "<|im_end|>" not in choice["message"]["content"]
    assert choice["finish_reason"] == "stop"  # the end-of-turn token, well before 48 tokens
    prompt_tokens = len(_template(smollm2, messages))
    used = body["usage"]
    assert used["prompt_tokens"] == prompt_tokens and 0 < used["completion_tokens"] < 48
    assert used["total_tokens"] == prompt_tokens + used["completion_tokens"]
    # the same answer as Compare, Arena and the Models page get (inference.generate with its default settings)
    direct = _generate(smollm2, QUESTION, 48)
    assert choice["message"]["content"] == direct.text


def _generate(loaded, prompt, n: int, **settings):
    from llm_lab import inference

    return inference.generate(loaded, [prompt], GenerationSettings(max_new_tokens=n, **settings))[0]


# ---------------------------------------------------------------- the benchmark generation task
def _spy_generate(monkeypatch) -> list[list[int]]:
    """The prompt ids every generate call of inference.generate hands the model (padding removed)."""
    import importlib

    gen_module = importlib.import_module("llm_lab.inference.generate")  # the package's `generate` is the function
    seen, real = [], gen_module.generate_ids

    def spy(model, input_ids=None, attention_mask=None, **kwargs):
        seen.extend(row[mask.bool()].tolist() for row, mask in zip(input_ids, attention_mask))
        return real(model, input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    monkeypatch.setattr(gen_module, "generate_ids", spy)
    return seen


def _run_task(model: str, extra: str = ""):
    from llm_lab.bench import runner, suite

    s = suite.parse("name: chat\ntasks:\n  - name: answers\n    type: generation\n    dataset: demo-prompts\n"
                    f"    limit: 3\n    generation: {{max_new_tokens: 2}}\n{extra}", "t")
    (result,) = runner.run_suite(LOCAL, s, [model], use_cache=False)
    assert result.status == "ok", result.error
    return result, s.tasks[0]


def test_the_generation_task_sends_a_chat_model_templated_prompts(tiny_file, tiny_chat, monkeypatch):
    from llm_lab.bench.tasks import generation as gen_task

    seen = _spy_generate(monkeypatch)
    result, spec = _run_task(str(tiny_file), '    system: "Be brief."\n')
    prompts = [row["text"] for row in result.per_example]
    expected = [_template(tiny_chat, [{"role": "system", "content": "Be brief."}, {"role": "user", "content": p}])
                for p in prompts]
    assert sorted(seen) == sorted(expected)
    assert result.details["chat_template"] is True and all(r["chat_template"] for r in result.per_example)
    assert result.details["prompt_read"] == tiny_chat.tokenizer.decode(expected[0])
    assert result.details["generation"]["chat"] is True and result.details["generation"]["system"] == "Be brief."
    assert any("chat template" in n and "Be brief." in n for n in result.notes)
    assert result.repro.settings["task_version"] == gen_task.VERSION == 3  # results of the raw-prompt task are not served

    seen.clear()
    raw, raw_spec = _run_task(str(tiny_file), "    chat: false\n")
    assert sorted(seen) == sorted(tiny_chat.tokenizer(p)["input_ids"] for p in prompts)
    assert raw.details["chat_template"] is False and not any(r["chat_template"] for r in raw.per_example)
    assert raw.details["prompt_read"] == prompts[0]
    assert any("`chat: false`" in n for n in raw.notes)
    assert raw.key != result.key and raw_spec.definition_hash() != spec.definition_hash()


def test_chat_fields_are_checked_and_old_definitions_keep_their_hash():
    from llm_lab.bench import suite
    from llm_lab.errors import LabError

    base = "name: s\ntasks:\n  - name: a\n    type: {kind}\n    dataset: d\n{extra}"
    plain = suite.parse(base.format(kind="generation", extra=""), "t").tasks[0]
    assert (plain.chat, plain.system) == (True, "")
    assert "chat" not in plain.definition() and "system" not in plain.definition()  # defaults: hash unchanged
    bad = [("generation", "    chat: maybe\n", "`chat` is true"),
           ("generation", "    system: [a]\n", "`system` is the text"),
           ("classification", "    chat: false\n", "`chat` belongs to a generation task"),
           ("generation", "    generation: {chat: false}\n", "a field of the task itself")]
    for kind, extra, message in bad:
        with pytest.raises(LabError, match=message):
            suite.parse(base.format(kind=kind, extra=extra), "t")


def test_a_base_model_gets_the_raw_prompt_and_says_system_was_not_used(tiny_gpt2, monkeypatch):
    from llm_lab.bench import runner, suite

    seen = _spy_generate(monkeypatch)
    s = suite.parse("name: chat\ntasks:\n  - name: answers\n    type: generation\n    dataset: demo-prompts\n"
                    "    limit: 2\n    system: Be brief.\n    generation: {max_new_tokens: 2}\n", "t")
    (result,) = runner.run_suite(LOCAL, s, [str(tiny_gpt2)], use_cache=False)
    assert result.status == "ok", result.error
    lm = registry.load(LOCAL, str(tiny_gpt2))
    assert sorted(seen) == sorted(lm.tokenizer(r["text"])["input_ids"] for r in result.per_example)
    assert result.details["chat_template"] is False
    assert any("no chat template" in n and "`system` was not used" in n for n in result.notes)


# ---------------------------------------------------------------- generation attributions
def test_attributions_read_the_templated_prompt_and_captum_columns_line_up(tiny_chat):
    from llm_lab.explain import generation
    from llm_lab.explain import text as textmod

    expected = _template(tiny_chat, [{"role": "user", "content": "Hello world"}])
    ours = generation.attribute_generation(tiny_chat, "Hello world", 2, "gen_ig", n_steps=4, include_generated=False)
    assert ours.chat_template and ours.prompt == "Hello world"
    assert ours.prompt_tokens == textmod.readable(tiny_chat.tokenizer, expected)
    assert ours.prompt_tokens[:3] == ["<|im_start|>", "user", "\\n"] and ours.prompt_tokens[-2] == "assistant"
    assert any("chat template" in n for n in ours.notes)
    # Captum drops special tokens from its columns: they are put back, so column j is prompt token j in both
    ref = generation.attribute_generation(tiny_chat, "Hello world", 2, "gen_captum_ig", n_steps=4)
    p = len(expected)
    a, b = ours.array()[:, :p], ref.array()[:, :p]
    special = np.array([t in tiny_chat.tokenizer.all_special_ids for t in expected])
    assert special.sum() == 3 and (a[:, special] == 0).all() and (b[:, special] == 0).all()
    assert np.abs(a - b).max() <= 1e-3 * np.abs(b).max() + 1e-7
    assert np.abs(b[:, ~special]).max() > 0

    raw = generation.attribute_generation(tiny_chat, "Hello world", 2, "gen_ig", n_steps=2, chat_template=False)
    assert not raw.chat_template
    assert raw.prompt_tokens == textmod.readable(tiny_chat.tokenizer, tiny_chat.tokenizer("Hello world")["input_ids"])


@pytest.mark.slow  # integrated gradients through the 135M model: ~20 s on 2 free cores
def test_attributing_the_chat_models_answer_explains_paris(smollm2):
    from llm_lab.explain import generation
    from llm_lab.explain import text as textmod

    g = generation.attribute_generation(smollm2, QUESTION, 8, "gen_ig", n_steps=2, chunk_tokens=8)
    assert g.prompt_tokens == textmod.readable(smollm2.tokenizer, _template(smollm2, [
        {"role": "user", "content": QUESTION}]))
    # "The capital of France is Paris." and the end-of-turn token, where a chat answer stops
    assert "Paris" in "".join(g.output_tokens) and g.output_tokens[-1] == "<|im_end|>"
    assert g.array().shape == (len(g.output_tokens), len(g.prompt_tokens) + len(g.output_tokens))
