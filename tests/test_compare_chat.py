"""Compare with chat templates: conversations as inputs, the system prompt and raw-prompt switch, the first
visit's defaults, and the Home page's list of what each built-in model is for."""
import pytest
import torch

from llm_lab import gguf, registry
from llm_lab.access import LOCAL
from llm_lab.compare import live, runs, saved, tables
from llm_lab.errors import LabError
from llm_lab.generation import GenerationSettings
from llm_lab.inference import chat
from llm_lab.registry import ModelEntry
from tests.conftest import app_test, no_exceptions
from tests.gguf_tiny import write_tiny_llama
from ui.common import plain

CONVERSATION = "user: Hello\nassistant: hi the world\nuser: hi"
TURNS = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "hi the world"},
         {"role": "user", "content": "hi"}]


def chatml(turns: list[dict]) -> str:
    """The ChatML text of `turns`, written out by hand (not through any template), ready for the answer."""
    return "".join(f"<|im_start|>{t['role']}\n{t['content']}<|im_end|>\n" for t in turns) + "<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def tiny_chats(tmp_path_factory) -> list[str]:
    """Two tiny random llama GGUFs with a ChatML template (different weights): chat-capable, loaded in a second."""
    folder = tmp_path_factory.mktemp("tiny-chat")
    for seed, name in ((1, "a.gguf"), (2, "b.gguf")):
        write_tiny_llama(folder / name, seed=seed)
    return [str(folder / "a.gguf"), str(folder / "b.gguf")]


def _load(path: str):
    return registry.load(LOCAL, path, head="causal-lm")


def _greedy_text(loaded, ids: list[int], n: int) -> str:
    """Greedy decoding straight through transformers from `ids`: what the model says to exactly that prompt."""
    out = loaded.model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                max_new_tokens=n, do_sample=False, pad_token_id=loaded.tokenizer.pad_token_id)
    return loaded.tokenizer.decode(out[0, len(ids):], skip_special_tokens=True)


# ---------------------------------------------------------------- the conversation text format
def test_conversation_text_parses_turns_and_reads_back():
    text = "System: Be brief.\nuser: Write code\nassistant: def f():\n    return 1\n\nuser:   and now in one line?  "
    turns = runs.parse_conversation(text)
    assert turns == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Write code"},
                     {"role": "assistant", "content": "def f():\n    return 1"},
                     {"role": "user", "content": "and now in one line?"}]
    assert runs.parse_conversation(runs.format_conversation(turns)) == turns
    note = runs.parse_conversation("user: Note: the colon in a turn stays\nnote: a line of the same turn")
    assert note == [{"role": "user", "content": "Note: the colon in a turn stays\nnote: a line of the same turn"}]
    with pytest.raises(LabError, match="line 1 .*belongs to no turn"):
        runs.parse_conversation("Hello there\nuser: hi")
    with pytest.raises(LabError, match="must end with a user turn"):
        runs.parse_conversation("user: hi\nassistant: hello")
    with pytest.raises(LabError, match="empty"):
        runs.parse_conversation("  \n")
    row = runs.conversation_input(turns, "x = 1")
    assert row["text"] == "and now in one line?" and row["conversation"] == turns and row["reference"] == "x = 1"
    assert runs.prompt_of(row) == turns and runs.prompt_of({"id": "1", "text": "plain"}) == "plain"


def test_reopened_form_keeps_conversation_and_chat_settings_and_old_runs_stay_raw():
    settings = GenerationSettings(max_new_tokens=5, chat=False, system="Answer in French.")
    comp = runs.assemble("generation", ["a", "b"], [runs.conversation_input(TURNS, "salut")],
                         {"a": runs.ModelOutput("failed", [], 0.0, {}), "b": runs.ModelOutput("failed", [], 0.0, {})},
                         settings.as_dict())
    back = runs.Comparison.from_dict(comp.to_dict())
    form = runs.form(back)
    assert form["conversation"] == CONVERSATION and form["reference"] == "salut" and form["texts"] is None
    assert form["settings"] == settings
    # saved before chat templates existed: no "chat" key, every prompt ran raw -> it reopens raw
    old = runs.form(runs.Comparison.from_dict({**comp.to_dict(), "settings": {"max_new_tokens": 5},
                                               "inputs": runs.make_inputs(["def f():"])}))
    assert old["conversation"] is None and old["texts"] == "def f():" and old["settings"].chat is False
    assert old["settings"].system == ""


