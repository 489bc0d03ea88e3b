"""Compress-then-evaluate: a parent model and its variants on the same data, in one background job.

`submit(actor, parent, variants, dataset=… | suite_text=…, margin=0.01)` queues `JOB_FN`; the job returns a
`Report` (stored as the job's result, so a refresh, another browser or the CLI reads it back with
`report_of(actor, job_id)`). Per model it gives:

- **size on disk**: the bytes of every file in the model's folder; an adapter-only model (LoRA weights over a
  base, `registry.adapter_base`) counts its base's folder too, and says so;
- **quality**: the suite's tasks through the benchmark runner (`bench.runner.run_suite`: cached, resumable,
  the test split unless a task names another), each headline with its 95% bootstrap interval, and intervals
  for accuracy and macro-F1 from the per-example predictions (`metrics.bootstrap_ci`). A dataset instead of a
  suite becomes a one-task suite (`build_suite`: classification for a classifier parent; for a causal LM,
  generation when the dataset has prompt and reference columns, else language modelling). The results are
  recorded as a benchmark run under the job's id, so the Benchmarks page opens them (`/benchmarks?result=ID`);
- **speed**: the benchmark's speed task (never from the cache) on the first `speed_examples` scored texts:
  latency p50/p95 at batch 1 and throughput (examples/s, median of `repeats` runs) at `batch_size` on the same
  texts, every model measured in turn in this process;
- **peak memory**: a fresh process per model loads it and runs the same texts at `batch_size`
  (`memprobe`: the resident-set high-water mark above the process before loading, plus torch's CUDA peak);
- **agreement with the parent** (variants): per task whose examples are right or wrong, the paired comparison
  of `stats.paired` (identical predictions, flips, McNemar's exact test, the equivalence verdict at `margin`);
- **attribution drift** (variants of a classifier): over `drift_examples` scored examples (a seeded sample),
  layer Integrated Gradients token scores of the variant and of the parent for the parent's predicted class,
  and their Spearman rank correlation per example. A model without gradients (an ONNX Runtime session) gets
  "not available: no gradients" from the capability check;
- **warnings**: a variant slower than its parent (latency p50 or throughput worse by more than
  SLOWER_TOLERANCE, above timing noise), or larger on disk.

Models are opened only through the registry (`registry.load_for`), the benchmark runner and `predict`: a
variant made by any recipe (quantized, pruned, distilled, ONNX) is evaluated like any registry model.
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from .. import capabilities as caps
from .. import data, registry
from ..access import Actor
from ..errors import JobCancelled, LabError
from . import stats

JOB_FN = "llm_lab.compress.evaluate:run"
SLOWER_TOLERANCE = 0.05     # a variant is "slower" when its latency p50 or throughput is worse by more than this
MEMPROBE_TIMEOUT_S = 900
INTERVAL_METRICS = ("accuracy", "f1")   # intervals from the per-example predictions (classification-like tasks)


def _build(cls, values):
    """A dataclass from its dict, leaving out keys this version does not know."""
    if values is None:
        return None
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})


# ---------------------------------------------------------------- the typed record
@dataclass
class Quality:
    """One task's outcome for one model: its headline with the 95% bootstrap interval, all metric values."""

    task: str
    type: str
    metric: str | None = None
    value: float | None = None
    low: float | None = None
    high: float | None = None
    higher_is_better: bool = True
    metrics: dict = field(default_factory=dict)
    intervals: dict = field(default_factory=dict)   # metric -> {"value", "low", "high"} (95% bootstrap)
    rows: int = 0
    scored: str = ""                                 # which rows, in words
    key: str = ""                                    # the benchmark result (per-example rows)
    error: str | None = None
    notes: list = field(default_factory=list)


@dataclass
class Speed:
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    throughput: float | None = None                  # examples/s at `batch_size`
    batch_size: int | None = None
    examples: int = 0
    repeats: int = 0
    device: str = ""
    dtype: str = ""
    error: str | None = None


@dataclass
class Memory:
    peak_mb: float | None = None        # resident-set high-water mark above the process before loading
    loaded_mb: float | None = None      # resident set the loaded model added
    baseline_mb: float | None = None    # the process after importing torch and transformers
    cuda_peak_mb: float | None = None
    method: str = ""
    error: str | None = None


