"""The `lm_eval` task type: an lm-evaluation-harness task run on an LLM Lab model, results in LLM Lab's form.

    - name: arc
      type: lm_eval
      task: arc_easy           # a task (or group) of lm-eval's catalogue
      num_fewshot: 0           # optional: lm-eval's few-shot count (default: the task's own)
      limit: 100               # optional: the first N documents (per task)
      seed: 0                  # optional: lm-eval's seeds (python, numpy, torch, few-shot sampler)
    - name: mine
      type: lm_eval
      yaml: my_task.yaml       # a task YAML stored in the workspace's lm-eval folder, or the YAML text itself

The task runs `lm_eval.simple_evaluate` with `bench.lm_eval_model.LabLM` (LLM Lab's inference layer) and
`log_samples=True`; its logged samples become the per-example rows (input, target, prediction, correct, each
option's log-likelihood) and every metric gets its interval from them (Wilson for right/wrong metrics, BCa for
means and perplexities, a percentile bootstrap of lm-eval's own aggregation for corpus metrics such as BLEU).

An uploaded YAML is data, never code: it is read with a safe loader, and refused (naming the line and field)
when it has `!function` or any other tag, `include`, `class`, `process_docs`/`process_results`/
`custom_dataset`, a `custom` filter, a metric or aggregation lm-eval does not register by name (a name would
otherwise be handed to `evaluate.load`, which can run a script), `unsafe_code` or `trust_remote_code`. Its
`dataset_path` is one of the file builders (json, csv, parquet, text, arrow) over `dataset_kwargs.data_files`
inside the workspace's lm-eval folder (`workspace_folder`); locally (one user) a file anywhere and a Hub
dataset are allowed too. Jinja templates render in jinja2's sandbox. Data on the Hub, offline, fails at once
naming the dataset.

What a result depends on goes into its cache key (`Prepared.fingerprint`): lm-eval's version, the task's
configuration (the YAML's parsed content, or the catalogue YAML files' text) and the sha256 of every data file.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from ... import paths, settings
from ...access import Actor
from ...metrics import intervals
from ...stats.intervals import Interval
from ..result import Headline
from .common import TaskError, short

VERSION = 1
FILE_BUILDERS = ("json", "csv", "parquet", "text", "arrow")
DATA_KWARGS = {"data_files", "field", "delimiter", "sep"}       # what an uploaded task's dataset_kwargs may hold
CODE_FIELDS = {"include": "it reads other files: paste their fields into this YAML",
               "class": "it names a Python class", "process_docs": "it names Python code",
               "process_results": "it names Python code", "custom_dataset": "it names Python code",
               "group": "groups are refused in an uploaded YAML: upload one task per YAML",
               "task_list": "groups are refused in an uploaded YAML: upload one task per YAML",
               "unsafe_code": "tasks that execute generated code are refused"}
OUTPUT_TYPES = ("loglikelihood", "loglikelihood_rolling", "multiple_choice", "generate_until")
UPLOAD_SUFFIXES = (".yaml", ".yml", ".jsonl", ".json", ".csv", ".parquet", ".txt", ".arrow")
RIGHT_WRONG = {"acc", "acc_norm", "acc_mutual_info", "exact_match", "acc_all", "acc_bytes"}
OUR_NAMES = {"acc": "accuracy"}  # lm-eval's names where LLM Lab has its own (the comparisons read `correct`)
HUB_PROBE_SECONDS = 3.0


class LmEvalTaskError(TaskError):
    pass


# ---------------------------------------------------------------- jinja in a sandbox
def sandbox_templates() -> None:
    """lm-eval renders doc_to_text & co. with a plain jinja2 Environment, in which a template can reach Python
    internals; swap in jinja2's SandboxedEnvironment (same options and filters), once per process. Every template
    that only reads a document's fields renders the same."""
    from jinja2 import BaseLoader, StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment
    from lm_eval import utils

    if isinstance(utils.env, SandboxedEnvironment):
        return
    env = SandboxedEnvironment(loader=BaseLoader, undefined=StrictUndefined, keep_trailing_newline=True)
    env.filters.update(utils.env.filters)
    utils.env = env


# ---------------------------------------------------------------- the workspace's lm-eval folder
def workspace_folder(workspace: str) -> Path:
    """Where a workspace's uploaded task YAMLs and data files live (LLM_LAB_HOME/lm_eval[/@workspace])."""
    return paths.workspace_dir("lm_eval", workspace)


