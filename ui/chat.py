"""A multi-turn chat with one causal LM: the history, a box for the next message, the answer streamed in.

    from ui import chat
    chat.chat_box(loaded, key="m_chat")    # `key` prefixes the widgets' keys and the history's place

The history lives in the browser session, one per model (switching models never mixes them; a refresh starts
afresh). Each message goes to `inference.stream` as the whole conversation (llm_lab/inference/chat.py applies
the model's chat template, or writes a "role: content" transcript for a model without one); the raw-prompt
switch sends the message alone, as text for the model to continue.

Everything shown, the person's messages and the model's answers alike, is plain text (`st.text`): a model
repeats what it was told, so its answer is no safer to render as Markdown than the message. That is also why
the answer is not streamed with `st.write_stream`, which renders each update as Markdown.
"""
import streamlit as st

from llm_lab import capabilities
from llm_lab.generation import GenerationSettings
from llm_lab.generation_defaults import SUGGESTED
from ui.common import plain, preset, user_errors

CHAT_MAX_NEW = 128
CURSOR = " ▌"  # shown after the streamed text until the answer is complete
STOPPED = {"eos": "the model ended its answer", "max_new_tokens": "max new tokens reached",
           "stop_string": "a stop string", "context": "the context is full"}


def has_template(loaded) -> bool:
    return loaded.capabilities.has(capabilities.CHAT)


def defaults(loaded) -> dict:
    """Where the settings start for a model: an instruction-tuned model (a chat template) answers well with plain
    greedy decoding; a base model loops without the penalties the other pages suggest (generation_defaults.py)."""
    if has_template(loaded):
        return {"max_new_tokens": CHAT_MAX_NEW, "repetition_penalty": 1.0, "no_repeat_ngram_size": 0}
    return dict(SUGGESTED)


# ---------------------------------------------------------------- history
def history(key: str, owner: str) -> list[dict]:
    """The turns of `owner`'s chat (a model's name), kept in the session: [{"role", "content", ...}]."""
    return st.session_state.setdefault(f"{key}_histories", {}).setdefault(owner, [])


def conversation(turns: list[dict]) -> list[dict]:
    """The turns as inference takes them: role and content only (the shown stats stay here)."""
    return [{"role": t["role"], "content": t["content"]} for t in turns]


def stats_line(result) -> str:
    return (f"{result.new_tokens} tokens · {result.tokens_per_s:.1f} tokens/s · stopped: "
            f"{STOPPED.get(result.stop_reason, result.stop_reason)}")


def show_turn(turn: dict) -> None:
    with st.chat_message(turn["role"]):
        st.text(turn["content"] or "(empty answer)")
        for line in (turn.get("stats"), turn.get("note")):
            if line:
                st.caption(plain(line))


# ---------------------------------------------------------------- settings
def settings_form(loaded, key: str, owner: str) -> GenerationSettings:
    """System prompt, raw-prompt switch (models with a chat template) and generation settings, the latter
    starting from the model's `defaults` each time another model is opened."""
    start = defaults(loaded)

    def k(name: str) -> str:  # this chat's widget key
        return f"{key}_{name}"

    preset(k("defaults"), owner, {k("max"): start["max_new_tokens"], k("rep"): start["repetition_penalty"],
                                  k("ngram"): start["no_repeat_ngram_size"], k("sample"): False, k("raw"): False})
    raw = False
    if has_template(loaded):
        raw = st.toggle("Raw prompt (no chat template)", key=k("raw"),
                        help="Send your message alone, as text for the model to continue: no chat template, no "
                             "system prompt, no earlier turns.")
    else:
        st.caption("This model has no chat template: the conversation is sent as a plain \"role: content\" "
                   "transcript, one line per turn, and the answer stops where the model would write the next "
                   "user turn.")
    system = st.text_area("System prompt", key=k("system"), height=68, disabled=raw,
                          placeholder="Empty: the model's template default",
                          help="Instructions the model reads before the conversation.")
    with st.expander("Generation settings"):
        c = st.columns(4)
        max_new = c[0].number_input("Max new tokens", 1, 2048, start["max_new_tokens"], key=k("max"))
        sample = c[1].toggle("Sample (instead of greedy)", key=k("sample"))
        temp = c[2].slider("Temperature", 0.05, 2.0, 0.8, 0.05, key=k("temp"), disabled=not sample)
        top_p = c[3].slider("Top-p", 0.05, 1.0, 0.95, 0.05, key=k("top_p"), disabled=not sample)
        c = st.columns(4)
        rep = c[0].number_input("Repetition penalty", 0.5, 3.0, float(start["repetition_penalty"]), 0.05, key=k("rep"),
                                help="1 = none. Small base models loop without one.")
        ngram = c[1].number_input("No repeated n-gram", 0, 10, start["no_repeat_ngram_size"], key=k("ngram"),
                                  help="No n-gram of this size appears twice in prompt and answer; 0 = off. "
                                       "It forbids repeating the conversation's own phrases too.")
    # sampling draws afresh each time (seed None), as a chat would; greedy needs no seed
    return GenerationSettings(do_sample=sample, temperature=temp, top_p=top_p, max_new_tokens=int(max_new),
                              repetition_penalty=float(rep), no_repeat_ngram_size=int(ngram),
                              seed=None if sample else 0, chat=not raw, system=system)


# ---------------------------------------------------------------- one answer
def stream_answer(loaded, prompt, settings: GenerationSettings):
    """Stream the answer to `prompt` (a conversation, or a raw string) into an assistant message, as plain text;
    returns the GenerationResult (None when it failed: the error is shown)."""
    from llm_lab import (
        inference,  # the model stack: imported when a message is sent, not to draw the page
    )

    result = None
    with st.chat_message("assistant"):
        box, text = st.empty(), ""
        with user_errors():
            for piece in inference.stream(loaded, prompt, settings):
                if isinstance(piece, str):
                    text += piece
                    box.text(text + CURSOR)
                else:
                    result = piece
        if result is None:  # the error is shown below what had come
            if text:
                box.text(text)
            return None
        box.text(result.text or "(empty answer)")
        st.caption(plain(stats_line(result)))
        if result.note:
            st.caption(plain(result.note))
    return result


# ---------------------------------------------------------------- the widget
def chat_box(loaded, key: str, owner: str | None = None) -> None:
    """The chat with `loaded` (a causal LM): settings, history, a "Clear chat" button and the message box.
    `owner` names the history (default: the model's registry name)."""
    owner = owner or loaded.entry.name
    settings = settings_form(loaded, key, owner)
    turns = history(key, owner)
    if st.button("Clear chat", key=f"{key}_clear", icon=":material/delete_sweep:", disabled=not turns):
        turns.clear()
    for turn in turns:
        show_turn(turn)
    message = st.chat_input("Your message", key=f"{key}_input")
    if not message:
        return
    mine = {"role": "user", "content": message, "stats": "sent as a raw prompt" if not settings.chat else None}
    show_turn(mine)
    prompt = message if not settings.chat else conversation(turns + [mine])
    result = stream_answer(loaded, prompt, settings)
    if result is not None:  # a failed answer leaves the history as it was (two user turns in a row confuse templates)
        turns += [mine, {"role": "assistant", "content": result.text, "stats": stats_line(result), "note": result.note}]
