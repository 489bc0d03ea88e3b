"""Chat: the one place a prompt or a conversation becomes the token ids a causal LM generates from.

A prompt is a string (one user turn) or a conversation: a list of {"role": "system" | "user" | "assistant",
"content": str}. A model whose tokenizer has a chat template (`capabilities.CHAT`) gets it through
`tokenizer.apply_chat_template(..., add_generation_prompt=True)`, which writes the special tokens itself, with
`GenerationSettings.system` as the system turn when given. `GenerationSettings.chat = False` (the "raw prompt"
switch) sends a string as it is, so base models and plain completion work as before. A model without a chat
template gets a conversation as a plain transcript, one "role: content" line per turn, and stops before it
would write the user's next turn.

Compare, Arena, the Models page's chat, `serve`'s /v1/chat/completions, the generation task and generation
attributions all come through here, so the same question gets the same tokens everywhere.
"""
from __future__ import annotations

from .. import capabilities as caps
from ..generation import GenerationError

ROLES = ("system", "user", "assistant")
TRANSCRIPT_STOP = "\nuser:"  # a model without a chat template stops before writing the user's next turn


def is_conversation(prompt) -> bool:
    return isinstance(prompt, (list, tuple))


def check_conversation(messages, where: str = "The conversation") -> list[dict]:
    """Messages as [{"role", "content": str}], checked: known roles, text content, ending with a user turn."""
    checked = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES + ("developer",):
            raise GenerationError(f"{where}: turn {i + 1} needs a role ({', '.join(ROLES)}) and a content.")
        content = message.get("content")
        if not isinstance(content, str):
            raise GenerationError(f"{where}: turn {i + 1}'s content must be text.")
        role = "system" if message["role"] == "developer" else message["role"]
        checked.append({"role": role, "content": content})
    if not checked or checked[-1]["role"] != "user" or not checked[-1]["content"].strip():
        raise GenerationError(f"{where} must end with a user turn that has some text: type a message.")
    return checked


def last_user_text(prompt) -> str:
    """What a result shows as its prompt: the string, or a conversation's last user turn."""
    return prompt if isinstance(prompt, str) else prompt[-1]["content"]


def has_template(loaded) -> bool:
    return loaded.capabilities.has(caps.CHAT)


def applies(loaded, prompt, settings) -> bool:
    """Whether this prompt goes through the model's chat template: a conversation always does when the model
    has one; a plain string does unless the raw-prompt switch is on."""
    return has_template(loaded) and (is_conversation(prompt) or settings.chat)


def messages(prompt, settings) -> list[dict]:
    """The conversation for a prompt: the system turn of the settings (unless the conversation has its own),
    then the turns (a string is one user turn)."""
    turns = check_conversation(prompt) if is_conversation(prompt) else [{"role": "user", "content": prompt}]
    if settings.system.strip() and not any(t["role"] == "system" for t in turns):
        turns = [{"role": "system", "content": settings.system.strip()}] + turns
    return turns


def _applied(tokenizer, turns: list[dict], **kwargs):
    """`apply_chat_template`, its refusals as a GenerationError: templates raise jinja's TemplateError for
    conversations they do not take (Gemma: no system role; Mistral: roles must alternate)."""
    try:
        return tokenizer.apply_chat_template(turns, add_generation_prompt=True, **kwargs)
    except Exception as exc:  # noqa: BLE001  jinja2's errors and whatever a template's raise_exception raises
        raise GenerationError(f"The model's chat template refused this conversation: {exc}. Check the roles (some "
                              "templates take no system prompt, others need user and assistant turns to "
                              "alternate), or switch on Raw prompt.") from exc


def template_ids(tokenizer, turns: list[dict]) -> list[int]:
    """The chat template's token ids for `turns`, ready for the assistant's answer."""
    encoded = _applied(tokenizer, turns, tokenize=True)
    ids = encoded["input_ids"] if hasattr(encoded, "keys") else encoded  # transformers 5 returns a BatchEncoding
    return list(ids[0] if ids and isinstance(ids[0], list) else ids)


def transcript(turns: list[dict]) -> str:
    """The chat prompt of a model without a chat template: one "role: content" line per turn, then
    "assistant:" for the model to go on from."""
    lines = [f"{'system' if t['role'] == 'developer' else t['role']}: {t['content']}" for t in turns]
    return "\n".join(lines) + "\nassistant:"


def prompt_ids(loaded, prompt, settings) -> tuple[list[int], list[str]]:
    """The token ids a prompt or conversation generates from, and the stop strings it implies."""
    tok = loaded.tokenizer
    if applies(loaded, prompt, settings):
        return template_ids(tok, messages(prompt, settings)), []
    if is_conversation(prompt):
        return tok(transcript(messages(prompt, settings)), add_special_tokens=True)["input_ids"], [TRANSCRIPT_STOP]
    return tok(prompt, add_special_tokens=True)["input_ids"], []


def prompt_text(loaded, prompt, settings) -> str:
    """The text the model reads for a prompt (the template applied), for an endpoint or a display."""
    if applies(loaded, prompt, settings):
        return _applied(loaded.tokenizer, messages(prompt, settings), tokenize=False)
    if is_conversation(prompt):
        return transcript(messages(prompt, settings))
    return prompt
