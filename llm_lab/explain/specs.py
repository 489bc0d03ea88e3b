"""LIT-style specs: what a loaded model offers and what each interpreter needs.

A method declares `needs` (a set of capabilities); `capabilities(loaded)` says what the
model has; the pages list only `compatible_methods(loaded)`.
"""
from dataclasses import dataclass, field

from ..errors import ModelError

# capability names
CLASSIFIER = "classifier-head"      # logits over labels
CAUSAL_LM = "causal-lm"             # next-token logits, .generate
GRADIENTS = "gradients"             # a differentiable torch model with an input-embedding layer
ATTENTION = "attention-weights"     # eager attention: returns attention probabilities


@dataclass(frozen=True)
class MethodSpec:
    key: str
    name: str
    needs: frozenset
    kind: str                       # "gradient" | "perturbation"
    baseline: bool = False          # takes a baseline choice (pad / mask / zero embeddings)
    signed: bool = True             # scores can be negative
    description: str = ""
    baselines: tuple = ("pad", "mask", "zero")


def _m(key, name, needs, kind, baseline=False, signed=True, description="", baselines=("pad", "mask", "zero")):
    return MethodSpec(key, name, frozenset(needs), kind, baseline, signed, description, baselines)


CLASSIFICATION_METHODS = {m.key: m for m in [
    _m("ig", "Integrated Gradients (layer IG on embeddings)", {CLASSIFIER, GRADIENTS}, "gradient", True,
       description="Integrates gradients from a baseline to the input in the word-embedding layer; "
                   "the attributions sum to f(x) − f(baseline) up to the convergence delta."),
    _m("saliency", "Saliency", {CLASSIFIER, GRADIENTS}, "gradient", signed=False,
       description="|∂f/∂embedding| summed over the embedding: how sensitive the output is to each token."),
    _m("input_x_gradient", "Input × Gradient", {CLASSIFIER, GRADIENTS}, "gradient",
       description="embedding · ∂f/∂embedding, summed over the embedding."),
    _m("deeplift", "DeepLift (on embeddings)", {CLASSIFIER, GRADIENTS}, "gradient", True,
       description="DeepLift rescale rule from a baseline embedding; attention softmax and GELU fall "
                   "back to gradients (Captum supports only some non-linearities).", baselines=("pad", "mask", "zero")),
    _m("ablation", "Feature Ablation", {CLASSIFIER}, "perturbation", True,
       description="Replace one token at a time with the baseline token; the drop in the output is its score.",
       baselines=("pad", "mask")),
    _m("occlusion", "Occlusion (window 3)", {CLASSIFIER}, "perturbation", True,
       description="Slide a 3-token window of baseline tokens over the text; each token gets the mean drop "
                   "of the windows covering it.", baselines=("pad", "mask")),
    _m("lime", "LIME", {CLASSIFIER}, "perturbation", True,
       description="Fits a ridge model to random token-removal samples weighted by similarity.",
       baselines=("pad", "mask")),
    _m("kernel_shap", "KernelSHAP", {CLASSIFIER}, "perturbation", True,
       description="Shapley values estimated with the SHAP kernel over random token coalitions.",
       baselines=("pad", "mask")),
]}

GENERATION_METHODS = {m.key: m for m in [
    _m("gen_ig", "Integrated Gradients, all outputs in one batch (LLM Lab)", {CAUSAL_LM, GRADIENTS}, "gradient",
       description="Layer IG on the token embeddings for every generated token at once; attributes to the "
                   "prompt and to earlier generated tokens."),
    _m("gen_captum_ig", "Captum LLMGradientAttribution (layer IG)", {CAUSAL_LM, GRADIENTS}, "gradient",
       description="Captum's own loop: one layer-IG run per generated token, prompt tokens only."),
    _m("gen_ablation", "Captum LLMAttribution (feature ablation)", {CAUSAL_LM}, "perturbation",
       description="Captum's perturbation wrapper: removes each prompt token, re-scores the output with the KV "
                   "cache; prompt tokens only."),
]}


def capabilities(loaded) -> set[str]:
    caps = set()
    if loaded.head == "classifier":
        caps.add(CLASSIFIER)
    if loaded.head == "causal-lm":
        caps.add(CAUSAL_LM)
    model = loaded.model
    try:
        if model.get_input_embeddings() is not None:
            caps.add(GRADIENTS)
    except (AttributeError, NotImplementedError):
        pass
    impl = getattr(model.config, "_attn_implementation", None)
    if loaded.attention or impl == "eager":
        caps.add(ATTENTION)
    return caps


def compatible_methods(loaded, table: dict | None = None) -> list[MethodSpec]:
    caps = capabilities(loaded)
    table = table if table is not None else {**CLASSIFICATION_METHODS, **GENERATION_METHODS}
    return [m for m in table.values() if m.needs <= caps]


def require(loaded, method: MethodSpec) -> None:
    missing = method.needs - capabilities(loaded)
    if missing:
        what = {CLASSIFIER: "a classifier head (open the model as a classifier)",
                CAUSAL_LM: "a causal language model (a GPT-style model opened as causal-lm)",
                GRADIENTS: "gradients through an input-embedding layer",
                ATTENTION: "attention weights (eager attention)"}
        raise ModelError(f"{method.name} does not apply to {loaded.entry.name} opened as {loaded.head}: it needs "
                         + ", ".join(what[m] for m in sorted(missing)) + ".")


def get_method(key: str) -> MethodSpec:
    table = {**CLASSIFICATION_METHODS, **GENERATION_METHODS}
    if key not in table:
        raise ModelError(f"Unknown attribution method {key!r}; choose one of {', '.join(table)}.")
    return table[key]
