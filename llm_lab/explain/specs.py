"""What each attribution method needs from a model (LIT-style specs), and what its result means.

A method declares its `needs` (capability names from `llm_lab.capabilities`); the loaded
model carries what it offers; the pages list only `compatible_methods(loaded)`, and
`require` raises the same message as every other feature. A method that reports a convergence
delta declares what that delta means for it and what to do when it is large
(`MethodSpec.delta_advice`): the pages, the CLI and the exports show that, never advice of their own.
"""
from dataclasses import dataclass

from .. import capabilities as caps
from ..capabilities import ATTENTION, CAUSAL_LM, CLASSIFIER, GRADIENTS
from ..errors import ModelError

# A convergence delta is "large" above this share of |f(x) − f(baseline)| (plus DELTA_FLOOR, float32 noise
# in a probability): the scores then do not add up to the change they explain.
DELTA_TOLERANCE = 0.05
DELTA_FLOOR = 1e-5
DELTA_SMALL = "Small against f(x) − f(baseline): the scores add up to the change in p(target)."


@dataclass(frozen=True)
class DeltaAdvice:
    large: bool          # |delta| is large against |f(x) − f(baseline)|: show it as a warning
    numbers: str         # the delta, the sum of attributions and f(x) − f(baseline)
    verdict: str         # small: the scores add up; large: the method's own advice
    meaning: str         # what the delta means for this method

    @property
    def text(self) -> str:
        return f"{self.numbers} {self.verdict} {self.meaning}"


class _Unknown(dict):
    def __missing__(self, key):
        return "?"


@dataclass(frozen=True)
class MethodSpec:
    key: str
    name: str
    needs: frozenset
    family: str                     # "gradient" | "perturbation"
    baseline: bool = False          # takes a baseline choice (pad / mask / zero embeddings)
    signed: bool = True             # scores can be negative
    description: str = ""
    baselines: tuple = ("pad", "mask", "zero")
    settings: tuple = ()            # the settings that shape its result ("n_steps", "n_samples", "seed"), recorded with it
    delta_meaning: str = ""         # what its convergence delta says ("": it reports none)
    delta_large: str = ""           # what to do when the delta is large; may name a setting: {n_steps}

    @property
    def requirements(self) -> caps.Needs:
        return caps.needs(self.name, *self.needs)

    def delta_advice(self, delta: float | None, f_input: float | None = None, f_baseline: float | None = None,
                     **settings) -> DeltaAdvice | None:
        """What this method's convergence delta says about one result (None: the method reports no delta).

        delta = sum of attributions − (f(x) − f(baseline)); it is large above DELTA_TOLERANCE of
        |f(x) − f(baseline)| (+ DELTA_FLOOR). `settings` are the ones the result was made with."""
        if delta is None or not self.delta_meaning:
            return None
        if f_input is not None and f_baseline is not None:
            diff = f_input - f_baseline
            numbers = (f"Convergence delta {delta:+.2e} = sum of attributions ({diff + delta:+.4f}) − "
                       f"(f(x) − f(baseline)) ({diff:+.4f}).")
            large = abs(delta) > DELTA_TOLERANCE * abs(diff) + DELTA_FLOOR
        else:  # a result stored before f(baseline) was recorded for every method
            numbers = f"Convergence delta {delta:+.2e} (sum of attributions − (f(x) − f(baseline)))."
            large = abs(delta) > DELTA_FLOOR
        verdict = self.delta_large.format_map(_Unknown(settings)) if large else DELTA_SMALL
        return DeltaAdvice(large, numbers, verdict, self.delta_meaning)


def _m(key, name, needs, family, baseline=False, signed=True, description="", baselines=("pad", "mask", "zero"),
       settings=(), delta_meaning="", delta_large=""):
    return MethodSpec(key, name, frozenset(needs), family, baseline, signed, description, baselines, settings,
                      delta_meaning, delta_large)