@dataclass
class Drift:
    """How far a variant's token attributions moved from its parent's (layer IG, Spearman per example)."""

    status: str                          # ok | not available | error
    reason: str = ""
    n_steps: int = 0
    examples: list = field(default_factory=list)   # {"id", "text", "target", "spearman", "tokens"}
    mean: float | None = None
    median: float | None = None
    minimum: float | None = None


@dataclass
class ModelReport:
    name: str
    role: str                                       # parent | variant
    parent: str | None = None                       # the registry's parent of this model
    recipe: dict | None = None                      # how it was made (meta["recipe"])
    head: str = ""
    size_bytes: int | None = None
    size_note: str = ""
    quality: list = field(default_factory=list)    # [Quality]
    speed: Speed | None = None
    memory: Memory | None = None
    paired: dict = field(default_factory=dict)     # task -> stats.PairedComparison (variants)
    drift: Drift | None = None
    warnings: list = field(default_factory=list)
    slower: bool = False                            # slower than its parent beyond timing noise (a warning says how)
    error: str | None = None

    def task(self, name: str) -> Quality | None:
        return next((q for q in self.quality if q.task == name), None)

    @classmethod
    def from_dict(cls, values: dict) -> "ModelReport":
        out = _build(cls, values)
        out.quality = [_build(Quality, q) for q in values.get("quality") or []]
        out.speed = _build(Speed, values.get("speed"))
        out.memory = _build(Memory, values.get("memory"))
        out.paired = {k: stats.PairedComparison.from_dict(v) for k, v in (values.get("paired") or {}).items()}
        out.drift = _build(Drift, values.get("drift"))
        return out


@dataclass
class Report:
    """A compress-then-evaluate run: the parent first, then the variants, as `ModelReport`s."""

    parent: str
    variants: list
    source: dict                     # {"dataset", "split", "columns"} or {"suite", "digest"}
    margin: float
    alpha: float
    main_task: str | None            # the task the verdicts, the chart and the drift use
    models: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    created_at: float = 0.0
    run_id: str | None = None        # the benchmark run holding the per-example results
    notes: list = field(default_factory=list)

    def model(self, name: str) -> ModelReport | None:
        return next((m for m in self.models if m.name == name), None)

    @property
    def parent_report(self) -> ModelReport | None:
        return self.model(self.parent)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Report":
        out = _build(cls, values)
        out.models = [ModelReport.from_dict(m) for m in values.get("models") or []]
        return out


# ---------------------------------------------------------------- inference the way every feature runs it
def infer(loaded, texts: list[str], batch_size: int = 32):
    """Run `texts` through a loaded model with its head: class probabilities (`predict.classify`), sentence
    embeddings (`predict.embed`) or a causal LM's forward pass (next-token logits, as the speed task)."""
    from .. import predict

    if loaded.head == "classifier":
        return predict.classify(loaded, texts, batch_size=batch_size)
    if loaded.head == "encoder":
        return predict.embed(loaded, texts, batch_size=batch_size)
    import torch

    from ..batching import context_length

    limit = context_length(loaded.model, loaded.tokenizer)
    with torch.inference_mode(), loaded.lock:
        for start in range(0, len(texts), batch_size):
            enc = loaded.tokenizer(texts[start:start + batch_size], padding=True, truncation=True, max_length=limit,
                                   return_tensors="pt").to(loaded.device)
            loaded.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
    return None


# ---------------------------------------------------------------- what is evaluated
def build_suite(actor: Actor, parent: str, dataset: str, columns: dict | None = None, split: str | None = None,
                limit: int | None = None):
    """A one-task suite on `dataset` for `parent`'s head: classification (accuracy, macro-F1) for a classifier;
    for a causal LM, generation (exact match, chrF) when the dataset has prompt and reference columns, else
    language modelling (perplexity). `columns` maps the task's roles to the dataset's columns (default: the
    roles' own names); `split` None scores the test split (every row when there is none)."""
    from ..bench import suite as suites

    info = data.get(actor, dataset)
    entry = registry.resolve(actor, parent)
    head = caps.default_head(entry)
    cols = {k: v for k, v in (columns or {}).items() if v}
    have = set(info.roles) | set(cols.values())
    if head == "causal-lm":
        if {cols.get("prompt", "prompt"), cols.get("reference", "reference")} <= have:
            task = {"type": "generation", "metrics": ["exact_match", "chrf"], "generation": {"max_new_tokens": 32}}
        else:
            task = {"type": "language_modeling", "metrics": ["perplexity"]}
    else:
        task = {"type": "classification", "metrics": ["accuracy", "f1"]}
    roles = suites.TASK_TYPES[task["type"]].roles
    task.update(name="quality", dataset=dataset, columns={r: c for r, c in cols.items() if r in roles})
    if split:
        task["split"] = split
    if limit:
        task["limit"] = int(limit)
    text = suites.to_yaml("compress-eval", [task], description=f"compress-then-evaluate on {dataset}")
    return suites.parse(text, "compress", "the evaluation")