def in_folder(path: Path, folder: Path) -> bool:
    """Whether `path` (resolved) is a file directly in `folder`: uploads are stored flat, and the default
    workspace's folder holds the other workspaces' folders (`@team/`), which must stay out of its reach."""
    return path.resolve().parent == folder.resolve()


def store_upload(actor: Actor, filename: str, content: bytes) -> Path:
    """Keep an uploaded task YAML or data file in the actor's lm-eval folder; returns its path."""
    from ... import store

    actor.require("write", "upload lm-eval task files")
    name = Path(str(filename)).name
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,119}", name) or not name.lower().endswith(UPLOAD_SUFFIXES):
        raise LmEvalTaskError(f"File name {name!r}: use letters, digits, '.', '_' or '-' and one of "
                              f"{', '.join(UPLOAD_SUFFIXES)}.")
    _check_upload_size(name, content)
    path = workspace_folder(actor.workspace) / name
    store.atomic_write_bytes(path, bytes(content))
    return path


def _check_upload_size(name: str, content: bytes) -> None:
    """The limits every dataset upload has (datasets decodes the whole file later): its size, and for Parquet
    what it decodes to, refused before anything is stored."""
    from ... import data
    from ...errors import DataError

    limit = data.max_upload_bytes()
    if len(content) > limit:
        raise LmEvalTaskError(f"{name} is {len(content) / 2**20:.1f} MB; the limit is {limit / 2**20:.1f} MB "
                              "(setting upload_max_mb). Upload a sample, or ask an admin to raise upload_max_mb.")
    if name.lower().endswith(".parquet"):
        try:
            data.check_parquet_size(name, bytes(content))  # list columns allowed: lm-eval reads them
        except DataError as exc:
            raise LmEvalTaskError(str(exc)) from exc


def stored_files(actor: Actor) -> list[str]:
    return sorted(p.name for p in workspace_folder(actor.workspace).iterdir() if p.is_file())


# ---------------------------------------------------------------- the catalogue
@lru_cache(maxsize=1)
def task_manager():
    """lm-eval's catalogue (indexing its YAML files takes seconds: once per process)."""
    from lm_eval.tasks import TaskManager

    return TaskManager()


def catalogue() -> list[str]:
    """Every task, group and tag name of lm-eval's catalogue."""
    return list(task_manager().all_tasks)


def lm_eval_version() -> str:
    from importlib import metadata

    return metadata.version("lm_eval")


# ---------------------------------------------------------------- reading an uploaded YAML safely
def _walk_tags(node, origin: str) -> None:
    """Refuse any YAML tag (`!function`, `!!python/...`) before a value is built."""
    import yaml

    tag = node.tag or ""
    if not tag.startswith("tag:yaml.org,2002:"):
        raise LmEvalTaskError(f"{origin}, line {node.start_mark.line + 1}: the tag {tag} is refused: an uploaded "
                              "task is data, not code. Write the field as a Jinja template over the document's "
                              "columns (e.g. doc_to_text: \"Q: {{question}}\\nA:\").")
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            _walk_tags(key, origin)
            _walk_tags(value, origin)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _walk_tags(item, origin)


def read_yaml(text: str, origin: str) -> tuple[dict, dict]:
    """(config, {field path: line}) of an uploaded task YAML, tags and aliases refused."""
    import yaml

    from .. import suite as suites

    if not (text or "").strip():
        raise LmEvalTaskError(f"{origin} is empty: a task YAML needs at least `task`, `dataset_path`, "
                              "`output_type` and `doc_to_text`.")
    suites._check_size(len(text.encode("utf-8", errors="replace")), origin)
    try:
        suites._check_events(text, origin)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "somewhere"
        raise LmEvalTaskError(f"{origin} is not valid YAML ({where}): {getattr(exc, 'problem', exc)}.") from exc
    if root is None:
        raise LmEvalTaskError(f"{origin} is empty.")
    _walk_tags(root, origin)
    lines: dict = {}
    config = suites._plain(root, lines, ())
    if not isinstance(config, dict):
        raise LmEvalTaskError(f"{origin}, line 1: a task YAML is a mapping of lm-eval task fields.")
    return config, lines


