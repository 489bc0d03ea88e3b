"""Loaders: how the registry opens each kind of entry, without the registry importing the features that make them.

A `Loader` says whether it `opens` an entry and how: `load` reads the weights of a model that runs here (the
registry then caches it and picks its device and dtype), while `open` makes a model whose weights are elsewhere
(an endpoint: nothing is loaded or cached). Optional hooks: `dtype`, the dtype an entry opens in when nobody
asks for one (a cast variant's), and `check_entry`, what `registry.register` checks of an entry the loader
opens, in place of the registry's own checks (the folder, and on a hosted server where a non-admin may point);
`prepare`, for an entry that must become a folder before anything reads it (a GGUF file, dequantized once into
a cached folder): `registry.resolve` hands back the prepared entry, so every feature sees a plain folder.

The registry asks the loaders in `order` (lowest first); the first that opens an entry opens it. Shipped:

    10  endpoint     llm_lab/endpoints.py        a model behind an OpenAI-compatible server
    15  gguf         llm_lab/gguf.py             a llama.cpp GGUF file, dequantized once into a cached folder
    20  adapter      llm_lab/registry.py         an adapter-only folder (LoRA weights and a head) over its base
    30  compressed   llm_lab/compress/loading.py an ONNX export, or a model with pruned attention heads
    100 transformers llm_lab/registry.py         any other Hugging Face folder or Hub id

A feature registers its loader when its module is imported (`register`). The modules in `PLUGINS` are imported
the first time anyone asks which loader opens an entry, so a load finds them whatever was imported before; they
are light (no torch), and this module imports nothing of the rest of llm_lab, so nothing here is circular.
"""
from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from typing import Any, Callable

from .errors import ModelError

# the modules that register loaders, imported on first use (the registry's own two: adapters, plain folders)
PLUGINS = ("llm_lab.registry", "llm_lab.endpoints", "llm_lab.gguf", "llm_lab.compress.loading")


@dataclass
class LoadRequest:
    """What a loader's `load` gets: the entry, the folder to read (a Hub id's local snapshot), the head, the
    head's transformers Auto class and the keyword arguments of `from_pretrained` (dtype, local_files_only,
    attention implementation, …), and for an adapter-only folder its base model's folder."""
    entry: Any
    source: str
    head: str
    model_class: Any
    kwargs: dict
    base: str | None = None


@dataclass(frozen=True)
class Loader:
    name: str
    opens: Callable[[Any], bool]                              # opens(entry): whether this loader opens it
    load: Callable[[LoadRequest], tuple] | None = None        # load(request) -> (model, loading info)
    open: Callable[[Any, str | None], Any] | None = None      # open(entry, head) -> LoadedModel, nothing cached
    dtype: Callable[[Any], str | None] | None = None          # dtype(entry): its dtype when none is asked
    check_entry: Callable[[Any, Any], None] | None = None     # check_entry(actor, entry): before it is registered
    prepare: Callable[[Any], Any] | None = None               # prepare(entry) -> the entry of a folder to open
    order: int = 50

    def __post_init__(self):
        if (self.load is None) == (self.open is None):
            raise ValueError(f"Loader {self.name!r}: give exactly one of load (weights loaded here) or open.")


_loaders: dict[str, Loader] = {}
_lock = threading.Lock()
_plugins_imported = False


def register(loader: Loader) -> Loader:
    """Add `loader` (one of the same name is replaced: a module imported again registers once)."""
    with _lock:
        _loaders[loader.name] = loader
    return loader


def unregister(name: str) -> None:
    with _lock:
        _loaders.pop(name, None)


def _import_plugins() -> None:
    global _plugins_imported
    if not _plugins_imported:
        for module in PLUGINS:
            importlib.import_module(module)
        _plugins_imported = True


def registered() -> list[Loader]:
    """Every loader, in the order they are asked."""
    _import_plugins()
    with _lock:
        loaders = list(_loaders.values())
    return sorted(loaders, key=lambda loader: loader.order)


def opening(entry) -> Loader:
    """The loader that opens `entry`: the first in order whose `opens` says yes."""
    for loader in registered():
        if loader.opens(entry):
            return loader
    raise ModelError(f"Nothing here opens {entry.name} (source {entry.source}, {entry.location}).")


def prepared(entry):
    """`entry` as the folder it opens from: what the first loader with a `prepare` hook that opens it makes of
    it (a GGUF file's cached folder), else `entry` itself."""
    for loader in registered():
        if loader.prepare is not None and loader.opens(entry):
            return loader.prepare(entry)
    return entry


def default_dtype(entry) -> str | None:
    """The dtype `entry` opens in when nobody asks for one: the first answer of a loader's `dtype` hook, asked of
    every loader (a cast variant is a plain folder, but its recipe, which compress knows, says fp16), else None."""
    for loader in registered():
        if loader.dtype is not None and (dtype := loader.dtype(entry)):
            return dtype
    return None
