"""Attention heads: how much each one matters, and removing those that matter least.

Importance of a head = the loss increase when that head alone is masked: its slice of the attention output is
zeroed before the output projection (a forward pre-hook on BERT's `attention.output.dense` / GPT-2's
`attn.c_proj`), so it works on any such model without `head_mask` (gone from transformers 5). The loss is the
classification loss with the labels (a classifier; its own predictions when the data has no labels it knows),
the language-model loss (a causal LM), or 1 − cosine to the unmasked sentence embedding (an encoder).

Pruning removes a head for real: its rows of query, key and value and its columns of the output projection are
cut out (`prune_linear_layer`; GPT-2's fused Conv1D likewise), so the model is smaller and faster. The heads
removed are recorded per layer, in the original numbering, in config.json (`llm_lab_pruned_heads`), and
`load_pruned` rebuilds the smaller architecture before loading the weights.
"""
from __future__ import annotations

import copy
import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .. import data, inference
from ..inference import forward
from ..errors import LabError, ModelError
from . import checks, common
from .loading import CONFIG_KEY

TARGETS = {"classifier": "the parent's predictions", "causal-lm": "the text's next tokens",
           "encoder": "the parent's sentence embeddings"}
DEFAULT_DATA = {"classifier": "demo-reviews", "encoder": "demo-reviews", "causal-lm": "demo-docs"}


# ---------------------------------------------------------------- the heads of a model
@dataclass
class LayerHeads:
    kind: str        # "bert" (BERT, RoBERTa, MiniLM, …) or "gpt2"
    block: object    # the transformer block
    head_size: int

    @property
    def out_proj(self):
        return self.block.attention.output.dense if self.kind == "bert" else self.block.attn.c_proj

    @property
    def count(self) -> int:
        """Heads this layer has now (after any pruning)."""
        proj = self.out_proj
        width = proj.in_features if self.kind == "bert" else proj.weight.shape[0]
        return width // self.head_size


def layers(model) -> list[LayerHeads]:
    out = []
    for block in common.blocks(model):
        attention = getattr(block, "attention", None)
        attn = getattr(block, "attn", None)
        if attention is not None and hasattr(getattr(attention, "self", None), "query") \
                and hasattr(getattr(attention, "output", None), "dense"):
            out.append(LayerHeads("bert", block, attention.self.attention_head_size))
        elif attn is not None and hasattr(attn, "c_attn") and hasattr(attn, "c_proj"):
            out.append(LayerHeads("gpt2", block, attn.head_dim))
        else:
            raise ModelError(f"Head pruning works on BERT-family encoders (BERT, RoBERTa, MiniLM, …) and GPT-2; the "
                             f"blocks of {type(model).__name__} ({type(block).__name__}) are neither.")
    return out


@contextmanager
def masked(layer: LayerHeads, head: int):
    """Within the block, `head` of `layer` contributes nothing (its attention output slice is zero)."""
    start, stop = head * layer.head_size, (head + 1) * layer.head_size

    def hook(module, args):
        x = args[0].clone()
        x[..., start:stop] = 0
        return (x, *args[1:])

    handle = layer.out_proj.register_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()


# ---------------------------------------------------------------- importance
def _batches(tokenizer, texts: list[str], batch_size: int, max_length: int) -> list:
    return [tokenizer(texts[i:i + batch_size], padding=True, truncation=True, max_length=max_length,
                      return_tensors="pt") for i in range(0, len(texts), batch_size)]


def _pooled(hidden, mask):
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


def _loss(model, head: str, batches: list, targets: list) -> float:
    """Mean loss over every example (a classifier, an encoder) or every predicted token (a causal LM)."""
    import torch
    import torch.nn.functional as F

    total, count = 0.0, 0
    with torch.inference_mode():
        for enc, target in zip(batches, targets):
            out = forward.outputs(model, **enc)
            if head == "classifier":
                total += float(F.cross_entropy(out.logits.float(), target, reduction="sum"))
                count += len(target)
            elif head == "causal-lm":
                labels = enc["input_ids"][:, 1:].masked_fill(enc["attention_mask"][:, 1:] == 0, -100)
                logits = out.logits[:, :-1].float()
                total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                               ignore_index=-100, reduction="sum"))
                count += int((labels != -100).sum())
            else:
                pooled = _pooled(out.last_hidden_state.float(), enc["attention_mask"])
                total += float((1 - F.cosine_similarity(pooled, target, dim=-1)).sum())
                count += len(target)
    return total / max(count, 1)