def check_config(config: dict, lines: dict, origin: str, folder: Path, hosted: bool) -> tuple[dict, list[Path]]:
    """The config as it will run (data files made absolute) and the data files it reads; refuses what could run
    code or read server files, naming the line and field."""
    import lm_eval.api.metrics  # fills lm-eval's metric and aggregation registries
    import lm_eval.filters  # noqa: F401  (fills its filter registry)
    from lm_eval.api import registry

    def fail(path: tuple, message: str):
        line = lines.get(path) or lines.get(path[:1]) or 1
        raise LmEvalTaskError(f"{origin}, line {line}, field `{'.'.join(map(str, path))}`: {message}")

    if not isinstance(config.get("task"), str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", config["task"]):
        fail(("task",), "an uploaded YAML defines one task: `task: NAME` (letters, digits, '.', '_', '-').")
    for key, why in CODE_FIELDS.items():
        if key in config:
            fail((key,), f"refused: {why}.")
    _check_fields(config, fail)
    if config.get("output_type", "generate_until") not in OUTPUT_TYPES:
        fail(("output_type",), f"use one of {', '.join(OUTPUT_TYPES)}.")
    for j, item in enumerate(config.get("metric_list") or []):
        if not isinstance(item, dict) or not isinstance(item.get("metric"), str):
            fail(("metric_list", j), "each metric is a mapping with `metric: NAME`.")
        if item["metric"] not in registry.metric_registry:
            fail(("metric_list", j, "metric"), f"{item['metric']!r} is not one of lm-eval's metrics "
                                               f"({', '.join(sorted(registry.metric_registry))}).")
        agg = item.get("aggregation")
        if agg is not None and (not isinstance(agg, str) or agg not in registry.aggregation_registry):
            fail(("metric_list", j, "aggregation"), f"use one of {', '.join(sorted(registry.aggregation_registry))}.")
        if item.get("hf_evaluate"):
            fail(("metric_list", j, "hf_evaluate"), "refused: it loads a metric script.")
    _check_filters(config, fail, registry)
    fewshot = config.get("fewshot_config") or {}
    if not isinstance(fewshot, dict):
        fail(("fewshot_config",), "a mapping such as {sampler: first_n}.")
    if "process_docs" in fewshot:
        fail(("fewshot_config", "process_docs"), "refused: it names Python code.")
    return _check_data(config, fail, folder, hosted)


def _check_fields(config: dict, fail) -> None:
    """Every top-level field is one of lm-eval's TaskConfig (lm-eval itself would stop with a bare TypeError)."""
    import dataclasses
    import difflib

    from lm_eval.api.task import TaskConfig

    known = sorted(f.name for f in dataclasses.fields(TaskConfig))
    for key in config:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            fail((key,), "not a field of an lm-eval task" + (f"; did you mean `{close[0]}`?" if close else
                                                            f"; the fields are {', '.join(known)}."))


def _check_splits(config: dict, files, fail) -> None:
    """The splits the task names are splits its data files make (a dict's keys; one file or a list: `train`)."""
    made = sorted(files) if isinstance(files, dict) else ["train"]
    for key in ("test_split", "validation_split", "training_split", "fewshot_split"):
        value = config.get(key)
        if value is not None and value not in made:
            fail((key,), f"{value!r} is not a split of the data: `data_files` makes {', '.join(map(repr, made))}.")
    if not any(config.get(k) is not None for k in ("test_split", "validation_split")):
        fail(("test_split",), f"name the split to score: `test_split: {made[0]}` (or `validation_split`).")


def _check_filters(config: dict, fail, registry) -> None:
    for j, item in enumerate(config.get("filter_list") or []):
        steps = item.get("filter") if isinstance(item, dict) else None
        if not isinstance(steps, list):
            fail(("filter_list", j), "each filter is {name: ..., filter: [{function: regex, ...}, ...]}.")
        for k, step in enumerate(steps):
            name = step.get("function") if isinstance(step, dict) else None
            allowed = sorted(n for n in registry.filter_registry if n != "custom")
            if name not in allowed:
                fail(("filter_list", j, "filter", k, "function"), f"{name!r} is not a filter lm-eval registers "
                                                                  f"by name; use one of {', '.join(allowed)}.")
            if "filter_fn" in step:
                fail(("filter_list", j, "filter", k, "filter_fn"), "refused: it names Python code.")


def _check_data(config: dict, fail, folder: Path, hosted: bool) -> tuple[dict, list[Path]]:
    path = config.get("dataset_path")
    kwargs = config.get("dataset_kwargs") or {}
    if not isinstance(path, str) or not path:
        fail(("dataset_path",), "name the data: `dataset_path: json` with `dataset_kwargs: {data_files: "
                                "{test: my_data.jsonl}}` (a file uploaded beside the YAML).")
    if not isinstance(kwargs, dict):
        fail(("dataset_kwargs",), "a mapping such as {data_files: {test: my_data.jsonl}}.")
    if "trust_remote_code" in kwargs:
        fail(("dataset_kwargs", "trust_remote_code"), "refused: it runs the dataset's own code.")
    if path not in FILE_BUILDERS:
        if hosted:
            fail(("dataset_path",), f"on a hosted server a task reads uploaded files: use one of "
                                    f"{', '.join(FILE_BUILDERS)} with `dataset_kwargs: {{data_files: ...}}`.")
        if Path(path).exists():
            fail(("dataset_path",), "a local folder or script is refused (it may hold code): use `json`/`csv` "
                                    "with `dataset_kwargs: {data_files: ...}`.")
        return dict(config), []
    if hosted:
        for key in kwargs:
            if key not in DATA_KWARGS:
                fail(("dataset_kwargs", key), f"not allowed on a hosted server; use {', '.join(sorted(DATA_KWARGS))}.")
    files = kwargs.get("data_files")
    if not files:
        fail(("dataset_kwargs", "data_files"), "name the data file(s), e.g. {test: my_data.jsonl}.")
    found: list[Path] = []

    def place(value, where: tuple):
        if isinstance(value, list):
            return [place(v, where + (i,)) for i, v in enumerate(value)]
        if not isinstance(value, str) or not value:
            fail(where, "a file name (or a list of them).")
        if "://" in value or value.startswith("hf:") or re.search(r"[*?\[]", value):
            fail(where, f"{value!r}: name a file uploaded to your workspace, not a URL or a pattern.")
        resolved = (Path(value) if Path(value).is_absolute() else folder / value).resolve()
        if hosted and not in_folder(resolved, folder):
            fail(where, f"{value!r} is outside your workspace's lm-eval folder; upload the file and name it "
                        "by its file name.")
        if not resolved.is_file():
            fail(where, f"{value!r}: no such file" + (" in your workspace's lm-eval folder; upload it first."
                                                     if not Path(value).is_absolute() else "."))
        found.append(resolved)
        return str(resolved)

    base = ("dataset_kwargs", "data_files")
    placed = ({k: place(v, base + (k,)) for k, v in files.items()} if isinstance(files, dict)
              else place(files, base))
    _check_splits(config, files, fail)
    return dict(config, dataset_kwargs=dict(kwargs, data_files=placed)), found


# ---------------------------------------------------------------- what a run needs, decided before it runs
@dataclass
class Prepared:
    """What simple_evaluate gets and what the result depends on."""

    tasks: list                       # catalogue names or one config dict
    label: str                        # the catalogue name, or the uploaded task's name
    source: str                       # "catalogue" | "yaml"
    config_hash: str
    output_types: set = field(default_factory=set)
    data_files: dict = field(default_factory=dict)   # path -> sha256
    hub_datasets: list = field(default_factory=list)
    version: str = ""

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps([self.version, self.config_hash, sorted(self.data_files.items())])
                              .encode()).hexdigest()[:20]

    def record(self) -> dict:
        return {"lm_eval_version": self.version, "source": self.source, "task": self.label,
                "config_hash": self.config_hash, "data_files": dict(self.data_files),
                "hub_datasets": list(self.hub_datasets)}


