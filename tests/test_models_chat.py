"""The Models page's chat with a causal LM (ui/chat.py): turns, the conversation each answer is generated from,
per-model histories, clearing, the raw-prompt switch and plain-text display."""
import pytest

from llm_lab import inference, registry
from llm_lab.access import LOCAL
from llm_lab.generation import GenerationResult, GenerationSettings
from llm_lab.generation_defaults import SUGGESTED
from tests.conftest import app_test, no_exceptions
from tests.gguf_tiny import write_tiny_llama
from ui.common import plain


@pytest.fixture(scope="module")
def tiny_chat(tmp_path_factory) -> str:
    """A tiny random llama GGUF with a ChatML template: chat-capable, loads in well under a second."""
    path = tmp_path_factory.mktemp("chat") / "tiny-chat.gguf"
    write_tiny_llama(path)
    return str(path)


@pytest.fixture
def calls(monkeypatch) -> list[dict]:
    """Every `inference.stream` call the page makes: its prompt, its settings and the result it ended with."""
    seen, real = [], inference.stream

    def spy(loaded, prompt, settings=None, **kwargs):
        call = {"prompt": prompt, "settings": settings, "loaded": loaded}
        seen.append(call)
        for piece in real(loaded, prompt, settings, **kwargs):
            if isinstance(piece, GenerationResult):
                call["result"] = piece
            yield piece

    monkeypatch.setattr(inference, "stream", spy)
    return seen


def _load(at, model: str, folder: bool = False):
    if folder:
        at.radio(key="m_source").set_value("Folder or Hub id").run()
        at.text_input(key="m_path").set_value(model).run()
    else:
        at.selectbox(key="m_name").set_value(model).run()
    assert at.selectbox(key="m_head").value == "causal-lm"
    at.button(key="m_load").click().run()
    no_exceptions(at)
    assert not at.error, [e.value for e in at.error]
    return at


def _open(model: str, folder: bool = False):
    at = app_test("app.py").run()
    at.switch_page("views/models.py").run()
    no_exceptions(at)
    return _load(at, model, folder)


def _say(at, text: str):
    at.chat_input(key="m_chat_input").set_value(text).run()
    no_exceptions(at)
    assert not at.error, [e.value for e in at.error]
    return at


def _messages(at) -> list[tuple[str, str]]:
    """(role, text shown) of each chat message, in order."""
    return [(m.name, m.text[0].value) for m in at.chat_message]


def _history(at, owner: str) -> list[dict]:
    return at.session_state["m_chat_histories"].get(owner, [])


def test_two_turns_send_the_whole_conversation_and_clear_empties_it(tiny_chat, calls):
    at = _open(tiny_chat, folder=True)
    # a model with a chat template starts from plain greedy decoding, 128 new tokens
    assert at.number_input(key="m_chat_max").value == 128
    assert (at.number_input(key="m_chat_rep").value, at.number_input(key="m_chat_ngram").value) == (1.0, 0)
    assert at.toggle(key="m_chat_sample").value is False and at.toggle(key="m_chat_raw").value is False
    assert not at.chat_message and at.button(key="m_chat_clear").disabled

    _say(at, "Hello")
    first = calls[0]["result"]
    assert calls[0]["prompt"] == [{"role": "user", "content": "Hello"}]
    assert calls[0]["settings"].chat and not calls[0]["settings"].do_sample
    assert calls[0]["settings"].max_new_tokens == 128
    # the streamed answer is the batch generator's answer to the same conversation (greedy: one answer)
    batch = inference.generate(calls[0]["loaded"], [calls[0]["prompt"]], calls[0]["settings"])[0]
    assert first.text == batch.text and first.new_tokens == batch.new_tokens
    assert _messages(at) == [("user", "Hello"), ("assistant", first.text or "(empty answer)")]
    stats = at.chat_message[1].caption[0].value
    assert stats.startswith(plain(f"{first.new_tokens} tokens · {first.tokens_per_s:.1f} tokens/s · stopped: "))

    _say(at, "hi again")
    assert len(calls) == 2
    assert calls[1]["prompt"] == [{"role": "user", "content": "Hello"},
                                  {"role": "assistant", "content": first.text},
                                  {"role": "user", "content": "hi again"}]
    second = calls[1]["result"]
    assert [m for m, _ in _messages(at)] == ["user", "assistant", "user", "assistant"]
    assert _messages(at)[3] == ("assistant", second.text or "(empty answer)")
    assert [t["content"] for t in _history(at, tiny_chat)] == ["Hello", first.text, "hi again", second.text]

    at.button(key="m_chat_clear").click().run()
    no_exceptions(at)
    assert not at.chat_message and _history(at, tiny_chat) == []
    _say(at, "fresh start")
    assert calls[2]["prompt"] == [{"role": "user", "content": "fresh start"}]


