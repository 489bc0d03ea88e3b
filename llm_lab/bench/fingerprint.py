"""What a result needs to be reproduced: the model's fingerprint and the environment."""
from __future__ import annotations

import hashlib
import json
import platform
import re
import subprocess
import sys
import threading
from functools import lru_cache
from pathlib import Path

PACKAGES = ("torch", "transformers", "numpy", "pandas", "scikit-learn", "evaluate", "sacrebleu", "rouge-score",
            "accelerate", "tokenizers", "datasets", "lm_eval")


# files that decide what a model computes besides its weights (config, tokenizer, adapter settings)
CONFIG_FILES = ("config.json", "generation_config.json", "tokenizer.json", "vocab.txt", "vocab.json", "merges.txt",
                "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "tokenizer.model",
                "spiece.model", "sentencepiece.bpe.model", "adapter_config.json",
                # transformers 5 keeps a chat template beside the tokenizer: it decides what a chat model reads
                "chat_template.jinja", "chat_template.json")
# (an ONNX graph's weights may lie in the external data file beside it: model.onnx.data)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".msgpack", ".onnx", ".onnx.data")
# what a Trainer leaves beside the weights (pickles of settings and optimizer state): not part of the model
NOT_WEIGHTS = re.compile(r"(training_args|optimizer|scheduler|scaler|rng_state[^.]*)\.(bin|pt|pth)")

# sha256 of a file's bytes by (path, size, mtime_ns, inode, ctime_ns): in this process only, so a long-lived
# worker reads a model's weights once, and a file rewritten in any way (its mtime or ctime moves) is read again
_DIGESTS: dict[tuple, str] = {}
_DIGESTS_LOCK = threading.Lock()
_MAX_DIGESTS = 4096


def _hash_file(path: Path) -> str:
    """sha256 of every byte of a file (read in chunks)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def file_digest(path: Path) -> str:
    """The sha256 of a file's bytes, cached in this process by (path, size, mtime_ns, inode, ctime_ns)."""
    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
    with _DIGESTS_LOCK:
        if key in _DIGESTS:
            return _DIGESTS[key]
    digest = _hash_file(path)
    with _DIGESTS_LOCK:
        if len(_DIGESTS) >= _MAX_DIGESTS:
            _DIGESTS.clear()
        _DIGESTS[key] = digest
    return digest


def model_files(folder: Path) -> list[Path]:
    """What a model folder's fingerprint covers: its config and tokenizer files, every weight file (sharded,
    .bin, …) and the files of an adapter (at the top, or in an `adapter*` folder beside merged weights)."""
    root = Path(folder)
    found = []
    for place in [root] + sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("adapter")):
        for path in sorted(place.iterdir()):
            if not path.is_file():
                continue
            if path.name in CONFIG_FILES or (path.name.endswith(WEIGHT_SUFFIXES) and not NOT_WEIGHTS.fullmatch(path.name)):
                found.append(path)
    return found


def folder_fingerprint(folder: str) -> str:
    """sha256 over (relative name, sha256 of the bytes) of `model_files(folder)`: any weight that changes
    changes it. The files' digests are cached (`file_digest`), so asking again costs a stat per file."""
    root = Path(folder)
    h = hashlib.sha256()
    for path in model_files(root):
        h.update(f"{path.relative_to(root).as_posix()}:{file_digest(path)}\n".encode())
    return h.hexdigest()


def model_fingerprint(loaded, actor=None) -> str:
    """Stable id of the weights a result was computed with (plus the head, when it is freshly made). An
    adapter-only folder (LoRA weights and a head, loaded over a base model: registry.adapter_base) includes
    its base's fingerprint, resolved for `actor`, since the base's weights are half of the model."""
    entry = loaded.entry
    if entry.source == "endpoint":  # weights unknown: the URL and the server's model name
        return hashlib.sha256(f"endpoint|{entry.location}|{entry.meta.get('model')}".encode()).hexdigest()[:20]
    folder = Path(entry.location)
    if entry.source == "hub" or not folder.is_dir():
        folder = Path(getattr(loaded.model.config, "_name_or_path", "") or "")
    h = hashlib.sha256()
    if folder.is_dir():
        h.update(folder_fingerprint(str(folder)).encode())
        if actor is not None and entry.source != "hub" and (folder / "adapter_config.json").exists():
            from .. import registry

            base = registry.adapter_base(actor, entry)
            if base:
                h.update(f"|base:{folder_fingerprint(base)}".encode())
    else:
        h.update(entry.location.encode())
    h.update(f"|{loaded.head}|{loaded.dtype}".encode())
    if loaded.head_is_new:  # a random head: its weights are part of what was measured
        for name, param in loaded.model.named_parameters():
            if not name.startswith(getattr(loaded.model, "base_model_prefix", "") + "."):
                h.update(name.encode() + param.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:20]


@lru_cache(maxsize=None)
def _version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


@lru_cache(maxsize=1)
def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: str) -> dict:
    import torch

    info = {
        "packages": {p: _version(p) for p in PACKAGES if _version(p)},
        "python": sys.version.split()[0], "platform": platform.platform(), "device": device,
        "torch_threads": torch.get_num_threads(), "llm_lab_commit": _git_commit(),
        "hostname_hash": hashlib.sha256(platform.node().encode()).hexdigest()[:8],
    }
    if str(device).startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def settings_hash(values: dict) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]