def prepare(actor: Actor, spec) -> Prepared:
    """Read and check the task (catalogue name or YAML), hash what it depends on, and fail fast when its data is
    on an unreachable Hub."""
    from .. import fingerprint

    if spec.yaml:
        prepared = _prepare_yaml(actor, spec.yaml)
    else:
        prepared = _prepare_catalogue(spec.task)
    prepared.version = lm_eval_version()
    prepared.data_files = {str(p): fingerprint.file_digest(p) for p in prepared.data_files}
    check_hub(prepared)
    return prepared


def prepare_yaml(actor: Actor, value: str) -> Prepared:
    """Read and check an uploaded task YAML as a run would (the suite builder checks it when it is picked)."""
    return _prepare_yaml(actor, value)


def _prepare_yaml(actor: Actor, value: str) -> Prepared:
    folder = workspace_folder(actor.workspace)
    text, origin = value, "the task YAML"
    if "\n" not in value.strip() and value.strip().endswith((".yaml", ".yml")):
        path = Path(value) if Path(value).is_absolute() else folder / value
        path = path.resolve()
        if settings.hosted() and not in_folder(path, folder):
            raise LmEvalTaskError(f"`yaml: {value}` is outside your workspace's lm-eval folder: upload the YAML on "
                                  "the Benchmarks page and name it by its file name.")
        if not path.is_file():
            raise LmEvalTaskError(f"`yaml: {value}`: no such file in your workspace's lm-eval folder; upload it "
                                  "on the Benchmarks page (lm-eval task) first.")
        text, origin = path.read_text(errors="replace"), f"task YAML {path.name}"
    config, lines = read_yaml(text, origin)
    config, files = check_config(config, lines, origin, folder, settings.hosted())
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:20]
    hub = [] if config["dataset_path"] in FILE_BUILDERS else [_dataset_label(config)]
    return Prepared([config], config["task"], "yaml", digest, {config.get("output_type", "generate_until")},
                    data_files=files, hub_datasets=hub)