CLASSIFICATION_METHODS = {m.key: m for m in [
    _m("ig", "Integrated Gradients (layer IG on embeddings)", {CLASSIFIER, GRADIENTS}, "gradient", True,
       description="Integrates gradients from a baseline to the input in the word-embedding layer; "
                   "the attributions sum to f(x) − f(baseline) up to the convergence delta.",
       settings=("n_steps",),
       delta_meaning="Integrated Gradients is complete: its scores add up to f(x) − f(baseline) exactly once the "
                     "path integral converges, so the delta is the integration error.",
       delta_large="Large against that difference: the integral over {n_steps} steps has not converged; "
                   "raise the IG steps (Settings)."),
    _m("saliency", "Saliency", {CLASSIFIER, GRADIENTS}, "gradient", signed=False,
       description="|∂f/∂embedding| summed over the embedding: how sensitive the output is to each token."),
    _m("input_x_gradient", "Input × Gradient", {CLASSIFIER, GRADIENTS}, "gradient",
       description="embedding · ∂f/∂embedding, summed over the embedding."),
    _m("deeplift", "DeepLift (on embeddings)", {CLASSIFIER, GRADIENTS}, "gradient", True,
       description="DeepLift rescale rule from a baseline embedding; in a transformer GELU, LayerNorm and the "
                   "attention softmax and products fall back to gradients (Captum has rules for only some "
                   "non-linearities), so the scores are an approximation.",
       delta_meaning="DeepLift's rules are exact only through the non-linearities Captum has rules for (ReLU, "
                     "Tanh, Sigmoid, Softmax modules); in a transformer GELU, LayerNorm, the attention softmax and "
                     "its query·key and weights·value products pass plain gradients instead, so the scores "
                     "approximate gradient × (input − baseline) and need not add up: the delta is how far they "
                     "miss.",
       delta_large="Large here: DeepLift's rules are only approximate in a transformer (it has no steps to raise); "
                   "use Integrated Gradients when the scores must add up to the change in p(target) "
                   "(completeness)."),
    _m("ablation", "Feature Ablation", {CLASSIFIER}, "perturbation", True,
       description="Replace one token at a time with the baseline token; the drop in the output is its score.",
       baselines=("pad", "mask")),
    _m("occlusion", "Occlusion (window 3)", {CLASSIFIER}, "perturbation", True,
       description="Slide a 3-token window of baseline tokens over the text; each token gets the mean drop "
                   "of the windows covering it.", baselines=("pad", "mask")),
    _m("lime", "LIME", {CLASSIFIER}, "perturbation", True,
       description="Fits a ridge model to random token-removal samples weighted by similarity.",
       baselines=("pad", "mask"), settings=("n_samples", "seed")),
    _m("kernel_shap", "KernelSHAP", {CLASSIFIER}, "perturbation", True,
       description="Shapley values estimated with the SHAP kernel over random token coalitions.",
       baselines=("pad", "mask"), settings=("n_samples", "seed")),
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

# What the pickers ask of a model before any method is chosen (each method then checks its own needs).
CLASSIFICATION_NEEDS = caps.needs("Classification attributions", CLASSIFIER, GRADIENTS)
GENERATION_NEEDS = caps.needs("Generation attributions", CAUSAL_LM)
# The attention views need only attention weights, whatever the head.
ATTENTION_NEEDS = caps.needs("The attention views", ATTENTION)


def compatible_methods(loaded, table: dict | None = None) -> list[MethodSpec]:
    table = table if table is not None else {**CLASSIFICATION_METHODS, **GENERATION_METHODS}
    return [m for m in table.values() if caps.compatible(m.requirements, loaded)]


def require(loaded, method: MethodSpec) -> None:
    caps.require(method.requirements, loaded)


def get_method(key: str) -> MethodSpec:
    table = {**CLASSIFICATION_METHODS, **GENERATION_METHODS}
    if key not in table:
        raise ModelError(f"Unknown attribution method {key!r}; choose one of {', '.join(table)}.")
    return table[key]
