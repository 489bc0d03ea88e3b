"""What every recipe shares: the parent loaded for compression, sample texts, saving, sizes, the blocks."""
from __future__ import annotations

import json
from pathlib import Path

from .. import capabilities, data, registry
from ..access import Actor
from ..errors import ModelError

# Checks run on these when no dataset is given: short and long, plain and odd, so padding is exercised.
SAMPLE_TEXTS = [
    "I loved it.", "Terrible product, it broke after one day and support never answered.",
    "It's okay, I guess.", "The battery lasts two days; the screen is sharp but the speaker is weak.",
    "Would buy again!", "Not worth the money", "Shipping was fast, the box was damaged, the item was fine.",
    "meh", "An absolute delight from start to finish: well made, well priced, and it just works.",
    "Does what it says.", "I returned it.", "The instructions were confusing but the result is great.",
    "def add(a, b):\n    return a + b", "Numbers: 3.14, 2,718 and 1e-9.", "Ça marche très bien, merci !",
    "Worst. Purchase. Ever. " * 6,
]


def load_parent(actor: Actor, name: str):
    """The parent as the registry opens it (its default head), in float32 on the CPU: every recipe starts from
    the same numbers. Shared with other callers: copy it before changing it."""
    check_parent(registry.resolve(actor, name))
    return registry.load(actor, name, device="cpu", dtype="float32")


def check_parent(entry) -> None:
    """Refuse a parent no recipe can start from: an endpoint (its weights are on another server) or an ONNX
    export (no PyTorch weights)."""
    from .recipes import NEEDS

    if not capabilities.entry_fits(NEEDS, entry):  # an endpoint: no weights here
        raise ModelError(f"{entry.name} is an OpenAI-compatible endpoint: its weights are on another server, so it "
                         "cannot be compressed here. Compress a model whose weights LLM Lab loads (a registry model, "
                         "a folder or a Hub id), then serve the variant.")
    if is_onnx_folder(entry):
        raise ModelError(f"{entry.name} is an ONNX export (no PyTorch weights): make variants from its parent "
                         f"{entry.parent or '(the model it was exported from)'}.")


def is_onnx_folder(entry) -> bool:
    folder = Path(entry.location)
    return entry.source not in ("hub", "endpoint") and (folder / "model.onnx").is_file()


def sample_texts(actor: Actor, dataset: str | None, limit: int = 32) -> list[str]:
    """Texts to check a variant on: `limit` rows of the dataset (`sample_rows`), or the built-in samples."""
    if not dataset:
        return list(SAMPLE_TEXTS)
    return [row["text"] for row in sample_rows(actor, dataset, limit)]


def sample_rows(actor: Actor, dataset: str, limit: int) -> list[dict]:
    """Up to `limit` rows of `dataset` ({"text", "label"}): the validation split's, then the train split's, each
    by id; the test split only when there is nothing else (it is left for evaluating the variant)."""
    info = data.get(actor, dataset)
    column = "text" if "text" in info.roles else "prompt" if "prompt" in info.roles else None
    if column is None:
        data.require(info, "text")
    frame = data.load_frame(actor, dataset)
    frame = frame[frame[column].astype(str).str.strip() != ""]
    if (frame["split"] != "test").any():
        frame = frame[frame["split"] != "test"]
    order = frame["split"].map({"validation": 0, "train": 1}).fillna(2)
    frame = frame.assign(_order=order).sort_values(["_order", "id"]).head(limit)
    if frame.empty:
        raise ModelError(f"Dataset {dataset!r} has no texts to measure with.")
    labels = frame["label"].astype(str).tolist() if "label" in frame.columns else [None] * len(frame)
    return [{"text": str(t), "label": lab} for t, lab in zip(frame[column], labels)]


def save_torch(loaded, model, out_folder: Path, config_extra: dict | None = None) -> None:
    """A torch variant in Hugging Face format: safetensors weights, config (plus `config_extra`), tokenizer."""
    for key, value in (config_extra or {}).items():
        setattr(model.config, key, value)
    model.save_pretrained(out_folder, safe_serialization=True)
    loaded.tokenizer.save_pretrained(out_folder)


def weights_bytes(folder) -> int:
    """Bytes of a folder's weight files (`registry.WEIGHT_SUFFIXES`: safetensors, an ONNX graph and its external
    data); 0 for a Hub id."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    return sum(p.stat().st_size for p in folder.iterdir()
               if p.is_file() and p.name.endswith(registry.WEIGHT_SUFFIXES))


def model_bytes(actor: Actor, name: str) -> int:
    """What a registry model's weights take on disk: its folder's, plus its base's for an adapter-only folder
    (shipped without the base it is loaded over)."""
    entry = registry.resolve(actor, name)
    base = registry.adapter_base(actor, entry)
    return weights_bytes(entry.location) + (weights_bytes(base) if base else 0)


def blocks(model):
    """The transformer blocks of a model (BERT's encoder.layer, GPT-2's h, …): the ModuleList holding
    num_hidden_layers modules."""
    import torch

    count = getattr(model.config, "num_hidden_layers", None)
    base = getattr(model, "base_model", model)
    for module in base.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count:
            return module
    raise ModelError(f"No list of {count} transformer blocks found in {type(model).__name__}.")


def write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, indent=2, default=str))