def _prepare_catalogue(name: str) -> Prepared:
    manager = task_manager()
    if name not in manager.task_index:
        close = [n for n in manager.all_tasks if name.lower() in n.lower()][:8]
        raise LmEvalTaskError(f"lm-eval has no task named {name!r}" + (f"; similar: {', '.join(close)}" if close else "")
                              + ". Pick one from the catalogue on the Benchmarks page (`lm_eval --tasks list`).")
    leaves = _catalogue_leaves(manager, name, set())
    h = hashlib.sha256(name.encode())
    hub, types = [], set()
    for cfg, path in leaves:
        if path is not None:
            h.update(f"|{path.name}:{hashlib.sha256(path.read_bytes()).hexdigest()}".encode())
        types.add(cfg.get("output_type", "generate_until"))
        if cfg.get("dataset_path") and cfg["dataset_path"] not in FILE_BUILDERS and not Path(cfg["dataset_path"]).exists():
            hub.append(_dataset_label(cfg))
    return Prepared([name], name, "catalogue", h.hexdigest()[:20], types, hub_datasets=sorted(set(hub)))


def _catalogue_leaves(manager, name: str, seen: set, depth: int = 0) -> list[tuple[dict, Path | None]]:
    """(config, its YAML file) of every task a catalogue name stands for (a group's and a tag's members)."""
    from lm_eval.tasks._index import Kind

    entry = manager.task_index.get(name)
    if entry is None or name in seen or depth > 8:
        return []
    seen.add(name)
    if entry.kind == Kind.TAG:
        return [leaf for t in sorted(entry.tags) for leaf in _catalogue_leaves(manager, t, seen, depth + 1)]
    cfg = dict(entry.cfg or {})
    if entry.kind == Kind.GROUP:
        members = cfg.get("task") if isinstance(cfg.get("task"), list) else []
        out = []
        for m in members:
            child = m if isinstance(m, str) else (m.get("task") if isinstance(m, dict) else None)
            if isinstance(child, str):
                out += _catalogue_leaves(manager, child, seen, depth + 1)
        return out
    return [(cfg, entry.yaml_path)]


def _dataset_label(cfg: dict) -> str:
    return str(cfg.get("dataset_path")) + (f" ({cfg['dataset_name']})" if cfg.get("dataset_name") else "")


# ---------------------------------------------------------------- offline: fail fast
def _offline_env() -> bool:
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"))


_PROBE: dict = {}


def hub_reachable() -> bool:
    """Whether the Hugging Face Hub answers (HF_ENDPOINT's host, port 443, within a few seconds); False when
    offline mode is set. Remembered for a minute."""
    if _offline_env():
        return False
    if _PROBE and time.time() - _PROBE["at"] < 60:
        return _PROBE["ok"]
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=HUB_PROBE_SECONDS):
            ok = True
    except OSError:
        ok = False
    _PROBE.update(at=time.time(), ok=ok)
    return ok


def _cached_locally(label: str) -> bool:
    """Whether `datasets` holds a copy of a Hub dataset already (then offline mode can read it)."""
    try:
        from datasets import config
    except ImportError:
        return False
    repo = label.split(" (")[0]
    return (Path(config.HF_DATASETS_CACHE) / repo.replace("/", "___")).is_dir()