def test_the_system_prompt_and_the_raw_switch_reach_the_model(tiny_chat, calls):
    at = _open(tiny_chat, folder=True)
    at.text_area(key="m_chat_system").set_value("Answer in French.").run()
    _say(at, "Hello")
    assert calls[0]["settings"].system == "Answer in French." and calls[0]["settings"].chat
    at.toggle(key="m_chat_raw").set_value(True).run()
    assert at.text_area(key="m_chat_system").disabled
    _say(at, "Once upon a time")
    # raw: the message alone, as a string, with the template off
    assert calls[1]["prompt"] == "Once upon a time" and calls[1]["settings"].chat is False
    assert "sent as a raw prompt" in at.chat_message[2].caption[0].value


def test_histories_are_per_model_and_a_base_model_gets_the_suggested_settings(tiny_chat, calls):
    at = _open(tiny_chat, folder=True)
    _say(at, "Hello")
    at.radio(key="m_source").set_value("Registry").run()
    _load(at, "tiny-gpt")
    assert not at.chat_message  # another model: its own (empty) chat
    assert any('"role: content" transcript' in c.value for c in at.caption)
    assert not [t for t in at.toggle if t.key == "m_chat_raw"]  # no template, no switch
    # a base model starts from the penalties the other pages suggest
    assert at.number_input(key="m_chat_max").value == SUGGESTED["max_new_tokens"]
    assert at.number_input(key="m_chat_rep").value == SUGGESTED["repetition_penalty"]
    assert at.number_input(key="m_chat_ngram").value == SUGGESTED["no_repeat_ngram_size"]
    _say(at, "A list in Python is")
    assert calls[1]["prompt"] == [{"role": "user", "content": "A list in Python is"}]
    settings = calls[1]["settings"]
    assert (settings.max_new_tokens, settings.repetition_penalty, settings.no_repeat_ngram_size) == (
        SUGGESTED["max_new_tokens"], SUGGESTED["repetition_penalty"], SUGGESTED["no_repeat_ngram_size"])
    # the transcript's stop: the answer never runs into the user's next turn
    assert "\nuser:" not in calls[1]["result"].text
    assert len(_history(at, "tiny-gpt")) == 2 and len(_history(at, tiny_chat)) == 2
    _load(at, tiny_chat, folder=True)
    assert [m for m, _ in _messages(at)] == ["user", "assistant"] and _messages(at)[0] == ("user", "Hello")


def test_messages_and_answers_are_shown_as_plain_text(tiny_chat, monkeypatch):
    typed, answer = "**bold** <b>x</b>", "# Title\n- [link](http://evil.example) <img src=x onerror=alert(1)>"

    def fake(loaded, prompt, settings=None, **kwargs):
        yield answer[:7]
        yield answer[7:]
        yield GenerationResult(prompt=typed, text=answer, new_tokens=9, latency_s=0.5, tokens_per_s=18.0,
                               mean_logprob=-1.0, stop_reason="eos", note="The prompt was cut *from the left*.")

    monkeypatch.setattr(inference, "stream", fake)
    at = _open(tiny_chat, folder=True)
    _say(at, typed)
    assert _messages(at) == [("user", typed), ("assistant", answer)]
    assert not [m.value for m in at.markdown if "<b>" in m.value or "](http" in m.value]
    captions = [c.value for c in at.chat_message[1].caption]
    assert captions[0] == plain("9 tokens · 18.0 tokens/s · stopped: the model ended its answer")
    assert captions[1] == plain("The prompt was cut *from the left*.")


def test_a_failed_answer_shows_the_error_and_keeps_the_history(tiny_chat, monkeypatch):
    from llm_lab.generation import GenerationError

    def broken(loaded, prompt, settings=None, **kwargs):
        yield "partial"
        raise GenerationError("The model ran out of <memory>: try fewer new tokens.")

    at = _open(tiny_chat, folder=True)
    monkeypatch.setattr(inference, "stream", broken)
    at.chat_input(key="m_chat_input").set_value("Hello").run()
    no_exceptions(at)
    assert [e.value for e in at.error] == [plain("The model ran out of <memory>: try fewer new tokens.")]
    assert at.chat_message[-1].text[0].value == "partial"  # what had come stays, without the cursor
    assert _history(at, tiny_chat) == []  # no user turn left without its answer


def test_settings_reach_generation(tiny_chat, calls):
    at = _open(tiny_chat, folder=True)
    at.number_input(key="m_chat_max").set_value(5)
    at.toggle(key="m_chat_sample").set_value(True).run()
    at.slider(key="m_chat_temp").set_value(0.5).run()
    _say(at, "Hello")
    s: GenerationSettings = calls[0]["settings"]
    assert (s.max_new_tokens, s.do_sample, s.temperature, s.seed) == (5, True, 0.5, None)
    assert calls[0]["result"].new_tokens <= 5


def test_the_tiny_chat_model_is_chat_capable(tiny_chat):
    """The fixture the tests above rely on: a GGUF with a chat template opens with the chat capability."""
    from llm_lab import capabilities

    assert registry.load(LOCAL, tiny_chat).capabilities.has(capabilities.CHAT)
