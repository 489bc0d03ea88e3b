"""What a model folder says about itself before anything is loaded: config.json and its weight files' headers.

The Models page shows this card while the model loads in the background: reading a config and the first few
kilobytes of each safetensors file takes milliseconds and imports neither torch nor transformers (about 4 s on
a 2-core CPU before the first model of a server process). The loaded model's own card (`LoadedModel.info`)
replaces it once the weights are in memory.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

from .access import Actor
from .registry import ADAPTER_CONFIG, ModelEntry, adapter_base

MAX_HEADER_BYTES = 100 * 2**20  # a safetensors header larger than this is not a header


def safetensors_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor name → shape of the file's floating-point tensors (weights; integer buffers such as position ids
    are left out), from its JSON header (an 8-byte little-endian length, then the JSON)."""
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        if length > MAX_HEADER_BYTES:
            raise ValueError(f"{path.name}: not a safetensors file (header of {length} bytes)")
        header = json.loads(handle.read(length))
    return {name: spec["shape"] for name, spec in header.items()
            if name != "__metadata__" and (spec["dtype"].startswith("F") or spec["dtype"] == "BF16")}


def parameter_count(folder: Path) -> int:
    """Parameters stored in a folder's safetensors files (tied weights are stored, and so counted, once). LoRA
    matrices are left out: the registry merges them into the base's weights, which they do not add to."""
    total = 0
    for path in sorted(folder.glob("*.safetensors")):
        for name, shape in safetensors_shapes(path).items():
            if "lora_" in name:
                continue
            count = 1
            for size in shape:
                count *= size
            total += count
    return total


def _first(config: dict, *names: str):
    text = config.get("text_config") or config  # multimodal configs keep the language model's sizes apart
    return next((text[n] for n in names if text.get(n)), None)


def card(actor: Actor, entry: ModelEntry, head: str) -> dict | None:
    """The card's numbers for a local folder, read from its files; None when they are not on disk (a Hub id)."""
    folder = Path(entry.location)
    if entry.source != "hub" and (gguf_card := _gguf_card(entry, head)):
        return gguf_card
    config_path = folder / "config.json"
    if entry.source == "hub" or not config_path.is_file():
        return None
    config = json.loads(config_path.read_text())
    parameters = parameter_count(folder)
    if (folder / ADAPTER_CONFIG).exists():  # an adapter-only folder: the base's weights plus the adapter's
        base = adapter_base(actor, entry)
        parameters += parameter_count(Path(base)) if base else 0
    id2label = config.get("id2label") or {}
    labels = entry.labels or [id2label[k] for k in sorted(id2label, key=int)]
    return {
        "name": entry.name, "source": entry.source, "head": head,
        "architecture": config.get("model_type") or "?",  # the class depends on the head it is opened with
        "model_type": config.get("model_type"), "parameters": parameters,
        "layers": _first(config, "num_hidden_layers", "n_layer", "num_layers"),
        "heads": _first(config, "num_attention_heads", "n_head"),
        "hidden_size": _first(config, "hidden_size", "n_embd", "d_model"),
        "vocab_size": _first(config, "vocab_size"),
        "max_positions": _first(config, "max_position_embeddings", "n_positions"),
        "labels": labels if head == "classifier" else [],
    }


def _gguf_card(entry: ModelEntry, head: str) -> dict | None:
    """A GGUF file's card before it is loaded: from its converted folder when the cache has it, else from the
    file's header (which says less: no layer sizes)."""
    from dataclasses import replace

    from . import gguf

    try:
        path = gguf.gguf_path(entry.location)
    except Exception:  # noqa: BLE001  several GGUF files: loading says which
        return None
    if path is None:
        return None
    if gguf.is_cached(path):
        return card(None, replace(entry, location=str(gguf.cached_folder(path))), head)
    described = gguf.describe(path)
    return {"name": entry.name, "source": entry.source, "head": head,
            "architecture": f"{described.architecture} (GGUF {described.quantization})",
            "model_type": described.architecture, "parameters": described.parameters, "layers": None, "heads": None,
            "hidden_size": None, "vocab_size": None, "max_positions": described.context_length, "labels": []}


# ---------------------------------------------------------------- what other tools read of a folder
def resolvable_base(actor: Actor, name: str) -> str:
    """How another tool names the base `name` (a registry name): its Hub id when LLM Lab knows it (a Hub
    entry, or a built-in that is a packaged Hub model), else its absolute folder. Registry names mean nothing
    outside LLM Lab, so they never go into files other tools read (adapter_config.json, README.md's YAML)."""
    from .registry import resolve

    return hub_base(actor, name) or str(Path(resolve(actor, name, prepare=False).location).resolve())


def hub_base(actor: Actor, name: str | None) -> str | None:
    """The Hub id of the registry model `name`, when it is one or is a packaged copy of one; else None."""
    from .errors import ModelError
    from .registry import resolve

    if not name:
        return None
    try:
        entry = resolve(actor, name, prepare=False)
    except ModelError:  # a parent since removed: the card says its name, not a Hub id
        return None
    return (entry.meta or {}).get("hub_id") or (entry.location if entry.source == "hub" else None)


def licence_of(actor: Actor, entry: ModelEntry, depth: int = 0) -> str:
    """A model's licence: its own (entry.meta["licence"]), else its parent's (a fine-tune or variant keeps the
    licence of what it was made from), else "unknown"."""
    from .errors import ModelError
    from .registry import resolve

    own = (entry.meta or {}).get("licence")
    if own or not entry.parent or depth > 8:
        return own or "unknown"
    try:
        return licence_of(actor, resolve(actor, entry.parent, prepare=False), depth + 1)
    except ModelError:
        return "unknown"