def check_hub(prepared: Prepared) -> None:
    missing = [d for d in prepared.hub_datasets if not _cached_locally(d)]
    if missing and not hub_reachable():
        why = ("offline mode is set (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)" if _offline_env()
               else "the Hugging Face Hub cannot be reached from this server")
        raise LmEvalTaskError(
            f"lm-eval task {prepared.label!r} reads {', '.join(missing)} from the Hugging Face Hub, and {why}. "
            "Tasks over local files work: upload a task YAML with `dataset_path: json` and "
            "`dataset_kwargs: {data_files: {test: your_file.jsonl}}` plus the data file.")


# ---------------------------------------------------------------- running it
def run(state, prepared: Prepared) -> dict:
    """simple_evaluate on the state's model; the runner's result fields (metrics, intervals, rows, details)."""
    import lm_eval

    from ..lm_eval_model import LabLM

    sandbox_templates()
    spec = state.spec

    def heard(done, total, what):
        state.progress(done, max(total, 1), f"lm-eval {what}: {done}/{total}")

    lm = LabLM(state.loaded, batch_size=state.batch_size, seed=spec.seed, progress=heard, partial=state.partial)
    manager = task_manager() if prepared.source == "catalogue" else _upload_manager()
    from datasets.exceptions import DatasetGenerationError
    from jinja2.exceptions import UndefinedError

    try:
        out = lm_eval.simple_evaluate(
            model=lm, tasks=list(prepared.tasks), num_fewshot=spec.num_fewshot, limit=spec.limit,
            log_samples=True, bootstrap_iters=0, task_manager=manager, random_seed=spec.seed,
            numpy_random_seed=spec.seed, torch_random_seed=spec.seed, fewshot_random_seed=spec.seed)
    except (UndefinedError, DatasetGenerationError) as exc:
        raise _clear_error(exc, prepared) from exc
    if not out:
        raise LmEvalTaskError("lm-eval returned no results.")
    state.stats.update({f"{k}_requests": v for k, v in lm.counts.items() if v})
    return to_result(out, prepared, seed=spec.seed)


def _clear_error(exc: Exception, prepared: Prepared) -> LmEvalTaskError:
    """What a task YAML's author can fix, said so: a template over a missing column, an unreadable data file."""
    from jinja2.exceptions import UndefinedError

    if isinstance(exc, UndefinedError):
        return LmEvalTaskError(f"lm-eval task {prepared.label!r}: a template names what the data does not have "
                               f"({exc.message}); use the data file's column names in doc_to_text, doc_to_target "
                               "and doc_to_choice.")
    cause = exc.__cause__ or exc.__context__ or exc
    return LmEvalTaskError(f"lm-eval task {prepared.label!r}: its data files could not be read as "
                           f"`{prepared.tasks[0].get('dataset_path') if prepared.source == 'yaml' else 'data'}`"
                           f" ({type(cause).__name__}: {cause}); check the files' format.")


@lru_cache(maxsize=1)
def _upload_manager():
    """A catalogue-free TaskManager for uploaded configs (they never name catalogue tasks)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_defaults=False)


def task_hashes(samples: dict) -> dict:
    """lm-eval's own task hashes (as its EvaluationTracker writes them) from the logged samples."""
    from lm_eval.utils import hash_string

    return {t: hash_string("".join(s["doc_hash"] + s["prompt_hash"] + s["target_hash"] for s in rows))
            for t, rows in samples.items()}


def _our_name(metric: str, filt: str) -> str:
    name = OUR_NAMES.get(metric, metric)
    return name if filt == "none" else f"{name} [{filt}]"