# ---------------------------------------------------------------- the models get the whole conversation
def test_conversation_run_sends_every_turn_through_the_template(tiny_chats):
    settings = GenerationSettings(max_new_tokens=6, system="Be brief.")
    inputs = [runs.conversation_input(runs.parse_conversation(CONVERSATION))]
    models = {path: _load(path) for path in tiny_chats}
    loader = lambda name, head: models[name]  # noqa: E731  (loaded once for the whole test)
    comp = runs.run(LOCAL, "generation", tiny_chats, inputs, settings, loader=loader)
    expected_turns = [{"role": "system", "content": "Be brief."}] + TURNS
    for path, loaded in models.items():
        ids, stops = chat.prompt_ids(loaded, inputs[0]["conversation"], settings)
        by_hand = loaded.tokenizer(chatml(expected_turns), add_special_tokens=False)["input_ids"]
        assert ids == by_hand and stops == []  # the system turn and all three turns, in ChatML
        row = comp.outputs[path].rows[0]
        assert row["prompt_tokens"] == len(by_hand) and row["prompt"] == "hi"
        assert row["text"] == _greedy_text(loaded, by_hand, 6)  # the answer to exactly that prompt
    assert comp.outputs[tiny_chats[0]].rows[0]["text"] != comp.outputs[tiny_chats[1]].rows[0]["text"]
    assert list(tables.table(comp)["input"]) == ["hi"]  # the table shows the last user turn
    page = tables.to_html(comp).decode()
    assert "user: Hello" in page and "assistant: hi the world" in page and "system prompt" in page

    # the page's streamed path gives the same answers as the batched run
    sink, results = {}, {}
    for path in tiny_chats:
        text = "".join(live.pieces(loader, path, runs.prompt_of(inputs[0]), settings, sink))
        assert text == comp.outputs[path].rows[0]["text"]
        results[path] = [sink["result"]]
    streamed = live.collect(tiny_chats, inputs, results, {}, settings)
    assert streamed.outputs[tiny_chats[0]].rows[0]["prompt_tokens"] == comp.outputs[tiny_chats[0]].rows[0]["prompt_tokens"]


def test_raw_switch_sends_a_typed_prompt_as_it_is(tiny_chats):
    models = {path: _load(path) for path in tiny_chats}
    loader = lambda name, head: models[name]  # noqa: E731
    loaded = models[tiny_chats[0]]
    raw, templated = GenerationSettings(max_new_tokens=3, chat=False), GenerationSettings(max_new_tokens=3)
    comp = runs.run(LOCAL, "generation", tiny_chats, runs.make_inputs(["Hello world"]), raw, loader=loader)
    plain_ids = loaded.tokenizer("Hello world", add_special_tokens=True)["input_ids"]
    assert comp.outputs[tiny_chats[0]].rows[0]["prompt_tokens"] == len(plain_ids)
    assert comp.outputs[tiny_chats[0]].rows[0]["text"] == _greedy_text(loaded, plain_ids, 3)
    chatted = runs.run(LOCAL, "generation", tiny_chats, runs.make_inputs(["Hello world"]), templated, loader=loader)
    wrapped = loaded.tokenizer(chatml([{"role": "user", "content": "Hello world"}]), add_special_tokens=False)
    assert chatted.outputs[tiny_chats[0]].rows[0]["prompt_tokens"] == len(wrapped["input_ids"]) > len(plain_ids)


# ---------------------------------------------------------------- the real chat model, through Compare's run path
def test_builtin_chat_model_answers_a_question_in_compare(chat_model_file):
    """The function the page's job runs (runs.run), with the settings a first visit shows for this pair."""
    from ui.compare_form import first_settings

    settings = first_settings([registry.CHAT_MODEL, "tiny-gpt"])
    comp = runs.run(LOCAL, "generation", [registry.CHAT_MODEL, "tiny-gpt"],
                    runs.make_inputs(["What is the capital of France?"], references=["Paris"]), settings)
    answer = comp.outputs[registry.CHAT_MODEL].rows[0]
    assert "Paris" in answer["text"], answer["text"]
    assert answer["stop_reason"] == "eos" and answer["rouge1"] > 0  # it answers and stops
    assert "Paris" not in comp.outputs["tiny-gpt"].rows[0]["text"]  # the base GPT only continues Python docs


# ---------------------------------------------------------------- the page
@pytest.fixture
def chat_pages(tiny_chats):
    from ui import backend

    for name, path in zip(("chat-a", "chat-b"), tiny_chats):
        registry.register(LOCAL, ModelEntry(name, "local", path, "causal-lm"))
    backend.clear()
    yield
    backend.clear()


def _cid(at) -> str:
    cid = at.query_params["comparison"]
    return cid[0] if isinstance(cid, list) else cid