def main_task(suite):
    """The task the verdicts, the chart and the attribution drift are about: the first classification-like one."""
    order = ("classification", "multiple_choice", "generation", "language_modeling")
    ranked = sorted((t for t in suite.tasks if t.type in order), key=lambda t: order.index(t.type))
    return ranked[0] if ranked else None


# ---------------------------------------------------------------- size on disk
def folder_bytes(folder) -> int:
    root = Path(folder)
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def disk_size(actor: Actor, name: str) -> tuple[int | None, str]:
    """(bytes of the model's folder, a note): an adapter-only model includes its base; a Hub id is measured
    in the local Hub cache when it is there."""
    entry = registry.resolve(actor, name)
    folder = Path(entry.location)
    if entry.source == "hub" or not folder.is_dir():
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(entry.location, local_files_only=True,
                                            allow_patterns=registry.HUB_PATTERNS))
        except Exception:
            return None, "not on this disk (a Hub id that is not in the local cache)"
    size = folder_bytes(folder)
    base = registry.adapter_base(actor, entry)
    if base:
        base_size = folder_bytes(base)
        return size + base_size, (f"includes its base model ({base_size / 2**20:.1f} MB): the adapter alone is "
                                  f"{size / 2**20:.1f} MB")
    return size, ""


# ---------------------------------------------------------------- peak memory (a process per model)
def probe_memory(actor: Actor, name: str, task_type: str, texts: list[str], batch_size: int = 32,
                 device: str | None = None) -> Memory:
    """Peak memory of `name` loading and running `texts` at `batch_size`, in a fresh process (see memprobe)."""
    request = {"actor": actor.to_dict(), "model": name, "task_type": task_type, "texts": list(texts),
               "batch_size": batch_size, "device": device}
    root = Path(__file__).resolve().parent.parent.parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p),
               LLM_LAB_WARMUP="0", TOKENIZERS_PARALLELISM="false")
    try:
        proc = subprocess.run([sys.executable, "-m", "llm_lab.compress.memprobe"], input=json.dumps(request),
                              capture_output=True, text=True, timeout=MEMPROBE_TIMEOUT_S, env=env, cwd=str(root))
    except subprocess.TimeoutExpired:
        return Memory(error=f"the memory probe did not finish within {MEMPROBE_TIMEOUT_S} s")
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if not lines:
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
        return Memory(error=f"the memory probe failed (exit {proc.returncode}): " + " ".join(tail))
    out = json.loads(lines[-1])
    if out.get("error"):
        return Memory(error=out["error"])
    return _build(Memory, out)


# ---------------------------------------------------------------- paired comparison with the parent
def _outcomes(result) -> dict:
    """{example id: (prediction, correct)} of a benchmark result whose examples are right or wrong."""
    out = {}
    for row in result.per_example or []:
        if row.get("correct") is None:
            return {}
        out[row["id"]] = (row.get("prediction"), bool(row["correct"]))
    return out


def paired_for(parent_result, variant_result, margin: float, alpha: float) -> stats.PairedComparison | None:
    """The paired comparison on the examples both results scored (None: the task has no right or wrong)."""
    if parent_result is None or variant_result is None or not parent_result.ok or not variant_result.ok:
        return None
    p, v = _outcomes(parent_result), _outcomes(variant_result)
    ids = sorted(set(p) & set(v))
    if not ids:
        return None
    return stats.paired([p[i][1] for i in ids], [v[i][1] for i in ids], [p[i][0] for i in ids],
                        [v[i][0] for i in ids], margin=margin, alpha=alpha)


