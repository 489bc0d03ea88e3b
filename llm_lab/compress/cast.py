"""fp16 / bf16: the parent's weights cast to a half-precision dtype and saved as safetensors."""
from __future__ import annotations

import copy

from . import checks, common
from .loading import CAST_DTYPES as DTYPES


def make(actor, parent: str, params: dict, out_folder, progress, method: str = "fp16") -> dict:
    import torch

    loaded = common.load_parent(actor, parent)
    dtype = getattr(torch, DTYPES[method])
    progress(0, 2, f"casting {parent} to {DTYPES[method]}")
    with loaded.lock:
        model = copy.deepcopy(loaded.model).to(dtype).eval()
    progress(1, 2, "checking against the parent")
    found = checks.check_torch(loaded, model, common.sample_texts(actor, params.get("dataset")))
    common.save_torch(loaded, model, out_folder)
    notes = ["Float16 is for GPUs: on the CPU it is slow."] if method == "fp16" else []
    return {"checks": found, "dtype": DTYPES[method], "notes": notes}


def make_fp16(actor, parent, params, out_folder, progress) -> dict:
    return make(actor, parent, params, out_folder, progress, "fp16")


def make_bf16(actor, parent, params, out_folder, progress) -> dict:
    return make(actor, parent, params, out_folder, progress, "bf16")

