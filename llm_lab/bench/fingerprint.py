"""What a result needs to be reproduced: the model's fingerprint and the environment."""
from __future__ import annotations

import hashlib
import json
import platform
import struct
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

PACKAGES = ("torch", "transformers", "numpy", "pandas", "scikit-learn", "evaluate", "sacrebleu", "rouge-score",
            "accelerate", "tokenizers", "datasets")


def _safetensors_header(path: Path) -> bytes:
    with open(path, "rb") as handle:
        (n,) = struct.unpack("<Q", handle.read(8))
        return handle.read(min(n, 100_000_000))


@lru_cache(maxsize=64)
def folder_fingerprint(folder: str, stamp: tuple) -> str:
    """sha256 of config.json plus, per weight file, its name, size and safetensors header (tensor names,
    shapes, dtypes and offsets). `stamp` (names, sizes, mtimes) only keys the in-process cache."""
    root = Path(folder)
    h = hashlib.sha256()
    for name in ("config.json", "generation_config.json", "tokenizer.json", "vocab.txt", "tokenizer_config.json"):
        if (root / name).exists():
            h.update(name.encode() + (root / name).read_bytes())
    for path in sorted(root.iterdir()):
        if path.suffix in (".safetensors", ".bin"):
            h.update(f"{path.name}:{path.stat().st_size}".encode())
            if path.suffix == ".safetensors":
                h.update(_safetensors_header(path))
    return h.hexdigest()


def model_fingerprint(loaded) -> str:
    """Stable id of the weights a result was computed with (plus the head, when it is freshly made)."""
    entry = loaded.entry
    folder = Path(entry.location)
    if entry.source == "hub" or not folder.is_dir():
        folder = Path(getattr(loaded.model.config, "_name_or_path", "") or "")
    h = hashlib.sha256()
    if folder.is_dir():
        stamp = tuple((p.name, p.stat().st_size, p.stat().st_mtime) for p in sorted(folder.iterdir()) if p.is_file())
        h.update(folder_fingerprint(str(folder), stamp).encode())
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