def _intervals(result) -> dict:
    """95% bootstrap intervals of accuracy and macro-F1 from a classification-like result's per-example rows."""
    from .. import metrics

    rows = [r for r in result.per_example or [] if r.get("prediction") is not None and r.get("label") is not None]
    if result.type not in ("classification", "multiple_choice") or not rows:
        return {}
    preds, refs = [str(r["prediction"]) for r in rows], [str(r["label"]) for r in rows]
    out = {}
    for name in INTERVAL_METRICS:
        ci = metrics.bootstrap_ci(name, preds, refs, seed=0)
        if ci:
            out[name] = {"value": ci["value"], "low": ci["low"], "high": ci["high"]}
    return out


def _quality(result) -> Quality:
    head = result.headline
    return Quality(task=result.task, type=result.type, metric=head and head.name, value=head and head.value,
                   low=head and head.low, high=head and head.high,
                   higher_is_better=head.higher_is_better if head else True, metrics=dict(result.metrics or {}),
                   intervals=_intervals(result) if result.ok else {}, rows=len(result.per_example or []),
                   scored=result.scored, key=result.key, error=result.error, notes=list(result.notes or []))


# ---------------------------------------------------------------- attribution drift
IG = "ig"
_SHORT = {caps.GRADIENTS: "no gradients", caps.CLASSIFIER: "not a classifier", caps.TRAINED_HEAD: "a new head"}


def _attribution_gap(loaded) -> str | None:
    """None when layer IG applies to `loaded`; else "not available: …" from the capability check."""
    from ..explain import specs

    needs = specs.get_method(IG).requirements
    lacking = caps.missing(needs, loaded)
    if not lacking:
        return None
    short = ", ".join(_SHORT.get(c, c) for c in sorted(lacking))
    return f"not available: {short} ({caps.message(needs, loaded.entry.name, loaded.head, lacking)})"


def _spearman(a, b) -> float | None:
    import warnings

    from scipy.stats import spearmanr

    if len(a) < 3:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho = spearmanr(a, b).statistic
    return None if rho is None or math.isnan(rho) else float(rho)


def attribution_drift(parent_loaded, variant_loaded, examples: list[dict], n_steps: int = 32,
                      parent_cache: dict | None = None, progress=None) -> Drift:
    """Spearman rank correlation of layer-IG token scores (variant vs parent) per example, for the parent's
    predicted class; special tokens ([CLS], [SEP]) are left out. `examples`: {"id", "text"}."""
    import numpy as np

    from ..explain import attributions

    for loaded in (parent_loaded, variant_loaded):
        gap = _attribution_gap(loaded)
        if gap:
            who = "the parent" if loaded is parent_loaded else "this variant"
            return Drift("not available", gap if loaded is variant_loaded else f"{gap} — {who}", n_steps)
    cache = parent_cache if parent_cache is not None else {}
    rows = []
    for i, ex in enumerate(examples):
        if ex["id"] not in cache:
            cache[ex["id"]] = attributions.attribute(parent_loaded, ex["text"], IG, n_steps=n_steps)
        a = cache[ex["id"]]
        target = a.target_label
        labels = variant_loaded.labels
        if target not in labels:
            rows.append({"id": ex["id"], "text": ex["text"][:120], "target": target, "spearman": None,
                         "tokens": len(a.tokens), "note": f"the variant has no label {target!r}"})
            continue
        b = attributions.attribute(variant_loaded, ex["text"], IG, target=labels.index(target), n_steps=n_steps)
        if b.tokens != a.tokens:
            rows.append({"id": ex["id"], "text": ex["text"][:120], "target": target, "spearman": None,
                         "tokens": len(a.tokens), "note": "the variant's tokenizer splits the text differently"})
            continue
        keep = [j for j, s in enumerate(a.special) if not s]
        rho = _spearman([a.scores[j] for j in keep], [b.scores[j] for j in keep])
        rows.append({"id": ex["id"], "text": ex["text"][:120], "target": target, "tokens": len(keep),
                     "spearman": None if rho is None else round(rho, 4)})
        if progress:
            progress(i + 1, len(examples))
    values = [r["spearman"] for r in rows if r["spearman"] is not None]
    if not values:
        return Drift("error", "no example had enough tokens to rank", n_steps, rows)
    return Drift("ok", "", n_steps, rows, float(np.mean(values)), float(np.median(values)), float(min(values)))