def test_compare_page_runs_a_conversation_with_a_system_prompt(chat_pages, tiny_chats):
    at = app_test("views/compare.py").run()
    no_exceptions(at)
    at.multiselect(key="c_models_generation").set_value(["chat-a", "chat-b"])
    at.radio(key="c_source").set_value("A conversation").run()
    no_exceptions(at)
    assert at.text_area(key="c_conversation").value.startswith("user: What is the capital of France?")
    at.text_area(key="c_conversation").set_value(CONVERSATION)
    at.text_input(key="c_system").set_value("Be brief.")
    at.toggle(key="c_raw").set_value(True)  # a conversation still goes through the template
    at.number_input(key="c_max").set_value(4)
    at.button(key="c_run").click().run()
    no_exceptions(at)
    comp = saved.get(LOCAL, _cid(at))
    assert comp.inputs[0]["conversation"] == TURNS and comp.inputs[0]["text"] == "hi"
    assert comp.settings["system"] == "Be brief." and comp.settings["chat"] is False
    by_hand = _load(tiny_chats[0]).tokenizer(chatml([{"role": "system", "content": "Be brief."}] + TURNS),
                                             add_special_tokens=False)["input_ids"]
    assert comp.outputs["chat-a"].rows[0]["prompt_tokens"] == len(by_hand)
    shown = [c.value for c in at.caption]
    assert "user: Hello" in shown and "assistant: hi the world" in shown  # the context above the prompt
    frame = next(d.value for d in at.dataframe if "input" in d.value.columns)
    assert list(frame["input"]) == ["hi"]

    again = app_test("views/compare.py")  # reopened by its link: the form starts from the conversation
    again.query_params["comparison"] = _cid(at)
    again.run()
    no_exceptions(again)
    assert again.radio(key="c_source").value == "A conversation"
    assert again.text_area(key="c_conversation").value == CONVERSATION
    assert again.text_input(key="c_system").value == "Be brief." and again.toggle(key="c_raw").value is True

    again.radio(key="c_source").set_value("Type them").run()  # a typed prompt with the raw switch on: sent as it is
    again.text_area(key="c_texts_generation").set_value("Hello world")
    again.button(key="c_run").click().run()
    no_exceptions(again)
    typed = saved.get(LOCAL, _cid(again))
    plain_ids = _load(tiny_chats[0]).tokenizer("Hello world", add_special_tokens=True)["input_ids"]
    assert typed.outputs["chat-a"].rows[0]["prompt_tokens"] == len(plain_ids)


def test_conversation_errors_are_shown_on_the_page(chat_pages):
    at = app_test("views/compare.py").run()
    at.multiselect(key="c_models_generation").set_value(["chat-a", "chat-b"])
    at.radio(key="c_source").set_value("A conversation").run()
    at.text_area(key="c_conversation").set_value("user: hi\nassistant: hello")
    at.button(key="c_run").click().run()
    no_exceptions(at)
    assert any("must end with a user turn" in e.value for e in at.error)
    at.radio(key="c_kind").set_value("classification").run()
    no_exceptions(at)
    assert any("A conversation is for generation" in i.value for i in at.info)


def test_first_visit_pairs_the_chat_model_with_tiny_gpt(chat_model_file):
    at = app_test("views/compare.py").run()
    no_exceptions(at)
    assert at.multiselect(key="c_models_generation").value == [registry.CHAT_MODEL, "tiny-gpt"]
    assert at.text_area(key="c_texts_generation").value.startswith("What is the capital of France?")
    assert not at.toggle(key="c_raw").value and at.text_input(key="c_system").value == ""
    assert (at.number_input(key="c_rep").value, at.number_input(key="c_ngram").value) == (1.0, 0)


def test_first_visit_without_the_chat_model_keeps_the_base_gpts(monkeypatch):
    monkeypatch.setattr(gguf, "builtin_chat_file", lambda: None)
    at = app_test("views/compare.py").run()
    no_exceptions(at)
    assert at.multiselect(key="c_models_generation").value == ["tiny-gpt", "small-gpt"]
    assert at.text_area(key="c_texts_generation").value.startswith("A list in Python is")
    assert (at.number_input(key="c_rep").value, at.number_input(key="c_ngram").value) == (1.2, 3)


# ---------------------------------------------------------------- Home
def _home():
    at = app_test("app.py").run()  # through app.py's navigation: Home's st.page_link needs it
    no_exceptions(at)
    return at


def test_home_says_what_each_built_in_model_is_for(chat_model_file):
    at = _home()
    lines = [m.value for m in at.markdown]
    purposes = {name: next((l for l in lines if l.startswith(f"**{name}**")), None)
                for name in (registry.CHAT_MODEL, "minilm", "minilm-sentiment", "tiny-gpt", "small-gpt")}
    assert all(purposes.values()), purposes
    assert "chat" in purposes[registry.CHAT_MODEL] and "Compare" in purposes[registry.CHAT_MODEL]
    assert "embeddings" in purposes["minilm"] and "classifier" in purposes["minilm"]
    assert "Sentiment classifier" in purposes["minilm-sentiment"]
    for base in ("tiny-gpt", "small-gpt"):
        assert "size-ladder" in purposes[base] and "does not chat" in purposes[base]
    captions = [c.value for c in at.caption]
    for entry in registry.builtin_models():  # each with its registry description (as Markdown that shows it)
        assert any(plain(entry.description)[:60] in c for c in captions), entry.name
    assert not at.info


def test_home_says_how_to_install_a_missing_chat_model(monkeypatch):
    monkeypatch.setattr(gguf, "builtin_chat_file", lambda: None)
    at = _home()
    assert not any(m.value.startswith(f"**{registry.CHAT_MODEL}**") for m in at.markdown)
    assert [i.value for i in at.info] == [registry.chat_model_missing()]
    assert gguf.CHAT_INSTALL in at.info[0].value