def to_result(out: dict, prepared: Prepared, seed: int = 0) -> dict:
    """LLM Lab's metrics, intervals, headline, per-example rows and details from simple_evaluate's output."""
    samples = out.get("samples") or {}
    leaves = [t for t in out["results"] if t in samples]
    if not leaves:
        raise LmEvalTaskError("lm-eval logged no samples for the task.")
    values, found, order, higher = {}, {}, [], {}
    # lm-eval's own numbers for the task or group asked for; a tag (e.g. ai2_arc) has no aggregate in lm-eval's
    # results, and one of its tasks' numbers would misstate it: its metrics pool every document (below)
    reported = out["results"].get(prepared.label) or (out["results"][leaves[0]] if len(leaves) == 1 else {})
    configs = out.get("configs") or {}
    for key, value in reported.items():
        if "," in key and "_stderr" not in key and isinstance(value, (int, float)):
            metric, filt = key.split(",", 1)
            values[_our_name(metric, filt)] = float(value)
    for leaf in leaves:
        for s in samples[leaf]:
            for metric in s.get("metrics", []):
                name = _our_name(metric, s["filter"])
                if name not in order:
                    order.append(name)
                    higher[name] = bool((out.get("higher_is_better", {}).get(leaf) or {}).get(metric, True))
    for name in order:
        metric, filt = _split_name(name)
        items = [s[metric] for leaf in leaves for s in samples[leaf] if s["filter"] == filt and metric in s]
        agg = _aggregation(configs, leaves, metric)
        found[name] = metric_interval(metric, agg, items, seed)
        pooled = found[name].value
        if name in values and pooled is not None and len(leaves) > 1 and abs(values[name] - pooled) > 1e-9 \
                and agg in ("mean", "nanmean"):  # a group lm-eval averages unweighted (weight_by_size: false)
            by_leaf = [[s[metric] for s in samples[leaf] if s["filter"] == filt and metric in s] for leaf in leaves]
            found[name] = unweighted_group_interval([b for b in by_leaf if b], seed)
        if name not in values and found[name].value is not None:
            values[name] = float(found[name].value)
    head_name = order[0]
    rows = per_example_rows(samples, leaves)
    ci = found[head_name].to_dict()
    headline = Headline(head_name, values.get(head_name), low=ci.get("low"), high=ci.get("high"),
                        higher_is_better=higher[head_name], confidence=ci.get("confidence"),
                        n_resamples=ci.get("n_resamples"), n=ci.get("n"), method=ci.get("method"))
    details = {"lm_eval": dict(prepared.record(), task_hashes=task_hashes(samples),
                               results={t: {k: v for k, v in r.items()} for t, r in out["results"].items()},
                               versions=out.get("versions"), n_shot=out.get("n-shot"),
                               n_samples=out.get("n-samples"), higher_is_better=out.get("higher_is_better"),
                               configs=json.loads(json.dumps(configs, default=str)))}
    return {"metrics": values, "intervals": {k: v.to_dict() for k, v in found.items()}, "headline": headline,
            "per_example": rows, "details": details}


def _split_name(name: str) -> tuple[str, str]:
    base, _, filt = name.partition(" [")
    metric = next((k for k, v in OUR_NAMES.items() if v == base), base)
    return metric, filt.rstrip("]") if filt else "none"


def _aggregation(configs: dict, leaves: list, metric: str) -> str:
    """The aggregation lm-eval applies to a metric (the task's `metric_list`, else the metric's default)."""
    from lm_eval.api import registry

    for leaf in leaves:
        for item in (configs.get(leaf) or {}).get("metric_list") or []:
            if item.get("metric") == metric and isinstance(item.get("aggregation"), str):
                return item["aggregation"]
    try:
        agg = registry.get_metric_aggregation(metric)
    except (KeyError, ValueError):
        return "mean"
    return next((n for n, f in registry.aggregation_registry.items() if f is agg), "mean")


def metric_interval(metric: str, agg: str, items: list, seed: int = 0) -> Interval:
    """A metric's value and 95% interval from its per-sample items, computed the way lm-eval aggregates them."""
    if not items:
        return Interval(None, None, None, 0, "none", 0.95)
    if agg in ("mean", "nanmean") and all(isinstance(v, (int, float, bool)) for v in items):
        arr = np.asarray(items, dtype=float)
        if metric in RIGHT_WRONG and set(np.unique(arr)) <= {0.0, 1.0}:
            return intervals.of_hits(arr)
        scale = (0.0, 1.0) if arr.min() >= 0 and arr.max() <= 1 else (float(arr.min()), float(arr.max()))
        return intervals.of_mean(arr, seed=seed, scale=scale)
    huge = (0.0, float("inf"))
    if agg in ("weighted_perplexity", "bits_per_byte") and all(isinstance(v, (list, tuple)) for v in items):
        stats = np.array([[-float(v[0]), float(v[1])] for v in items])
        if agg == "bits_per_byte":
            return intervals.of_sums(stats, lambda s: _ratio(s) / np.log(2), seed=seed, scale=huge)
        return intervals.of_sums(stats, lambda s: np.exp(_ratio(s)), seed=seed, scale=huge)
    if agg == "perplexity":
        stats = np.array([[-float(v), 1.0] for v in items])
        return intervals.of_sums(stats, lambda s: np.exp(_ratio(s)), seed=seed, scale=huge)
    return _bootstrap_aggregation(agg, items, seed)