# ---------------------------------------------------------------- warnings
def _busy() -> str | None:
    """A note when other work kept the CPUs busy (load average above half the cores): timings then vary a lot,
    a model whose threads wait for each other (PyTorch's) most of all."""
    try:
        load, cores = os.getloadavg()[0], os.cpu_count() or 1
    except (AttributeError, OSError):
        return None
    if load <= 0.5 * cores:
        return None
    return (f"The machine was busy while the models were timed (load average {load:.1f} on {cores} cores): speed "
            "figures vary with what else runs, PyTorch's (whose threads wait for each other) most of all. Time "
            "again when it is idle before trusting a speed-up or a slowdown.")


def _pct(a: float, b: float) -> str:
    return f"{100 * (a / b - 1):+.0f}%"


def slower_warning(variant: ModelReport, parent: ModelReport) -> str | None:
    """A warning when `variant` is slower than its parent beyond timing noise (SLOWER_TOLERANCE)."""
    v, p = variant.speed, parent.speed
    if not v or not p or v.error or p.error:
        return None
    what = []
    if v.latency_p50_ms and p.latency_p50_ms and v.latency_p50_ms > p.latency_p50_ms * (1 + SLOWER_TOLERANCE):
        what.append(f"latency p50 {v.latency_p50_ms:.2f} ms against {p.latency_p50_ms:.2f} ms "
                    f"({_pct(v.latency_p50_ms, p.latency_p50_ms)})")
    if v.throughput and p.throughput and v.throughput < p.throughput * (1 - SLOWER_TOLERANCE):
        what.append(f"throughput {v.throughput:.1f} against {p.throughput:.1f} examples/s "
                    f"({_pct(v.throughput, p.throughput)})")
    if not what:
        return None
    return (f"{variant.name} is slower than its parent {parent.name} on this machine: " + "; ".join(what) + ". "
            "A compressed model is not always faster (int8 on a small or memory-bound model, an unfused graph).")


def mixed_devices(models: list[ModelReport]) -> str | None:
    """A note when the models were not timed on one device (on a GPU machine, device None puts a torch model on
    the GPU and an ONNX Runtime variant on the CPU): the speed figures then compare devices as much as
    compression, and the parent's predictions are those of its dtype on its device."""
    where = {m.name: f"{m.speed.device} ({m.speed.dtype})" for m in models
             if m.speed and not m.speed.error and m.speed.device}
    devices = {m.speed.device for m in models if m.name in where}
    if len(devices) < 2:
        return None
    return ("The models did not run on one device: " + ", ".join(f"{n} on {w}" for n, w in where.items())
            + ". Speed and agreement compare the devices as well as the compression: evaluate with device cpu (or "
            "cuda, leaving out variants that run on the CPU only) to compare them alike.")


def larger_warning(variant: ModelReport, parent: ModelReport) -> str | None:
    if variant.size_bytes and parent.size_bytes and variant.size_bytes > parent.size_bytes:
        return (f"{variant.name} is larger on disk than its parent: {variant.size_bytes / 2**20:.1f} MB against "
                f"{parent.size_bytes / 2**20:.1f} MB.")
    return None