def _targets(model, head: str, batches: list, labels: list[int] | None) -> list:
    """What the loss compares with: the labels, else the unmasked model's predictions (classifier) or sentence
    embeddings (encoder); nothing for a causal LM (the text is its own target)."""
    import torch

    if head == "causal-lm":
        return [None] * len(batches)
    if head == "classifier" and labels is not None:
        sizes = [len(b["input_ids"]) for b in batches]
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        return [torch.tensor(labels[s:s + n]) for s, n in zip(starts, sizes)]
    with torch.inference_mode():
        if head == "classifier":
            return [forward.outputs(model, **enc).logits.argmax(-1) for enc in batches]
        return [_pooled(forward.outputs(model, **enc).last_hidden_state.float(), enc["attention_mask"])
                for enc in batches]


# Importance is measured on texts cut at this many tokens: one forward pass per head of every layer, so the cost grows
# with the length, while the ranking of heads settles on short texts.
IMPORTANCE_TOKENS = 128


def head_importance(loaded, texts: list[str], labels=None, batch_size: int = 16, max_length: int | None = IMPORTANCE_TOKENS,
                    progress=None) -> list[list[float]]:
    """importance[layer][head] = loss with that head masked − loss of the whole model, on `texts` (and `labels`:
    label names or indices of a classifier's outputs; None: its own predictions)."""
    model, head = loaded.model, loaded.head
    found = layers(model)
    batches = _batches(loaded.tokenizer, list(texts), batch_size, inference.limit(loaded, max_length))
    total = sum(layer.count for layer in found)
    with loaded.lock:
        targets = _targets(model, head, batches, label_ids(loaded, labels))
        base = _loss(model, head, batches, targets)
        out, done = [], 0
        for layer in found:
            row = []
            for h in range(layer.count):
                with masked(layer, h):
                    row.append(_loss(model, head, batches, targets) - base)
                done += 1
                if progress:
                    progress(done, total, f"head importance {done}/{total}")
            out.append(row)
    return out


def label_ids(loaded, labels) -> list[int] | None:
    """Labels as output indices: indices as they are, names matched to the classifier's labels (case aside)."""
    if labels is None or loaded.head != "classifier":
        return None
    names = {str(name).lower(): i for i, name in enumerate(loaded.labels)}
    out = []
    for label in labels:
        if isinstance(label, int):
            out.append(label)
        elif str(label).lower() in names:
            out.append(names[str(label).lower()])
        else:
            raise ModelError(f"Label {label!r} is not one of {loaded.entry.name}'s labels "
                             f"({', '.join(map(str, loaded.labels))}).")
    return out


# ---------------------------------------------------------------- which heads go
def choose(importance: list[list[float]], count: int) -> dict[int, list[int]]:
    """The `count` least important heads, at least one head left in every layer. Ties: the lower layer and
    head first, so the choice is the same every time."""
    ranked = sorted((score, layer, h) for layer, row in enumerate(importance) for h, score in enumerate(row))
    chosen: dict[int, list[int]] = {}
    for score, layer, h in ranked:
        if sum(map(len, chosen.values())) == count:
            break
        if len(importance[layer]) - len(chosen.get(layer, [])) > 1:
            chosen.setdefault(layer, []).append(h)
    return {layer: sorted(heads) for layer, heads in sorted(chosen.items())}