def unweighted_group_interval(by_leaf: list[list], seed: int = 0, n_resamples: int = 1000) -> Interval:
    """The mean of subtask means (lm-eval's group score with weight_by_size: false) and its 95% percentile
    interval, each subtask's documents resampled within it."""
    arrays = [np.asarray(b, dtype=float) for b in by_leaf]
    value = float(np.mean([a.mean() for a in arrays]))
    rng = np.random.default_rng(seed)
    draws = [np.mean([a[rng.integers(0, len(a), len(a))].mean() for a in arrays]) for _ in range(n_resamples)]
    low, high = np.percentile(draws, [2.5, 97.5])
    return Interval(value, float(low), float(high), int(sum(len(a) for a in arrays)),
                    "stratified percentile bootstrap (unweighted mean of subtasks, as lm-eval's group)", 0.95,
                    n_resamples)


def _ratio(s):
    s = np.atleast_2d(s)
    return s[:, 0] / np.maximum(s[:, 1], 1e-12)


def _bootstrap_aggregation(agg: str, items: list, seed: int, n_resamples: int = 1000) -> Interval:
    """Corpus metrics (BLEU, chrF, F1, MCC): lm-eval's own aggregation over resampled items, percentile interval."""
    from lm_eval.api import registry

    fn = registry.aggregation_registry.get(agg)
    value = float(fn(list(items)))
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_resamples):
        picked = rng.integers(0, len(items), len(items))
        try:
            draws.append(float(fn([items[i] for i in picked])))
        except (ValueError, ZeroDivisionError):
            continue
    if not draws:
        return Interval(value, None, None, len(items), "none", 0.95)
    low, high = np.percentile(draws, [2.5, 97.5])
    return Interval(value, float(low), float(high), len(items), "percentile bootstrap (lm-eval's aggregation)",
                    0.95, n_resamples)


def per_example_rows(samples: dict, leaves: list) -> list[dict]:
    """One row per document (its first filter): the input, target, prediction, right or wrong, each option's
    log-likelihood and the per-sample metric values."""
    rows, next_id = [], 0
    for leaf in leaves:
        first = samples[leaf][0]["filter"] if samples[leaf] else "none"
        for s in samples[leaf]:
            if s["filter"] != first:
                continue
            row = {"id": next_id, "doc_id": int(s["doc_id"]), "text": short(s["arguments"][0][0] if s["arguments"] else "")}
            if len(leaves) > 1:
                row["subtask"] = leaf
            row.update(_outcome(s))
            for metric in s.get("metrics", []):
                value = s.get(metric)
                if isinstance(value, (int, float)):
                    row[metric] = float(value)
            rows.append(row)
            next_id += 1
    return rows


def _outcome(s: dict) -> dict:
    """label, prediction, correct(_norm) and log-likelihoods of one logged sample."""
    args, resps, target = s["arguments"], s.get("filtered_resps") or [], s.get("target")
    out: dict = {}
    half = len(args) // 2
    if half and len(args) == 2 * half and len(resps) == len(args) and all(a[0] == "" for a in args[half:]) \
            and not any(a[0] == "" for a in args[:half]):
        # acc_mutual_info adds each option without its context: the rows show the options given the question
        args, resps = args[:half], resps[:half]
    if len(args) > 1 and all(len(a) == 2 and isinstance(a[1], str) for a in args) and resps \
            and all(isinstance(r, (list, tuple)) for r in resps):  # multiple choice: one (context, option) per option
        options = [a[1] for a in args]
        lls = [float(r[0]) for r in resps]
        out["label"] = options[target].strip() if isinstance(target, int) and 0 <= target < len(options) else str(target)
        out["prediction"] = options[int(np.argmax(lls))].strip()
        out["loglik"] = {o.strip() or repr(o): round(v, 6) for o, v in zip(options, lls)}
    else:
        resp = resps[0] if resps else None
        out["label"] = short(target)
        if isinstance(resp, str):
            out["prediction"] = short(resp)
        elif isinstance(resp, (list, tuple)) and resp:
            out["loglik"] = round(float(resp[0]), 6)
            if len(resp) > 1 and isinstance(resp[1], bool):
                out["prediction"] = "greedy" if resp[1] else "not greedy"
        elif isinstance(resp, (int, float)):
            out["loglik"] = round(float(resp), 6)
    for metric, field_name in (("acc", "correct"), ("exact_match", "correct"), ("acc_norm", "correct_norm")):
        if isinstance(s.get(metric), (int, float)) and field_name not in out:
            out[field_name] = bool(s[metric])
    return out