# ---------------------------------------------------------------- the evaluation
def evaluate(actor: Actor, parent: str, variants: list[str], suite, *, margin: float = 0.01, alpha: float = 0.05,
             device: str | None = None, speed_examples: int = 64, repeats: int = 3, batch_size: int = 32,
             drift_examples: int = 8, ig_steps: int = 32, memory: bool = True, use_cache: bool = True,
             source: dict | None = None, progress=None, log=None, run_id: str | None = None) -> Report:
    """Evaluate `parent` and `variants` on `suite` (see the module's doc). `progress(done, total, message,
    **stats)` may raise JobCancelled."""
    import numpy as np

    from ..bench import cache, runner
    from ..bench.suite import TASK_TYPES, TaskSpec
    from ..bench.tasks.common import render

    actor.require("run", "evaluate models")
    log = log or (lambda line: None)
    names = [parent] + [v for v in dict.fromkeys(variants) if v and v != parent]
    if len(names) < 2:
        raise LabError("Pick at least one variant to evaluate against its parent.")
    if not 0 < margin < 1:
        raise LabError(f"The equivalence margin must be between 0 and 100 points; got {100 * margin:g}.")
    main = main_task(suite)
    drift_on = bool(drift_examples) and main is not None and main.type == "classification"
    phases = {"quality": len(names) * len(suite.tasks), "speed": len(names) if main else 0,
              "memory": len(names) if memory and main else 0, "drift": len(names) - 1 if drift_on else 0}
    total = float(sum(phases.values()))
    offset = {"quality": 0.0}
    offset["speed"] = offset["quality"] + phases["quality"]
    offset["memory"] = offset["speed"] + phases["speed"]
    offset["drift"] = offset["memory"] + phases["memory"]

    def report_progress(phase: str, done: float, message: str, **more):
        if progress:
            progress(offset[phase] + done, total, message, phase=phase, models=len(names), **more)

    report = Report(parent=parent, variants=names[1:], source=source or {"suite": suite.name, "digest": suite.digest()},
                    margin=margin, alpha=alpha, main_task=main.name if main else None, created_at=time.time(),
                    run_id=run_id, settings={"device": device, "speed_examples": speed_examples, "repeats": repeats,
                                             "batch_size": batch_size, "drift_examples": drift_examples,
                                             "ig_steps": ig_steps, "memory": memory})
    for name in names:
        entry = registry.resolve(actor, name)
        size, note = disk_size(actor, name)
        report.models.append(ModelReport(name=name, role="parent" if name == parent else "variant",
                                         parent=entry.parent, recipe=(entry.meta or {}).get("recipe"),
                                         head=entry.head, size_bytes=size, size_note=note))

    # quality: the benchmark runner (cached, resumable), recorded as a benchmark run under run_id
    log(f"Quality: {len(suite.tasks)} task(s) × {len(names)} models")
    results = runner.run_suite(actor, suite, names, use_cache=use_cache, device=device, batch_size=None,
                               progress=lambda d, t, m="", **k: report_progress("quality", d, m), log=log,
                               run_id=run_id)
    by_model = {}
    for name, spec, result in zip([n for n in names for _ in suite.tasks], suite.tasks * len(names), results):
        if result.ok and not result.per_example:
            result = cache.get(actor, result.key) or result
        by_model.setdefault(name, {})[spec.name] = result
        report.model(name).quality.append(_quality(result))
    parent_results = by_model.get(parent, {})
    for m in report.models[1:]:
        for spec in suite.tasks:
            comparison = paired_for(parent_results.get(spec.name), by_model[m.name].get(spec.name), margin, alpha)
            if comparison:
                m.paired[spec.name] = comparison

    if main is None:
        report.notes.append("The suite has no task with a quality metric: speed and memory were not measured.")
        return report
    main_result = parent_results.get(main.name)
    split = (main_result.repro.split if main_result and main_result.repro else None) or "all"
    role = "text" if "text" in TASK_TYPES[main.type].roles else "prompt"
    placeholders = set(re.findall(r"{(\w+)}", main.prompt or ""))
    prompt = main.prompt.replace("{" + role + "}", "{text}") if main.prompt and placeholders == {role} else None
    limit = min(speed_examples, main.limit) if main.limit else speed_examples
    speed_spec = TaskSpec(name=f"{main.name}-speed", type="speed", dataset=main.dataset,
                          columns={"text": main.column(role)}, split=split, prompt=prompt, limit=limit,
                          repeats=repeats, batch_size=batch_size, seed=main.seed)
    try:
        _, frame, _, _ = runner.task_frame(actor, main)
        _, speed_frame, _, _ = runner.task_frame(actor, speed_spec)
    except LabError as exc:
        report.notes.append(f"Speed, memory and attribution drift were not measured: {exc}")
        return report
    texts = render(main.prompt, frame, role)
    speed_texts = render(speed_spec.prompt, speed_frame, "text")   # what the speed task times, and the probe runs

    # speed: in this process, never from the cache, in interleaved rounds: a warm-up round first (the first model
    # run in a process otherwise pays for what the later ones find ready: thread pools, kernels and buffers made
    # per input shape), then `repeats` rounds, each timing every model once (the order turning round by round),
    # so a burst of load from elsewhere on the machine falls on all models alike; each figure is the median
    # over the rounds
    busy = _busy()
    one_round = replace(speed_spec, repeats=1)
    timings: dict = {m.name: [] for m in report.models}
    failed: dict = {}
    rounds = repeats + 1
    for k in range(rounds):
        turn = report.models[k % len(names):] + report.models[:k % len(names)]
        for j, m in enumerate(turn):
            if m.name in failed:
                continue
            what = "warming up" if k == 0 else f"round {k}/{repeats}"
            report_progress("speed", len(names) * (k * len(names) + j) / (rounds * len(names)),
                            f"speed of {m.name} ({what}): latency at batch 1, throughput at batch {batch_size}")
            try:
                r = runner.run_task(actor, suite, one_round, m.name, use_cache=False, device=device)
            except (JobCancelled, KeyboardInterrupt):
                raise
            except Exception as exc:  # this model's speed fails; the evaluation goes on
                failed[m.name] = str(exc)
                log(f"{m.name}: speed failed: {exc}")
                continue
            if k:
                timings[m.name].append(r)
    for m in report.models:
        runs = timings[m.name]
        if m.name in failed or not runs:
            m.speed = Speed(error=failed.get(m.name, "not measured"))
            continue
        median = lambda key: float(np.median([r.metrics[key] for r in runs]))
        settings = runs[0].repro.settings
        m.speed = Speed(latency_p50_ms=median("latency_p50_ms"), latency_p95_ms=median("latency_p95_ms"),
                        throughput=median("examples_per_s"), batch_size=runs[0].stats.get("batch_size", batch_size),
                        examples=len(runs[0].per_example), repeats=len(runs), device=settings.get("device", ""),
                        dtype=settings.get("dtype", ""))
        log(f"{m.name}: p50 {m.speed.latency_p50_ms:.2f} ms, p95 {m.speed.latency_p95_ms:.2f} ms, "
            f"{m.speed.throughput:.1f} examples/s")

    busy = busy or _busy()
    if busy:
        report.notes.append(busy)
    mixed = mixed_devices(report.models)
    if mixed:
        report.notes.append(mixed)

    # peak memory: a fresh process per model
    if memory:
        for i, m in enumerate(report.models):
            report_progress("memory", i, f"peak memory of {m.name} (a fresh process)")
            m.memory = probe_memory(actor, m.name, main.type, speed_texts, batch_size, device)
            log(f"{m.name}: peak memory " + (m.memory.error or f"{m.memory.peak_mb} MB"))

    # attribution drift: layer IG of each variant against the parent's, on a seeded sample
    if drift_on:
        sample = frame.assign(shown_text=texts).sample(n=min(drift_examples, len(frame)), random_state=main.seed)
        examples = [{"id": int(i), "text": str(t)} for i, t in sample.sort_values("id")[["id", "shown_text"]].values]
        needs = TASK_TYPES[main.type].model_needs
        parent_cache: dict = {}
        parent_loaded = None
        for i, m in enumerate(report.models[1:]):
            report_progress("drift", i, f"attribution drift of {m.name} ({len(examples)} examples)")
            try:
                parent_loaded = parent_loaded or registry.load_for(actor, needs, parent, device=device)
                variant_loaded = registry.load_for(actor, needs, m.name, device=device)
                m.drift = attribution_drift(parent_loaded, variant_loaded, examples, ig_steps, parent_cache,
                                            progress=lambda d, t, i=i, m=m: report_progress(
                                                "drift", i + d / t, f"attribution drift of {m.name}: {d}/{t}"))
            except (JobCancelled, KeyboardInterrupt):
                raise
            except Exception as exc:
                m.drift = Drift("error", str(exc), ig_steps)
            log(f"{m.name}: attribution drift {m.drift.status} {m.drift.mean if m.drift.mean is not None else ''}")

    parent_report = report.parent_report
    for m in report.models[1:]:
        slower = slower_warning(m, parent_report)
        m.slower = slower is not None
        for warn in (slower, larger_warning(m, parent_report)):
            if warn:
                m.warnings.append(warn)
    report_progress("drift", phases["drift"], "done")
    return report


