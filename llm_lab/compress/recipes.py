"""The compression methods, each declared once, and `make_variant`, which turns one into a registry model.

A recipe says what it is (`title`, `description`: what it costs and gains, said honestly), which heads it
applies to, its parameters with their defaults, and the function that makes it: `make(actor, parent_name,
params, out_folder, progress) -> dict` writes the variant's files into `out_folder` and returns what goes into
its registry meta (the checks against the parent, notes). The same recipe on the same parent gives the same
weights: a variant can be rebuilt from its meta["recipe"].
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass

from .. import capabilities as caps
from ..access import Actor
from ..errors import ModelError


@dataclass(frozen=True)
class Param:
    name: str
    kind: type                  # float, int, bool or str
    default: object = None
    help: str = ""
    low: float | None = None    # for numbers: the smallest allowed value (exclusive when `open_low`)
    high: float | None = None   # the largest (exclusive when `open_high`)
    open_low: bool = False
    open_high: bool = False

    def parse(self, value):
        """The value as this parameter's type, checked; None stays None (the default applies)."""
        if value is None:
            return None
        try:
            value = _as(self.kind, value)
        except (TypeError, ValueError) as exc:
            raise self._refusal(repr(value)) from exc
        if self.low is not None and (value < self.low or (self.open_low and value == self.low)):
            raise self._refusal(value)
        if self.high is not None and (value > self.high or (self.open_high and value == self.high)):
            raise self._refusal(value)
        return value

    def allowed(self) -> str:
        """What this parameter takes, in words: "a number above 0 and below 1", "a whole number at least 1"."""
        kind = {float: "a number", int: "a whole number", bool: "true or false"}.get(self.kind, "a name")
        bounds = [f"{'above' if self.open_low else 'at least'} {self.low:g}"] if self.low is not None else []
        bounds += [f"{'below' if self.open_high else 'at most'} {self.high:g}"] if self.high is not None else []
        return " ".join([kind, " and ".join(bounds)]).strip()

    def _refusal(self, got) -> ModelError:
        """The refusal of a bad value: what the parameter takes and means, so the caller knows what to give."""
        return ModelError(f"{self.name} must be {self.allowed()}" + (f" ({self.help})" if self.help else "")
                          + f"; got {got}.")

    def as_dict(self) -> dict:
        return {"name": self.name, "type": self.kind.__name__, "default": self.default, "help": self.help,
                "low": self.low, "high": self.high}


def _as(kind: type, value):
    if kind is bool and isinstance(value, str):
        if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(value)
        return value.lower() in ("true", "1", "yes")
    if kind is int and isinstance(value, float) and not value.is_integer():
        raise ValueError(value)
    return kind(value)


@dataclass(frozen=True)
class Recipe:
    method: str
    title: str
    description: str
    heads: tuple                # the heads (of the parent) it applies to
    params: tuple = ()
    make: str = ""              # "module:function" in this package, imported when it runs (torch is heavy)

    def resolve(self, given: dict | None) -> dict:
        """Every parameter, given or default, parsed and checked; unknown names refused."""
        given = {k: v for k, v in (given or {}).items() if v is not None}
        known = {p.name: p for p in self.params}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise ModelError(f"{self.method} has no parameter {', '.join(unknown)}; its parameters: "
                             f"{', '.join(known) or 'none'}.")
        return {name: p.parse(given.get(name, p.default)) for name, p in known.items()}

    def run(self, actor: Actor, parent: str, params: dict, out_folder, progress) -> dict:
        module, _, function = self.make.partition(":")
        return getattr(importlib.import_module(f"{__package__}.{module}"), function)(
            actor, parent, params, out_folder, progress)

    def as_dict(self) -> dict:
        return {"method": self.method, "title": self.title, "description": self.description,
                "heads": list(self.heads), "params": [p.as_dict() for p in self.params]}


ALL_HEADS = ("classifier", "encoder", "causal-lm")
# What every recipe needs of its parent (capabilities decides): weights LLM Lab loads itself, so no endpoint. Which
# heads a recipe takes is its own `heads`; an ONNX export has no PyTorch weights to start from (common.check_parent).
NEEDS = caps.needs("Compression", hint="Compress a model whose weights LLM Lab loads (a registry model, a folder or "
                                       "a Hub id), then serve the variant.")
DATASET = Param("dataset", str, None, "the dataset whose texts check the variant against its parent (default: "
                                      "built-in sample sentences)")
