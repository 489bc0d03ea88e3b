"""Classification attributions through Captum, one call for every method.

`attribute(loaded, text, method)` explains the probability of a target class (default: the
predicted one) for one text and returns per-token scores. Gradient methods work on the word
embeddings (layer IG on the embedding layer, Saliency, Input×Gradient, DeepLift); perturbation
methods replace tokens by a baseline token (Feature Ablation, Occlusion, LIME, KernelSHAP) and run
`perturbations_per_eval` perturbations per forward pass. Special tokens ([CLS], [SEP]) stay
in every baseline. `attribute_many` explains many texts with layer IG, batched per device
(a per-example loop on CPU, where padding costs more than it saves; padded length buckets with a
large internal batch on GPU). Memory is released after every call.
"""
import contextlib
import gc
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ..inference.forward import classifier_logits, outputs
from .. import inference
from ..errors import ModelError
from . import specs, text as textmod

PERTURBATIONS_PER_EVAL = 32


@dataclass
class Attribution:
    model: str
    method: str
    method_name: str
    tokens: list[str]
    scores: list[float]
    target: int
    target_label: str
    probs: list[float]
    labels: list[str]
    baseline: str | None = None
    delta: float | None = None          # convergence delta (IG, DeepLift): sum(attr) − (f(x) − f(baseline))
    f_input: float | None = None        # p(target) for the text
    f_baseline: float | None = None     # p(target) for the baseline (the methods that take one)
    special: list[bool] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    text: str = ""
    head: str | None = None             # what the model was opened as
    settings: dict = field(default_factory=dict)  # what shaped the result (the method's declared settings)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def predicted(self) -> tuple[str, float]:
        """The predicted label and its probability (the target unless another class was chosen)."""
        i = int(np.argmax(self.probs))
        return (self.labels[i] if i < len(self.labels) else str(i)), float(self.probs[i])

    def delta_advice(self) -> "specs.DeltaAdvice | None":
        """What the convergence delta says, in the words of the method's declaration (specs)."""
        return specs.get_method(self.method).delta_advice(self.delta, self.f_input, self.f_baseline, **self.settings)

    def top(self, k: int = 10) -> list[tuple[int, str, float]]:
        order = np.argsort(-np.asarray(self.scores))
        return [(int(i), self.tokens[i], float(self.scores[i])) for i in order if not self.special[i]][:k]


# ---------------------------------------------------------------- forward functions
def prob_forward(model, cls_only: bool = True):
    """Probabilities from token ids; `cls_only=False` is the model's own full forward (the baselines)."""
    def forward(input_ids, attention_mask=None):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if cls_only:
            logits = classifier_logits(model, input_ids=input_ids, attention_mask=attention_mask)
        else:
            logits = outputs(model, input_ids=input_ids, attention_mask=attention_mask).logits
        return torch.softmax(logits.float(), dim=-1)
    return forward