def how_many(params: dict, counts: list[int]) -> int:
    """How many heads to remove of a model whose layers have `counts` heads: `heads`, else `head_fraction` of
    them; refused (before any importance is measured) when more than all but one per layer."""
    total = sum(counts)
    most = total - len(counts)
    count = params.get("heads") or max(1, round(params["head_fraction"] * total))
    if most < 1:
        raise ModelError("Every layer of this model has a single attention head, which it keeps: there is no head "
                         "to remove. Use magnitude pruning, fp16/bf16 or distillation instead.")
    if count > most:
        raise ModelError(f"Cannot remove {count} of {total} heads: every layer keeps at least one, so at most {most} "
                         f"can go. Ask for heads {most} or fewer (or a head_fraction of at most {math.floor(100 * most / total) / 100:g}).")
    return count


# ---------------------------------------------------------------- removing heads
def _keep_index(keep: list[int], size: int):
    import torch

    return torch.cat([torch.arange(h * size, (h + 1) * size) for h in keep])


def _prune_conv1d(layer, index, dim: int):
    """GPT-2's Conv1D (weight: in × out) keeping `index` along `dim` (1: outputs, 0: inputs)."""
    import torch
    from transformers.pytorch_utils import Conv1D

    weight = layer.weight.index_select(dim, index.to(layer.weight.device)).detach().clone()
    bias = layer.bias[index].detach().clone() if dim == 1 else layer.bias.detach().clone()
    new = Conv1D(weight.shape[1], weight.shape[0]).to(weight.device, weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        new.bias.copy_(bias)
    return new


def _cut(layer: LayerHeads, keep: list[int]) -> None:
    from transformers.pytorch_utils import prune_linear_layer

    index = _keep_index(keep, layer.head_size)
    if layer.kind == "bert":
        attn, output = layer.block.attention.self, layer.block.attention.output
        attn.query, attn.key, attn.value = (prune_linear_layer(m, index) for m in (attn.query, attn.key, attn.value))
        output.dense = prune_linear_layer(output.dense, index, dim=1)
        attn.num_attention_heads = len(keep)
        attn.all_head_size = len(keep) * layer.head_size
        return
    attn = layer.block.attn
    split = attn.split_size
    attn.c_attn = _prune_conv1d(attn.c_attn, _cat(index, split), dim=1)
    attn.c_proj = _prune_conv1d(attn.c_proj, index, dim=0)
    attn.split_size = len(keep) * layer.head_size
    attn.num_heads = len(keep)


def _cat(index, split: int):
    import torch

    return torch.cat([index, index + split, index + 2 * split])


def pruned_heads(config) -> dict[int, list[int]]:
    """The heads already removed, per layer, in the original numbering."""
    return {int(k): sorted(int(h) for h in v) for k, v in (getattr(config, CONFIG_KEY, None) or {}).items()}


def prune(model, drop: dict[int, list[int]]) -> None:
    """Remove heads (numbered as the model has them now) in place, and record them in the original numbering."""
    done = pruned_heads(model.config)
    original = model.config.num_attention_heads
    found = layers(model)
    for index, heads in sorted(drop.items()):
        layer = found[index]
        kept_original = [h for h in range(original) if h not in done.get(index, [])]
        keep = [h for h in range(layer.count) if h not in heads]
        if not keep:
            raise ModelError(f"Layer {index} would have no head left; every layer keeps at least one.")
        _cut(layer, keep)
        done[index] = sorted(set(done.get(index, [])) | {kept_original[h] for h in heads})
    setattr(model.config, CONFIG_KEY, {str(k): v for k, v in sorted(done.items()) if v})


def restore(model, removed: dict[int, list[int]]) -> None:
    """Cut `removed` (original numbering) out of a model of the full architecture: the saved model's shape."""
    setattr(model.config, CONFIG_KEY, {})
    prune(model, removed)


# ---------------------------------------------------------------- loading a head-pruned folder
def load_pruned(model_class, folder, kwargs: dict):
    """(model, loading info) of a head-pruned folder: the architecture built from its config, the recorded heads
    cut out, then its safetensors weights loaded; cast to the dtype asked for."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(folder, local_files_only=True,
                                        trust_remote_code=kwargs.get("trust_remote_code", False))
    removed = pruned_heads(config)
    build = {"attn_implementation": kwargs["attn_implementation"]} if kwargs.get("attn_implementation") else {}
    if kwargs.get("num_labels") and kwargs["num_labels"] != config.num_labels:
        config.num_labels = kwargs["num_labels"]
    model = model_class.from_config(config, **build)
    restore(model, removed)
    state = {}
    for path in sorted(Path(folder).glob("*.safetensors")):
        state.update(load_file(str(path)))
    state = _matching_prefix(model, state)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise ModelError(f"{Path(folder).name}'s weights do not fit its recorded pruned heads: {exc}") from exc
    model.to(kwargs.get("dtype") or torch.float32)
    model.attention_weights = False  # layers with different head counts: the attention views need a full grid
    return model, {"missing_keys": _really_missing(model, state, result.missing_keys)}


def _matching_prefix(model, state: dict) -> dict:
    """The saved keys as `model` names them: a classifier's weights opened as its encoder lose the base
    model's prefix ("bert."), an encoder's opened as a classifier gain it."""
    prefix = getattr(model, "base_model_prefix", "") + "."
    expected = set(model.state_dict())
    forms = [state, {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)},
             {prefix + k: v for k, v in state.items()}]
    return max(forms, key=lambda form: len(expected & set(form)))


def _really_missing(model, state: dict, missing: list[str]) -> list[str]:
    """Missing keys, less those tied to a loaded weight (GPT-2's lm_head is its token embedding)."""
    params = dict(model.named_parameters(remove_duplicate=False))
    loaded = {params[k].data_ptr() for k in state if k in params}
    return [k for k in missing if k not in params or params[k].data_ptr() not in loaded]


# ---------------------------------------------------------------- the recipe
def _importance_data(actor, loaded, params: dict) -> tuple[str, list[dict]]:
    """The dataset measuring importance: the one asked for, else the parent's training data, else a demo."""
    name = params.get("dataset")
    if not name:
        trained_on = ((loaded.entry.meta or {}).get("dataset") or {}).get("dataset")
        name = trained_on if trained_on and _exists(actor, trained_on) else DEFAULT_DATA[loaded.head]
    return name, common.sample_rows(actor, name, params["samples"])


def _exists(actor, name: str) -> bool:
    try:
        data.get(actor, name)
        return True
    except LabError:
        return False


def make(actor, parent: str, params: dict, out_folder, progress) -> dict:
    loaded = common.load_parent(actor, parent)
    # refuse an architecture it cannot prune, or more heads than it can lose, before any work
    count = how_many(params, [layer.count for layer in layers(loaded.model)])
    dataset, rows = _importance_data(actor, loaded, params)
    texts, notes = [r["text"] for r in rows], []
    labels = [r["label"] for r in rows] if loaded.head == "classifier" and rows[0]["label"] is not None else None
    try:
        label_ids(loaded, labels)
    except ModelError as exc:
        labels = None
        notes.append(f"{exc} Importance was measured against {parent}'s own predictions instead.")
    importance = head_importance(loaded, texts, labels, progress=lambda d, t, m: progress(d, t + 2, m))
    drop = choose(importance, count)
    with loaded.lock:
        model = copy.deepcopy(loaded.model).eval()
    before = sum(p.numel() for p in model.parameters())
    prune(model, drop)
    found = checks.check_torch(loaded, model, texts[:32])
    found.update(heads_removed=sum(map(len, drop.values())), heads_before=sum(map(len, importance)),
                 parameters_before=before, parameters=sum(p.numel() for p in model.parameters()))
    common.save_torch(loaded, model, out_folder)
    return {"checks": found, "pruned_heads": getattr(model.config, CONFIG_KEY),
            "importance": [[round(v, 6) for v in row] for row in importance],
            "importance_data": {"dataset": dataset, "rows": len(texts), "target": "gold labels" if labels else
                                TARGETS[loaded.head]},
            "notes": notes}
