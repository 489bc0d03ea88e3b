"""Global magnitude pruning: the smallest weights of the transformer blocks' linear layers, ranked together, set
to zero (torch.nn.utils.prune.global_unstructured, then prune.remove so the zeros are the weights)."""
from __future__ import annotations

import copy

from . import checks, common

HONEST = ("Unstructured zeros do not shrink the dense safetensors file nor speed up dense kernels: the variant "
          "is as large and as fast as its parent.")


def block_weights(model) -> list[tuple]:
    """(module, "weight") of every linear layer (nn.Linear, GPT-2's Conv1D) inside the transformer blocks:
    embeddings, the pooler and the head stay whole."""
    import torch
    from transformers.pytorch_utils import Conv1D

    return [(m, "weight") for m in common.blocks(model).modules() if isinstance(m, (torch.nn.Linear, Conv1D))]


def sparsity_of(pairs: list[tuple]) -> float:
    zeros = sum(int((getattr(m, n) == 0).sum()) for m, n in pairs)
    return zeros / max(1, sum(getattr(m, n).numel() for m, n in pairs))


def prune(model, sparsity: float) -> float:
    """Prune `model` in place; returns the sparsity reached over the pruned weights."""
    from torch.nn.utils import prune as torch_prune

    pairs = block_weights(model)
    torch_prune.global_unstructured(pairs, pruning_method=torch_prune.L1Unstructured, amount=float(sparsity))
    for module, name in pairs:
        torch_prune.remove(module, name)
    return sparsity_of(pairs)


def make(actor, parent: str, params: dict, out_folder, progress) -> dict:
    loaded = common.load_parent(actor, parent)
    progress(0, 2, f"pruning {params['sparsity']:.0%} of {parent}'s block weights")
    with loaded.lock:
        model = copy.deepcopy(loaded.model).eval()
    achieved = prune(model, params["sparsity"])
    total = sum(p.numel() for p in model.parameters())
    zeros = sum(int((p == 0).sum()) for p in model.parameters())
    progress(1, 2, "checking against the parent")
    found = checks.check_torch(loaded, model, common.sample_texts(actor, params.get("dataset")))
    found.update(sparsity=round(achieved, 6), model_sparsity=round(zeros / total, 6))
    common.save_torch(loaded, model, out_folder)
    return {"checks": found, "notes": [HONEST]}
