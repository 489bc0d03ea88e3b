"""The Compare page's form: generation settings, the first visit's defaults, and filling the form from a reopened
comparison."""
import streamlit as st

from llm_lab import registry
from llm_lab.compare import live, runs
from llm_lab.generation import GenerationSettings
from llm_lab.generation_defaults import SUGGESTED
from ui.common import preset

TYPED, CONVERSATION, DATASET = "Type them", "A conversation", "Rows of a dataset"
SOURCES = [TYPED, CONVERSATION, DATASET]
# the generation settings' widgets: key -> (lowest, highest)
LIMITS = {"c_max": (1, 2048), "c_rep": (0.5, 3.0), "c_ngram": (0, 10), "c_seed": (0, 2**31 - 1), "c_temp": (0.05, 2.0),
          "c_top_p": (0.05, 1.0), "c_top_k": (0, 5000)}
# What a first visit compares: the chat model against the smallest base GPT (an instruction-tuned model and one
# that only continues Python docs: the difference shows at once), else the first two models that generate.
CHAT_PAIR = [registry.CHAT_MODEL, "tiny-gpt"]
EXAMPLES = {"generation": "A list in Python is\ndef fibonacci(n):\nAn exception is raised when",
            "chat": "What is the capital of France?\nWhat is the largest ocean on Earth?\n"
                    "Write a Python function that reverses a string.",
            "classification": "I loved it, works perfectly\nBroke after one day\nThe box contains two cables"}
CONVERSATION_EXAMPLE = ("user: What is the capital of France?\nassistant: The capital of France is Paris.\n"
                        "user: And what is the capital of Italy?")


def default_models(mode: str, names: list[str]) -> list[str]:
    """The models a first visit starts with (see CHAT_PAIR)."""
    if mode == "generation" and all(m in names for m in CHAT_PAIR) and registry.chat_model_missing() is None:
        return list(CHAT_PAIR)
    return names[:2]


def example_prompts(mode: str, models: list[str]) -> str:
    """The prompts a first visit starts with: factual questions and a code request for the chat pair (one model
    answers, the other continues the text), Python openings for the base GPTs (what they were trained on)."""
    if mode != "generation":
        return EXAMPLES["classification"]
    return EXAMPLES["chat" if registry.CHAT_MODEL in models else "generation"]


def first_settings(models: list[str]) -> GenerationSettings:
    """The settings a first visit shows for `models`. With the chat model: plain greedy. The repetition penalty
    and the ban on repeated trigrams keep the tiny base GPTs from looping, but they count the prompt too, so
    they spoil a chat model's answers (measured with smollm2-chat: "The capital of French-speaking countries is
    Paris.", nonsense comments in code, rambling to the token limit). Its base-GPT partner loops instead, which
    shows what a base model is. Without the chat model: the suggested settings."""
    if registry.CHAT_MODEL in models:
        return GenerationSettings(max_new_tokens=SUGGESTED["max_new_tokens"])
    return GenerationSettings(**SUGGESTED)