class EmbedForward(torch.nn.Module):
    """Probabilities from word embeddings (position/type embeddings are added by the model)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, inputs_embeds, attention_mask=None):
        if attention_mask is None:
            attention_mask = torch.ones(inputs_embeds.shape[:2], dtype=torch.long, device=inputs_embeds.device)
        logits = classifier_logits(self.model, inputs_embeds=inputs_embeds, attention_mask=attention_mask)
        return torch.softmax(logits.float(), dim=-1)


def predict_proba_ids(loaded, ids_list: list[list[int]], batch_size: int = 64) -> np.ndarray:
    """Class probabilities for already-tokenised inputs (perturbed copies of an encoded text), through
    `inference.classify` like every prediction."""
    if not ids_list:
        return np.zeros((0, 0))
    lengths = [len(ids) for ids in ids_list]
    tokens = inference.Tokens([list(ids) for ids in ids_list], None, lengths, max(lengths))
    return inference.classify(loaded, [""] * len(ids_list), batch_size=batch_size, tokens=tokens).probs


def _embeddings(loaded):
    emb = loaded.model.get_input_embeddings()
    if emb is None:
        raise ModelError(f"{loaded.entry.name} has no input-embedding layer: gradient methods do not apply.")
    return emb


def _labels(loaded, n: int) -> list[str]:
    labels = loaded.labels
    return labels if len(labels) == n else [str(i) for i in range(n)]


# ---------------------------------------------------------------- one text
def attribute(loaded, text: str, method: str = "ig", target: int | None = None, baseline: str = "pad",
              n_steps: int = 50, n_samples: int = 200, max_tokens: int | None = None,
              perturbations_per_eval: int = PERTURBATIONS_PER_EVAL, seed: int = 0) -> Attribution:
    spec = specs.get_method(method)
    specs.require(loaded, spec)
    if spec.key not in specs.CLASSIFICATION_METHODS:
        raise ModelError(f"{spec.name} explains generated text; use attribute_generation for it.")
    if spec.baseline and baseline not in spec.baselines:
        raise ModelError(f"{spec.name} does not take the {baseline!r} baseline; choose one of "
                         f"{', '.join(spec.baselines)}.")
    enc = textmod.encode(loaded, text, cap=max_tokens)
    start = time.perf_counter()
    with loaded.lock:
        try:
            # the prediction every page shows for this text (the same call, the same cut)
            probs = inference.classify(loaded, [str(text)], max_length=max_tokens).probs[0]
            n_labels = probs.shape[0]
            target = int(np.argmax(probs)) if target is None else int(target)
            if not 0 <= target < n_labels:
                raise ModelError(f"Target class {target} does not exist: the model has {n_labels} classes.")
            torch.manual_seed(seed)
            with input_grads_only(loaded):
                scores, delta, f_b = _RUNNERS[spec.key](loaded, enc, target, baseline, n_steps=n_steps,
                                                        n_samples=n_samples, ppe=perturbations_per_eval)
        finally:
            release(loaded)
    labels = _labels(loaded, n_labels)
    used = {"n_steps": n_steps, "n_samples": n_samples, "seed": seed}
    return Attribution(loaded.entry.name, spec.key, spec.name, enc.tokens, [float(s) for s in scores], target,
                       labels[target], [float(p) for p in probs], labels, baseline if spec.baseline else None,
                       delta, float(probs[target]), f_b, enc.special, list(enc.notes),
                       time.perf_counter() - start, str(text), loaded.head, {k: used[k] for k in spec.settings})


def side_by_side(load, text: str, runs: list[tuple[str, str]], target: str = "predicted", baseline: str = "pad",
                 n_steps: int = 50, n_samples: int = 200) -> list[tuple[dict, dict]]:
    """Attribute `text` for each (model name, method key) in `runs`, with each one's faithfulness.

    `load(name)` returns the loaded classifier; `target` is a label name or "predicted"; a method that
    does not take the chosen baseline uses pad. What the Attributions page shows side by side."""
    from . import faithfulness

    results = []
    for model_name, key in runs:
        loaded = load(model_name)
        tgt = loaded.labels.index(target) if target in loaded.labels else None
        base = baseline if baseline in specs.get_method(key).baselines else "pad"
        a = attribute(loaded, text, key, target=tgt, baseline=base, n_steps=n_steps, n_samples=n_samples)
        a.model = model_name  # the registry shares one loaded copy between names of one folder
        results.append((a.to_dict(), faithfulness.for_attribution(loaded, a)))
    return results


@contextlib.contextmanager
def input_grads_only(loaded):
    """Attribution needs gradients for the input only: the weights stop recording theirs (less graph,
    less memory), and tiny values near the IG baseline are flushed instead of taking the CPU's slow
    denormal path. Both are restored afterwards; hold `loaded.lock` around it."""
    params = [p for p in loaded.model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    flushing = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if flushing:
            torch.set_flush_denormal(False)
        for p in params:
            p.requires_grad_(True)


def release(loaded) -> None:
    """Drop gradients and cached blocks so repeated calls do not grow memory."""
    loaded.model.zero_grad(set_to_none=True)
    gc.collect(1)  # young generations only: a full collection costs ~1 s with transformers loaded
    if str(loaded.device).startswith("cuda"):
        torch.cuda.empty_cache()


def _baseline_embeds(loaded, enc, kind):
    emb = _embeddings(loaded)
    with torch.no_grad():
        x = emb(enc.input_ids)
        if kind == "zero":
            keep = torch.tensor(enc.special, device=x.device).view(1, -1, 1)
            b = torch.where(keep, x, torch.zeros_like(x))
        else:
            b = emb(textmod.baseline_ids(loaded, enc, kind))
    return x.detach().requires_grad_(), b.detach()


def _ig(loaded, enc, target, baseline, n_steps=50, **_):
    from captum.attr import IntegratedGradients, LayerIntegratedGradients

    if baseline == "zero":
        x, b = _baseline_embeds(loaded, enc, "zero")
        ig = IntegratedGradients(EmbedForward(loaded.model))
        attr, delta = ig.attribute(x, baselines=b, target=target, n_steps=n_steps,
                                   internal_batch_size=n_steps, return_convergence_delta=True)
        with torch.no_grad():
            f_b = float(EmbedForward(loaded.model)(b)[0, target])
    else:
        base = textmod.baseline_ids(loaded, enc, baseline)
        lig = LayerIntegratedGradients(prob_forward(loaded.model), _embeddings(loaded))
        attr, delta = lig.attribute(enc.input_ids, baselines=base, target=target, n_steps=n_steps,
                                    internal_batch_size=n_steps, return_convergence_delta=True)
        with torch.no_grad():
            f_b = float(prob_forward(loaded.model)(base)[0, target])
    return attr.sum(-1)[0].detach().cpu().numpy(), float(delta.reshape(-1)[0]), f_b


def _saliency(loaded, enc, target, baseline, **_):
    from captum.attr import Saliency

    x, _b = _baseline_embeds(loaded, enc, "pad")
    attr = Saliency(EmbedForward(loaded.model)).attribute(x, target=target, abs=True)
    return attr.sum(-1)[0].detach().cpu().numpy(), None, None


def _input_x_gradient(loaded, enc, target, baseline, **_):
    from captum.attr import InputXGradient

    x, _b = _baseline_embeds(loaded, enc, "pad")
    attr = InputXGradient(EmbedForward(loaded.model)).attribute(x, target=target)
    return attr.sum(-1)[0].detach().cpu().numpy(), None, None


def _deeplift(loaded, enc, target, baseline, **_):
    import warnings

    from captum.attr import DeepLift

    x, b = _baseline_embeds(loaded, enc, baseline)
    forward = EmbedForward(loaded.model)
    with warnings.catch_warnings():
        # Captum warns that it sets hooks on the non-linear modules; which ones it has rules for, and what
        # that means for a transformer, is the method's delta_meaning (specs)
        warnings.simplefilter("ignore")
        attr, delta = DeepLift(forward).attribute(x, baselines=b, target=target, return_convergence_delta=True)
    with torch.no_grad():
        f_b = float(forward(b)[0, target])
    return attr.sum(-1)[0].detach().cpu().numpy(), float(delta.reshape(-1)[0]), f_b


def _perturb_common(loaded, enc, baseline):
    base = textmod.baseline_ids(loaded, enc, baseline)
    mask = torch.arange(enc.input_ids.shape[1], device=enc.input_ids.device).unsqueeze(0)
    return base, mask


@torch.no_grad()
def _ablation(loaded, enc, target, baseline, ppe=PERTURBATIONS_PER_EVAL, **_):
    from captum.attr import FeatureAblation

    base, mask = _perturb_common(loaded, enc, baseline)
    attr = FeatureAblation(prob_forward(loaded.model)).attribute(
        enc.input_ids, baselines=base, target=target, feature_mask=mask, perturbations_per_eval=ppe)
    return attr[0].float().cpu().numpy(), None, None


@torch.no_grad()
def _occlusion(loaded, enc, target, baseline, ppe=PERTURBATIONS_PER_EVAL, **_):
    from captum.attr import Occlusion

    base, _mask = _perturb_common(loaded, enc, baseline)
    window = min(3, enc.input_ids.shape[1])
    attr = Occlusion(prob_forward(loaded.model)).attribute(
        enc.input_ids, sliding_window_shapes=(window,), strides=(1,), baselines=base, target=target,
        perturbations_per_eval=ppe)
    return attr[0].float().cpu().numpy(), None, None


def _similarity(original, perturbed, interpretable, **kwargs):
    # exponential kernel on the share of tokens kept (interpretable space, not token ids)
    kept = interpretable.float().mean()
    return torch.exp(-((1.0 - kept) ** 2) / 0.25 ** 2)


@torch.no_grad()
def _lime(loaded, enc, target, baseline, n_samples=200, ppe=PERTURBATIONS_PER_EVAL, **_):
    from captum._utils.models.linear_model import SkLearnRidge
    from captum.attr import Lime

    base, mask = _perturb_common(loaded, enc, baseline)
    lime = Lime(prob_forward(loaded.model), interpretable_model=SkLearnRidge(alpha=0.01),
                similarity_func=_similarity)
    attr = lime.attribute(enc.input_ids, baselines=base, target=target, feature_mask=mask,
                          n_samples=n_samples, perturbations_per_eval=ppe)
    return attr[0].float().cpu().numpy(), None, None


@torch.no_grad()
def _kernel_shap(loaded, enc, target, baseline, n_samples=200, ppe=PERTURBATIONS_PER_EVAL, **_):
    from captum.attr import KernelShap

    base, mask = _perturb_common(loaded, enc, baseline)
    attr = KernelShap(prob_forward(loaded.model)).attribute(
        enc.input_ids, baselines=base, target=target, feature_mask=mask, n_samples=n_samples,
        perturbations_per_eval=ppe)
    return attr[0].float().cpu().numpy(), None, None


_RUNNERS = {"ig": _ig, "saliency": _saliency, "input_x_gradient": _input_x_gradient, "deeplift": _deeplift,
            "ablation": _ablation, "occlusion": _occlusion, "lime": _lime, "kernel_shap": _kernel_shap}
