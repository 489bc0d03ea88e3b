"""What a model can do, decided once; what each feature needs; one check between them.

In the way of LIT's specs: a loaded model carries `Capabilities`, computed once by the registry
at load time; a feature (a benchmark task type, an attribution method, the attention views,
Compare, Arena, a training recipe, a CLI command) declares `Needs`; `compatible(needs, model)`
decides, and `require(needs, model)` raises the one message every feature shows.

Before a model is loaded, pickers ask `entry_fits(needs, entry)`: can this registry entry be
opened so that it meets the needs? `head_for(needs, entry)` says with which head.

An endpoint model (registry source `endpoint`, see `endpoints.py`: an OpenAI-compatible server) returns
text: it provides GENERATES_TEXT, and SCORES_TEXT when the probe made at its registration found that its
server returns prompt log-probabilities with `echo` (the verdict is in the entry's meta, `endpoint_provides`).
It fits only needs made with `endpoint_ok=True` (text generation and the generation task; log-likelihood
scoring, the multiple-choice and language-modelling tasks when it scores). Any other feature, even one that
needs no named capability (a speed task, pretraining), refuses it with the same one message; a scoring need
on an endpoint whose server does not score says why, in the probe's words.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ModelError

# ---------------------------------------------------------------- capability names
CLASSIFIER = "classifier"           # logits over named labels
TRAINED_HEAD = "trained-head"       # the head's weights were trained, not freshly initialised
CAUSAL_LM = "causal-lm"             # next-token logits and .generate, trained to write text
GENERATES_TEXT = "generates-text"   # prompt -> text: a local causal LM, or an endpoint model
LOCAL_WEIGHTS = "local-weights"     # weights loaded here; lacking only for endpoint models (`Needs.endpoint_ok`)
ENCODER = "encoder"                 # hidden states (mean-pooled sentence embeddings)
GRADIENTS = "gradients"             # a differentiable torch model with an input-embedding layer
ATTENTION = "attention-weights"     # eager attention: returns attention probabilities
CHAT = "chat"                       # a chat template in its tokenizer: conversations go through it (inference/chat.py)
SCORES_TEXT = "scores-text"         # log-probabilities of a given text: a local causal LM, or an endpoint whose server
                                    # returns prompt log-probabilities with echo (inference/loglikelihood.py)

DESCRIPTIONS = {
    CLASSIFIER: "a classifier head (an encoder gets a new one when opened as a classifier; a causal LM without "
                "a sequence-classification head cannot classify)",
    TRAINED_HEAD: "a trained head (fine-tune the model first: its head is new)",
    CAUSAL_LM: "a causal language model such as tiny-gpt (this one is not a language model: it has no "
               "language-model head trained to write, so it cannot generate text)",
    GENERATES_TEXT: "a causal language model such as tiny-gpt, or an OpenAI-compatible endpoint model (this one is "
                    "not a language model: it has no language-model head trained to write, so it cannot generate text)",
    LOCAL_WEIGHTS: "a model whose weights LLM Lab loads itself (an OpenAI-compatible endpoint returns generated text "
                   "and, when its server gives them, log-probabilities: no logits, gradients, attention or training)",
    ENCODER: "an encoder (hidden states)",
    GRADIENTS: "gradients through an input-embedding layer",
    ATTENTION: "attention weights (eager attention)",
    CHAT: "a chat template (an instruction-tuned model such as smollm2-chat; a base model takes raw prompts)",
    SCORES_TEXT: "log-probabilities of a given text (a causal LM such as tiny-gpt, or an OpenAI-compatible endpoint "
                 "whose server returns prompt log-probabilities with echo)",
}

# The heads a model can be opened with; a registry entry records the one it was made for.
HEADS = ("classifier", "encoder", "causal-lm")
HEAD_PROVIDES = {"classifier": CLASSIFIER, "encoder": ENCODER, "causal-lm": CAUSAL_LM}


@dataclass(frozen=True)
class Capabilities:
    """What one loaded model offers. Made once by `of_model` when the registry loads it."""
    head: str
    provides: frozenset
    labels: tuple = ()
    head_is_new: bool = False
    max_context: int = 512
    endpoint: bool = False      # an endpoint model: text over HTTP, no weights here (see endpoints.py)

    def has(self, *names: str) -> bool:
        return set(names) <= self.provides


@dataclass(frozen=True)
class Needs:
    """What a feature needs from a model, and the name it goes by in messages."""
    what: str
    caps: frozenset = field(default_factory=frozenset)
    hint: str = ""          # what to do instead, added to the message
    endpoint_ok: bool = False   # an endpoint model (text only) may serve it

    @property
    def head(self) -> str | None:
        """The head these needs imply (None: any head will do, the entry's default)."""
        if self.caps & {CAUSAL_LM, GENERATES_TEXT, SCORES_TEXT}:
            return "causal-lm"
        if CLASSIFIER in self.caps or TRAINED_HEAD in self.caps:
            return "classifier"
        return None


def needs(what: str, *caps: str, hint: str = "", endpoint_ok: bool = False) -> Needs:
    unknown = set(caps) - set(DESCRIPTIONS)
    if unknown:
        raise ValueError(f"unknown capabilities {sorted(unknown)}")
    return Needs(what, frozenset(caps), hint, endpoint_ok)


# Needs shared by several features (Compare, Arena, generation, the benchmark's causal tasks).
GENERATE = needs("Text generation", GENERATES_TEXT, endpoint_ok=True,
                 hint="Pick a causal LM (e.g. tiny-gpt or a GPT-2 style model), or compare it as a classifier.")
CLASSIFY = needs("Classification", CLASSIFIER)
SCORE = needs("Log-likelihood scoring", SCORES_TEXT, endpoint_ok=True,
              hint="Pick a causal LM, or an endpoint whose server returns prompt log-probabilities (vLLM, `serve`).")


# ---------------------------------------------------------------- registry entries (before loading)
def entry_heads(entry_head: str) -> tuple[str, ...]:
    """The heads an entry made for `entry_head` can be opened with, its default first.

    An encoder opens as a classifier with a new head (to fine-tune or benchmark); a classifier
    opens as an encoder for embeddings; a causal LM opens as an encoder for its hidden states.
    A folder or Hub id whose head is not known yet may be anything."""
    return {"classifier": ("classifier", "encoder"),
            "encoder": ("encoder", "classifier"),
            "causal-lm": ("causal-lm", "encoder")}.get(entry_head, ("encoder", "classifier", "causal-lm"))


def default_head(entry) -> str:
    """The one rule for the head a registry entry opens with when nobody asks for another."""
    return "causal-lm" if is_endpoint(entry) else entry_heads(entry.head)[0]


def _entry_provides(entry_head: str, head: str) -> frozenset:
    caps = {HEAD_PROVIDES[head], GRADIENTS, ATTENTION}
    if head == "classifier" and entry_head == "classifier":
        caps.add(TRAINED_HEAD)
    if head == "causal-lm" and entry_head not in ("causal-lm", "unknown"):
        caps.discard(CAUSAL_LM)  # an encoder with an LM head bolted on was never trained to write
    if CAUSAL_LM in caps:
        caps.update((GENERATES_TEXT, SCORES_TEXT))
    return frozenset(caps)


ENDPOINT_PROVIDES = frozenset({GENERATES_TEXT})


def is_endpoint(entry) -> bool:
    return getattr(entry, "source", None) == "endpoint"


def endpoint_probe(entry) -> dict:
    """The verdict of the probe stored in an endpoint entry's meta (endpoints.probe): {"scores", "reason", ...},
    or {} for an entry registered before endpoints were probed."""
    probe = (getattr(entry, "meta", None) or {}).get("probe")
    return probe if isinstance(probe, dict) else {}


def endpoint_provides(entry) -> frozenset:
    """What an endpoint offers: text, and scoring when its probe found prompt log-probabilities."""
    return ENDPOINT_PROVIDES | ({SCORES_TEXT} if endpoint_probe(entry).get("scores") is True else set())


def _entry_options(entry) -> list[tuple[str, frozenset]]:
    """(head, what it provides) for each head the entry can be opened with, its default first."""
    if is_endpoint(entry):
        return [("causal-lm", endpoint_provides(entry))]
    return [(h, _entry_provides(entry.head, h)) for h in entry_heads(entry.head)]


def _lacking(needs_: Needs, provides: frozenset, endpoint: bool) -> set[str]:
    lacking = set(needs_.caps - provides)
    if endpoint and not needs_.endpoint_ok:
        lacking.add(LOCAL_WEIGHTS)
    return lacking


def head_for(needs_: Needs, entry) -> str:
    """The head to open `entry` with so it meets `needs_` (its default head when any will do)."""
    for head, provides in _entry_options(entry):
        if not _lacking(needs_, provides, is_endpoint(entry)) and (needs_.head in (None, head)):
            return head
    return needs_.head or default_head(entry)


def entry_fits(needs_: Needs, entry) -> bool:
    """Can this registry entry be opened so that it meets `needs_`? (Pickers list only these.)"""
    return any(not _lacking(needs_, provides, is_endpoint(entry)) for _, provides in _entry_options(entry))


# ---------------------------------------------------------------- loaded models
def of_model(model, tokenizer, head: str, entry_head: str, head_is_new: bool, attention: bool) -> Capabilities:
    """What a freshly loaded model can do. Called once, by the registry."""
    caps = {HEAD_PROVIDES[head]}
    if head == "causal-lm" and (entry_head not in ("causal-lm", "unknown")
                                or not getattr(model, "can_generate", lambda: False)()):
        caps.discard(CAUSAL_LM)
    if head == "classifier" and not head_is_new:
        caps.add(TRAINED_HEAD)
    if CAUSAL_LM in caps:
        caps.update((GENERATES_TEXT, SCORES_TEXT))
        if getattr(tokenizer, "chat_template", None):
            caps.add(CHAT)
    try:
        if model.get_input_embeddings() is not None:
            caps.add(GRADIENTS)
    except (AttributeError, NotImplementedError):
        pass
    if (attention or getattr(model.config, "_attn_implementation", None) == "eager") and getattr(
            model, "attention_weights", True):  # an ONNX export or a head-pruned model says it has none
        caps.add(ATTENTION)
    labels = ()
    if head == "classifier":
        id2label = getattr(model.config, "id2label", None) or {}
        labels = tuple(id2label[i] for i in sorted(id2label))
    from .batching import context_length

    return Capabilities(head, frozenset(caps), labels, head_is_new, context_length(model, tokenizer))


def _caps_of(model) -> Capabilities:
    caps = getattr(model, "capabilities", None)
    if not isinstance(caps, Capabilities):
        raise TypeError(f"{type(model).__name__} carries no Capabilities: load it with llm_lab.registry.load")
    return caps


def missing(needs_: Needs, model) -> set[str]:
    caps = _caps_of(model)
    return _lacking(needs_, caps.provides, caps.endpoint)


def compatible(needs_: Needs, model) -> bool:
    """The one check: does this loaded model offer everything `needs_` asks for?"""
    return not missing(needs_, model)


def require(needs_: Needs, model) -> None:
    """Raise the one message every feature shows when a model does not fit."""
    lacking = missing(needs_, model)
    if lacking:
        entry = getattr(model, "entry", None)
        name = getattr(entry, "name", "this model")
        raise ModelError(message(needs_, name, _caps_of(model).head, lacking, entry))


def not_scoring(entry) -> str:
    """Why an endpoint does not score, in its probe's words."""
    probe = endpoint_probe(entry)
    reason = probe.get("reason") or ("it has not been probed (it was registered before LLM Lab probed endpoints)"
                                     if not probe else "no reason recorded")
    return (f"the server at {entry.location} did not return prompt log-probabilities with echo: "
            f"{str(reason).rstrip('.')}. If the server has changed, probe it again (the Models page's "
            f"\"Probe again\", or `python -m llm_lab models probe {entry.name}`)")


def message(needs_: Needs, name: str, head: str, lacking, entry=None) -> str:
    """The one wording of "this model does not fit this feature"."""
    if LOCAL_WEIGHTS in lacking:  # an endpoint model: the rest follows from it
        text = f"{needs_.what} does not apply to {name}, an OpenAI-compatible endpoint: it needs {DESCRIPTIONS[LOCAL_WEIGHTS]}."
        return f"{text} {needs_.hint}" if needs_.hint else text
    if SCORES_TEXT in lacking and is_endpoint(entry):  # the probe said no: say why, not what a scorer is
        return f"{needs_.what} does not apply to {name}, an OpenAI-compatible endpoint: {not_scoring(entry)}."
    text = (f"{needs_.what} does not apply to {name} opened as {head}: it needs "
            + ", ".join(DESCRIPTIONS[c] for c in sorted(lacking)) + ".")
    return f"{text} {needs_.hint}" if needs_.hint else text


def require_entry(needs_: Needs, entry) -> str:
    """Before loading: the head to open `entry` with for `needs_`, or the same message as `require`."""
    if not entry_fits(needs_, entry):
        head, provides = _entry_options(entry)[0]
        raise ModelError(message(needs_, entry.name, head, _lacking(needs_, provides, is_endpoint(entry)), entry))
    return head_for(needs_, entry)
