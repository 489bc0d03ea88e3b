"""`models export NAME --out DIR`: a registry model as a folder any tool opens, with no LLM Lab code.

What is written depends on what the model is:
- a model LLM Lab runs in PyTorch (a built-in, a fine-tune, a distilled student, a magnitude-pruned or cast
  variant, a GGUF file's dequantized folder): its weights as safetensors (in the dtype it opens in), config,
  generation config, tokenizer and chat template, as `save_pretrained` writes them, so `pipeline(...)` and
  `AutoModelFor….from_pretrained` open it;
- an adapter-only folder (LoRA weights and a head over a base): merged into its base by default, because a
  classifier adapter carries labels its base's config lacks, so no tool opens it from the adapter alone.
  `keep_adapter=True` writes the PEFT adapter instead, its base named as any tool resolves it (a Hub id, else
  the base's absolute folder), to open with peft;
- an ONNX variant: the graph (and its external data) with its config and tokenizer, for onnxruntime/Optimum;
- a head-pruned variant (layers with different head counts, which transformers cannot build): written full
  size, each removed head's query, key and value rows and output-projection columns as zeros. A zero head's
  values are zero whatever it attends to, so it adds exactly nothing: the same outputs, at the full size.
Every folder gets a Hugging Face model card (`hf_card`). The folder is written into a staging folder beside
DIR and renamed into place, so DIR is either complete or absent; an existing non-empty DIR is refused.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from . import hf_card, loaders, model_files, registry, settings
from .access import Actor
from .errors import ModelError

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json",
                   "merges.txt", "spiece.model", "tokenizer.model", "chat_template.jinja", "chat_template.json",
                   "added_tokens.json")
ONNX_SUFFIXES = (".onnx", ".onnx.data")


def export(actor: Actor, name: str, out, keep_adapter: bool = False) -> dict:
    """Write the registry model `name` into the new folder `out`; returns what was written."""
    if settings.hosted():
        actor.require("server", "export a model into a folder of the server")
    target = check_target(out)
    entry = registry.resolve(actor, name)
    if loaders.opening(entry).open is not None:
        raise ModelError(f"{name} is served elsewhere (an endpoint): it has no weights here to export.")
    staging = target.parent / f".{target.name}.staging-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        kind = _write(actor, entry, staging, keep_adapter)
        if target.exists():  # an empty folder: replaced by the complete one
            target.rmdir()
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    files = sorted(p.name for p in target.iterdir())
    return {"model": entry.name, "folder": str(target), "kind": kind, "files": files,
            "bytes": sum(p.stat().st_size for p in target.iterdir() if p.is_file())}


def zip_bytes(actor: Actor, name: str, keep_adapter: bool = False) -> bytes:
    """The exported folder of `name` as a zip (the dashboard's download button): what `export` writes, so the
    download opens in any tool too. Written in a private temporary folder, so no server right is needed: the
    registry's own access check (`resolve`) decides who may download which model."""
    import io
    import tempfile
    import zipfile

    entry = registry.resolve(actor, name)
    if loaders.opening(entry).open is not None:
        raise ModelError(f"{name} is served elsewhere (an endpoint): it has no weights here to download.")
    with tempfile.TemporaryDirectory(prefix="llm-lab-export-") as tmp:
        folder = Path(tmp) / "model"
        folder.mkdir()
        _write(actor, entry, folder, keep_adapter)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    zf.write(path, f"{name}/{path.relative_to(folder)}")
    return buffer.getvalue()


def check_target(out) -> Path:
    """The export's folder, resolved: refused when it exists and is not an empty folder."""
    if not str(out or "").strip():
        raise ModelError("No output folder given: pass --out DIR (a new or empty folder).")
    target = Path(out).expanduser().resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ModelError(f"{target} exists and is not an empty folder; export writes a new folder. Choose a new "
                         "path (or empty or remove that one).")
    if not target.parent.is_dir():
        raise ModelError(f"{target.parent} does not exist: create it first, or choose another --out.")
    return target


def _write(actor: Actor, entry, folder: Path, keep_adapter: bool) -> str:
    """Write the files of `entry` into `folder`; returns the kind written (model, adapter, onnx, heads-restored)."""
    from .compress.loading import kind as variant_kind

    source = Path(entry.location)
    head = _head(actor, entry)
    facts = hf_card.facts_for_folder(actor, entry, source, head)
    variant = variant_kind(source) if source.is_dir() else None
    if registry.is_adapter_folder(entry) and keep_adapter:
        kind = _write_adapter(actor, entry, source, folder)
        facts.how_to_load = hf_card.adapter_snippet(head, _adapter_base(folder))
    elif variant == "onnx":
        kind = _write_onnx(source, folder)
        facts.how_to_load = hf_card.onnx_snippet()
    else:
        kind = _write_torch(actor, entry, head, folder, restore_heads=variant == "pruned-heads")
        facts.how_to_load = hf_card.load_snippet(head)
        if kind == "heads-restored":
            facts.limitations = [x for x in facts.limitations if "plain transformers cannot" not in x] + [
                ("Exported full size: the attention heads LLM Lab removed are zeros here (the same outputs; the "
                 "size and speed of the unpruned model).")]
    if registry.is_adapter_folder(entry) and not keep_adapter:
        facts.base_relation = "finetune" if facts.base_model else None
        facts.tags = [t for t in facts.tags if t != "peft"] + ["merged-lora"]
    hf_card.write(folder, facts)
    return kind


def _head(actor: Actor, entry) -> str:
    from . import capabilities

    head = capabilities.default_head(entry)
    if head not in capabilities.HEADS:  # a Hub id of unknown head: the loaded model says
        head = registry.load(actor, entry.name, device="cpu").head
    return head


def _write_torch(actor: Actor, entry, head: str, folder: Path, restore_heads: bool) -> str:
    """save_pretrained of the model as the registry opens it (an adapter merged over its base)."""
    loaded = registry.load(actor, entry.name, head=head, device="cpu")
    model = loaded.model
    with loaded.lock:
        if restore_heads:
            model = full_heads(model)
        model.save_pretrained(folder, safe_serialization=True)
    loaded.tokenizer.save_pretrained(folder)
    _drop_lab_keys(folder / "config.json")
    return "heads-restored" if restore_heads else "model"


def _drop_lab_keys(config_path: Path) -> None:
    """config.json without LLM Lab's own keys (a pruned model's record of its removed heads: restored here)."""
    from .compress.loading import CONFIG_KEY

    config = json.loads(config_path.read_text())
    if config.pop(CONFIG_KEY, None) is not None:
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _write_adapter(actor: Actor, entry, source: Path, folder: Path) -> str:
    """The PEFT adapter and head as they are, its base named as any tool resolves it, config and tokenizer."""
    for name in ADAPTER_FILES + TOKENIZER_FILES + ("config.json",):
        if (source / name).is_file():
            shutil.copy2(source / name, folder / name)
    base_name = registry.adapter_base_name(source)
    config = json.loads((folder / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = model_files.resolvable_base(actor, base_name)
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2))
    return "adapter"


def _adapter_base(folder: Path) -> str:
    return json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"]


def _write_onnx(source: Path, folder: Path) -> str:
    for path in source.iterdir():
        if path.is_file() and (path.name.endswith(ONNX_SUFFIXES) or path.name in TOKENIZER_FILES
                               or path.name == "config.json"):
            shutil.copy2(path, folder / path.name)
    return "onnx"


# ---------------------------------------------------------------- head-pruned models back to full size
def full_heads(model):
    """A copy of a head-pruned model at full size: every removed head's q/k/v rows and output columns zero."""
    import copy

    from .compress import heads as pruning

    removed = pruning.pruned_heads(model.config)
    config = copy.deepcopy(model.config)
    setattr(config, pruning.CONFIG_KEY, {})
    full = type(model)(config).to(next(model.parameters()).dtype).eval()
    heads, size = _heads_and_size(config)
    pruned_state = model.state_dict()
    state = full.state_dict()
    for key, value in state.items():
        small = pruned_state[key]
        if small.shape != value.shape:
            kept = [h for h in range(heads) if h not in removed.get(_layer_of(key), [])]
            small = _pad(key, small, value, kept, heads, size)
        state[key] = small.clone()
    full.load_state_dict(state)
    return full


def _heads_and_size(config) -> tuple[int, int]:
    hidden = getattr(config, "hidden_size", None) or config.n_embd
    heads = getattr(config, "num_attention_heads", None) or config.n_head
    return heads, hidden // heads


def _layer_of(key: str) -> int:
    import re

    found = re.search(r"\.(?:layer|h)\.(\d+)\.", key)
    if not found:
        raise ModelError(f"Cannot restore the pruned heads of {key}: no layer number in its name.")
    return int(found.group(1))


def _pad(key: str, small, full, kept: list[int], heads: int, size: int):
    """`full`-shaped zeros holding `small` at the kept heads' rows or columns (the one dimension that differs;
    GPT-2's fused c_attn holds query, key and value blocks of all heads one after the other)."""
    import torch

    dims = [d for d in range(full.dim()) if full.shape[d] != small.shape[d]]
    if len(dims) != 1 or full.shape[dims[0]] % (heads * size) or small.shape[dims[0]] % (len(kept) * size):
        raise ModelError(f"Cannot restore the pruned heads of {key}: shapes {tuple(small.shape)} and "
                         f"{tuple(full.shape)}.")
    dim = dims[0]
    blocks = full.shape[dim] // (heads * size)
    index = torch.cat([torch.arange(size) + (block * heads + head) * size for block in range(blocks) for head in kept])
    out = torch.zeros_like(full)
    out.index_copy_(dim, index, small.to(full.dtype))
    return out