def settings_form(defaults: GenerationSettings) -> GenerationSettings:
    """The generation settings' widgets, starting from `defaults` (see `first_settings`)."""
    with st.expander("Generation settings (shared by all models)"):
        c = st.columns(5)
        decoding = c[0].radio("Decoding", ["greedy", "sampling"], horizontal=True, key="c_mode")
        max_new = c[1].number_input("Max new tokens", *LIMITS["c_max"], defaults.max_new_tokens, key="c_max")
        rep = c[2].number_input("Repetition penalty", *LIMITS["c_rep"], defaults.repetition_penalty, 0.05,
                                key="c_rep", help=f"1 = none. The tiny base GPTs loop without one (suggested: "
                                                  f"{SUGGESTED['repetition_penalty']}); it makes chat models' "
                                                  "answers worse.")
        ngram = c[3].number_input("No repeated n-gram", *LIMITS["c_ngram"], defaults.no_repeat_ngram_size,
                                  key="c_ngram", help="No n-gram of this size appears twice in prompt and answer; "
                                                      f"0 = off. Suggested for the base GPTs: "
                                                      f"{SUGGESTED['no_repeat_ngram_size']}; off for chat models "
                                                      "(they could not repeat the question's words).")
        seed = c[4].number_input("Seed", *LIMITS["c_seed"], 0, key="c_seed")
        c = st.columns(4)
        greedy = decoding == "greedy"
        temp = c[0].slider("Temperature", *LIMITS["c_temp"], 0.8, 0.05, disabled=greedy, key="c_temp")
        top_p = c[1].slider("Top-p", *LIMITS["c_top_p"], 0.95, 0.05, disabled=greedy, key="c_top_p")
        top_k = c[2].number_input("Top-k (0 = off)", *LIMITS["c_top_k"], 50, disabled=greedy, key="c_top_k")
        stops = c[3].text_input("Stop strings", "", key="c_stop", help="Separate with |; \\n is a newline.")
        c = st.columns([3, 2])
        # a text input, not a text area: the page's first text area stays the prompts' box
        system = c[0].text_input("System prompt", "", key="c_system", placeholder="empty: the template's own default",
                                 help="The system turn of a chat model's template (models without a chat template "
                                      "get it as a \"system:\" line in conversations only). Empty: the template "
                                      "decides (SmolLM2's says it is a helpful assistant).")
        raw = c[1].toggle("Raw prompt (no chat template)", False, key="c_raw",
                          help="Send each typed prompt as it is, for plain completion. Off: a model with a chat "
                               "template gets the prompt as a user turn. Base models (tiny-gpt, small-gpt) have no "
                               "template, so this changes nothing for them; a conversation always uses the template.")
    return GenerationSettings(do_sample=not greedy, temperature=temp, top_p=top_p, top_k=int(top_k),
                              max_new_tokens=int(max_new), repetition_penalty=rep, no_repeat_ngram_size=int(ngram),
                              seed=int(seed), stop=live.parse_stops(stops), chat=not raw, system=system)


def conversation_box() -> tuple[str, str]:
    """The conversation editor: its text (see `runs.parse_conversation`) and an optional reference answer."""
    text = st.text_area("Conversation", CONVERSATION_EXAMPLE, height=180, key="c_conversation",
                        help="One turn per line, starting with \"user:\", \"assistant:\" or \"system:\"; a line "
                             "without one goes on with the turn above (code, lists). End with the user turn every "
                             "model answers; the turns above it are its context.")
    st.caption("Plain text rather than a table: a turn can hold code or several lines, it pastes from anywhere, "
               "and it reads like the chat it is.")
    reference = st.text_input("Reference answer to the last turn (optional)", key="c_conv_ref")
    return text, reference


def prefill(comp: runs.Comparison) -> None:
    """The form starts from the comparison opened: its mode, models, inputs and settings (once per
    comparison; what the person changes afterwards stays)."""
    form = runs.form(comp)
    mode = form["mode"]
    values = {"c_kind": mode, f"c_models_{mode}": form["models"]}
    if form["dataset"]:
        values.update(c_source=DATASET, c_dataset=form["dataset"], c_split=form["split"] or "all",
                      c_limit=int(form["limit"] or 32))
    elif form["conversation"]:
        values.update(c_source=CONVERSATION, c_conversation=form["conversation"], c_conv_ref=form["reference"])
    else:
        values.update({"c_source": TYPED, f"c_texts_{mode}": form["texts"], f"c_refs_{mode}": form["golds"]})
    s = form["settings"]
    if s:
        fit = lambda key, v: type(LIMITS[key][0])(min(max(v, LIMITS[key][0]), LIMITS[key][1]))  # noqa: E731
        values.update(c_mode="sampling" if s.do_sample else "greedy", c_max=fit("c_max", s.max_new_tokens),
                      c_rep=fit("c_rep", s.repetition_penalty), c_ngram=fit("c_ngram", s.no_repeat_ngram_size),
                      c_seed=fit("c_seed", s.seed or 0),
                      c_temp=fit("c_temp", s.temperature), c_top_p=fit("c_top_p", s.top_p),
                      c_top_k=fit("c_top_k", s.top_k), c_stop=live.format_stops(s.stop),
                      c_system=s.system, c_raw=not s.chat)
    preset("compare_form", comp.id, values)