# ---------------------------------------------------------------- the job
def run(ctx, parent: str, variants: list[str], dataset: str | None = None, columns: dict | None = None,
        split: str | None = None, limit: int | None = None, suite_text: str | None = None, margin: float = 0.01,
        alpha: float = 0.05, device: str | None = None, speed_examples: int = 64, repeats: int = 3,
        batch_size: int = 32, drift_examples: int = 8, ig_steps: int = 32, memory: bool = True) -> dict:
    """The job function (`JOB_FN`): acts as `ctx.actor`; returns `Report.to_dict()`, stored as the job's result."""
    suite, source = _suite_and_source(ctx.actor, parent, dataset, columns, split, limit, suite_text)
    if ctx.resume:
        ctx.log("Resuming: finished quality tasks come from the cache; speed and memory are measured again.")
    report = evaluate(ctx.actor, parent, variants, suite, margin=margin, alpha=alpha, device=device,
                      speed_examples=speed_examples, repeats=repeats, batch_size=batch_size,
                      drift_examples=drift_examples, ig_steps=ig_steps, memory=memory, source=source,
                      progress=lambda d, t, m="", **k: ctx.progress(d, t, m, **k), log=ctx.log, run_id=ctx.id)
    ctx.progress(1, 1, "done", force=True, phase="done", models=len(report.models))
    return report.to_dict()


