"""What the registry asks of a variant folder, without importing torch: is it an ONNX export or a model with
pruned heads (each opened its own way), and which dtype does a cast variant open in. Importing this module
registers the registry's `compressed` loader (llm_lab/loaders.py)."""
from __future__ import annotations

import json
from pathlib import Path

from .. import loaders

ONNX_FILE = "model.onnx"
CAST_DTYPES = {"fp16": "float16", "bf16": "bfloat16"}
CONFIG_KEY = "llm_lab_pruned_heads"   # in config.json: {"layer": [original indices of the heads removed]}


def kind(folder) -> str | None:
    """"onnx" (model.onnx and no safetensors), "pruned-heads" (config.json records removed heads) or None."""
    folder = Path(folder)
    if (folder / ONNX_FILE).is_file() and not any(folder.glob("*.safetensors")):
        return "onnx"
    return "pruned-heads" if has_pruned_heads(folder) else None


def has_pruned_heads(folder) -> bool:
    try:
        return bool(json.loads((Path(folder) / "config.json").read_text()).get(CONFIG_KEY))
    except (OSError, ValueError, AttributeError):
        return False


def load(kind_: str, folder, head: str, name: str, model_class, kwargs: dict):
    """(model, loading info) of a variant folder of `kind_`."""
    if kind_ == "onnx":
        from .onnx_model import OnnxModel

        return OnnxModel(folder, head, name), {}
    from .heads import load_pruned

    return load_pruned(model_class, folder, kwargs)


def variant_dtype(entry) -> str | None:
    """The dtype a cast variant (fp16, bf16) opens in when nobody asks for another: its meta["recipe"]'s."""
    return CAST_DTYPES.get(((entry.meta or {}).get("recipe") or {}).get("method"))


def opens(entry) -> bool:
    """Whether the registry opens `entry` as a variant (an ONNX export, pruned heads): a folder of such a kind."""
    return entry.source not in ("hub", "endpoint") and kind(entry.location) is not None


def load_request(request: loaders.LoadRequest):
    """The registry's load of a variant folder: (model, loading info)."""
    return load(kind(request.source), request.source, request.head, request.entry.name, request.model_class,
                request.kwargs)


loaders.register(loaders.Loader("compressed", opens=opens, load=load_request, dtype=variant_dtype, order=30))