RECIPES = {r.method: r for r in [
    Recipe("int8", "int8 (ONNX Runtime, CPU)",
           "Post-training dynamic quantization: the weights of the linear layers stored as int8, activations "
           "quantized on the fly. The model is exported to ONNX and quantized with ONNX Runtime's quantize_dynamic "
           "(torch.ao.quantization is deprecated upstream). For the CPU; about 4× smaller. Speed depends on the "
           "model and batch: measure it (a tiny or memory-bound model can be slower). Activations are quantized "
           "with one scale per batch, so a prediction can change slightly with the texts batched beside it. "
           "Checked against the PyTorch float outputs (max logit difference, argmax agreement).",
           ("classifier", "encoder"),
           (Param("per_channel", bool, True, "one scale per output channel (off: one per weight matrix; per channel "
                                              "halved the logit error of MiniLM-sentiment)"), DATASET),
           "onnx_export:make_int8"),
    Recipe("onnx", "ONNX (fp32, ONNX Runtime)",
           "The model exported to ONNX (torch.onnx, dynamic batch and sequence length) and run with ONNX Runtime on "
           "the CPU, same float32 weights. Refused unless its outputs match PyTorch's within 1e-4.",
           ("classifier", "encoder"), (DATASET,), "onnx_export:make_onnx"),
    Recipe("fp16", "float16",
           "The weights cast to float16: half the size. For GPUs; float16 on the CPU is slow (and some CPU kernels "
           "compute it in float32 anyway). Opened in float16 unless you ask for another dtype.",
           ALL_HEADS, (DATASET,), "cast:make_fp16"),
    Recipe("bf16", "bfloat16",
           "The weights cast to bfloat16: half the size, float32's range with fewer mantissa bits. For GPUs (and "
           "recent CPUs with bf16 instructions); opened in bfloat16 unless you ask for another dtype.",
           ALL_HEADS, (DATASET,), "cast:make_bf16"),
    Recipe("magnitude", "global magnitude pruning",
           "The smallest weights (by absolute value, ranked over all linear layers of the transformer blocks "
           "together; embeddings and the head untouched) set to zero. Unstructured zeros neither shrink the dense "
           "safetensors file nor speed up dense kernels: this shows how much quality the sparsity costs, the "
           "first step towards sparse kernels or a sparse format.",
           ALL_HEADS,
           (Param("sparsity", float, 0.5, "share of the block weights set to zero", 0.0, 1.0, True, True), DATASET),
           "magnitude:make"),
    Recipe("heads", "attention-head pruning",
           "The attention heads whose masking raises the loss least on a sample of your data (classification loss "
           "with the labels, language-model loss for a causal LM) removed from the model: their query, key and "
           "value rows and the output projection's columns are cut out, so the model really is smaller and "
           "faster. At least one head per layer stays. BERT-family encoders and GPT-2.",
           ALL_HEADS,
           (Param("heads", int, None, "how many heads to remove (overall)", 1),
            Param("head_fraction", float, 0.25, "share of all heads to remove (when `heads` is not given)",
                  0.0, 1.0, True, True),
            Param("dataset", str, None, "the dataset whose texts (and labels) measure head importance (default: "
                                        "the parent's training data, else a demo dataset)"),
            Param("samples", int, 64, "how many texts measure importance", 4, 2048)),
           "heads:make"),
]}
CAUSAL_LM_RECIPES = ", ".join(r.method for r in RECIPES.values() if "causal-lm" in r.heads)


def methods(head: str | None = None) -> list[Recipe]:
    """The recipes that apply to a parent opened as `head` (all of them without one)."""
    return [r for r in RECIPES.values() if head is None or head in r.heads]


def recipe_for(method: str) -> Recipe:
    if method not in RECIPES:
        raise ModelError(f"Unknown compression method {method!r}; choose one of {', '.join(RECIPES)}.")
    return RECIPES[method]


def check_applies(recipe: Recipe, parent: str, head: str) -> None:
    """Refuse a recipe for a parent it does not apply to, naming those that do."""
    if head in recipe.heads:
        return
    fits = ", ".join(r.method for r in methods(head)) or "none"
    if head == "causal-lm" and recipe.method in ("int8", "onnx"):
        raise ModelError(f"{recipe.method} applies to classifiers and encoders (an ONNX export checked against "
                         f"PyTorch); {parent} is a causal LM. For a causal LM use {CAUSAL_LM_RECIPES}, or "
                         "distillation into a smaller student (a training job).")
    raise ModelError(f"{recipe.method} does not apply to {parent}, a {head}. Methods for it: {fits}.")


def default_name(parent: str, method: str, params: dict) -> str:
    """parent-int8, parent-magnitude50, parent-heads6, parent-heads25pct, …"""
    suffix = method
    if method == "magnitude":
        suffix += f"{round(params['sparsity'] * 100):d}"
    elif method == "heads":
        suffix += str(params["heads"]) if params.get("heads") else f"{round(params['head_fraction'] * 100):d}pct"
    elif method == "int8" and not params.get("per_channel"):
        suffix += "-per-tensor"
    base = re.sub(r"[^A-Za-z0-9._-]", "-", parent.rstrip("/").split("/")[-1]).lstrip(".-_") or "model"
    return f"{base[:90]}-{suffix}"


def cli_flags(params: dict) -> str:
    """The `compress make` options that give these parameters (the rebuild command of a variant)."""
    flags = []
    for key, value in params.items():
        option = key.replace("_", "-")
        if value is None or (key == "head_fraction" and params.get("heads")):
            continue
        flags.append(f"--{'' if value else 'no-'}{option}" if isinstance(value, bool) else f"--{option} {value}")
    return " ".join(flags)


def make_variant(actor: Actor, parent: str, method: str, params: dict | None = None, name: str | None = None,
                 progress=None):
    """Make a `method` variant of the registry model `parent` and register it (source "trained", parent =
    `parent`, meta: the recipe, the parent's fingerprint, the checks, the sizes). Returns its ModelEntry."""
    from . import save

    return save.make(actor, parent, recipe_for(method), params, name, progress)