def _suite_and_source(actor, parent, dataset, columns, split, limit, suite_text):
    from ..bench import suite as suites

    if bool(dataset) == bool(suite_text):
        raise LabError("Evaluate on a dataset or on a benchmark suite: pick one of the two.")
    if dataset:
        suite = build_suite(actor, parent, dataset, columns, split, limit)
        return suite, {"dataset": dataset, "split": split or "test (default)", "columns": columns or {},
                       "fingerprint": data.get(actor, dataset).fingerprint, "limit": limit}
    suite = suites.parse(suite_text, "compress", "the suite")
    if limit:
        suite = replace(suite, tasks=[replace(t, limit=min(t.limit or limit, limit)) for t in suite.tasks])
    return suite, {"suite": suite.name, "version": suite.version, "digest": suite.digest(), "limit": limit}


def submit(actor: Actor, parent: str, variants: list[str], *, dataset: str | None = None, columns: dict | None = None,
           split: str | None = None, limit: int | None = None, suite_text: str | None = None, margin: float = 0.01,
           alpha: float = 0.05, device: str | None = None, speed_examples: int = 64, repeats: int = 3,
           batch_size: int = 32, drift_examples: int = 8, ig_steps: int = 32, memory: bool = True) -> str:
    """Queue the evaluation (checked here first, so a mistake is said in the page, not in the job)."""
    from .. import jobs

    variants = [v for v in dict.fromkeys(variants) if v and v != parent]
    if not variants:
        raise LabError("Pick at least one variant to evaluate against its parent.")
    for name in [parent, *variants]:
        registry.resolve(actor, name)
    if not 0 < margin < 1:
        raise LabError(f"The equivalence margin must be between 0 and 100 points; got {100 * margin:g}.")
    suite, source = _suite_and_source(actor, parent, dataset, columns, split, limit, suite_text)
    what = dataset or suite.name
    title = f"Compress-then-evaluate {parent} vs {', '.join(variants)} on {what}"
    params = {"parent": parent, "variants": variants, "dataset": dataset, "columns": columns or None,
              "split": split, "limit": limit, "suite_text": suite_text, "margin": margin, "alpha": alpha,
              "device": device, "speed_examples": speed_examples, "repeats": repeats, "batch_size": batch_size,
              "drift_examples": drift_examples, "ig_steps": ig_steps, "memory": memory}
    return jobs.submit(actor, JOB_FN, params, title)


def report_of(actor: Actor, job_id: str) -> Report | None:
    """The report of a finished evaluation job (None while it runs, or when it failed); a job of another kind
    (an address naming a training job, say) is refused with what it is."""
    from .. import jobs

    job = jobs.get(actor, job_id)
    if job["fn"] != JOB_FN:
        raise LabError(f"Job {job_id} is a {jobs.what(job['fn'])} job, not a compress-then-evaluate run: pick an "
                       "evaluation of the list on the Compress page (python -m llm_lab jobs show shows any job).")
    return Report.from_dict(job["result"]) if job.get("result") else None


def history(actor: Actor, limit: int = 50) -> list[dict]:
    """The actor's evaluation jobs, newest first: {"id", "title", "status", "created_at"}."""
    from .. import jobs

    return [{k: j[k] for k in ("id", "title", "status", "created_at")}
            for j in jobs.list_jobs(actor, JOB_FN.partition(":")[0], limit)]
