"""Compress-then-evaluate: a parent model and its variants on the same data, in one background job.

`submit(actor, parent, variants, dataset=… | suite_text=…, margin=0.01)` queues `JOB_FN`; the job returns a
`Report` (stored as the job's result, so a refresh, another browser or the CLI reads it back with
`report_of(actor, job_id)`). Per model it gives:

- **size on disk** (`measure.disk_size`): the bytes of every file in the model's folder; an adapter-only model
  (LoRA weights over a base, `registry.adapter_base`) counts its base's folder too, and says so;
- **quality**: the suite's tasks through the benchmark runner (`bench.runner.run_suite`: cached, resumable,
  the test split unless a task names another), each headline with its 95% bootstrap interval, and intervals
  for accuracy and macro-F1 from the per-example predictions (`metrics.bootstrap_ci`). A dataset instead of a
  suite becomes a one-task suite (`build_suite`: classification for a classifier parent; for a causal LM,
  generation when the dataset has prompt and reference columns, else language modelling). The results are
  recorded as a benchmark run under the job's id, so the Benchmarks page opens them (`/benchmarks?result=ID`);
- **speed** (`measure.speeds`): the benchmark's speed task (never from the cache) on the first `speed_examples`
  scored texts: latency p50/p95 at batch 1 and throughput (examples/s) at `batch_size` on the same texts, a
  warm-up round then `repeats` interleaved rounds in this process, medians;
- **peak memory** (`measure.probe_memory`): a fresh process per model loads it and runs the same texts at
  `batch_size` (`memprobe`: the resident-set high-water mark above the process before loading, plus torch's
  CUDA peak);
- **agreement with the parent** (variants): per task whose examples are right or wrong, the paired comparison
  of `stats.paired` (identical predictions, flips, McNemar's exact test, the equivalence verdict at `margin`);
- **attribution drift** (`drift.attribution_drift`, variants of a classifier): over `drift_examples` scored
  examples (a seeded sample), layer Integrated Gradients token scores of the variant and of the parent for the
  parent's predicted class, and their Spearman rank correlation per example. A model without gradients (an
  ONNX Runtime session) gets "not available: no gradients" from the capability check;
- **warnings** (`measure`): a variant slower than its parent (latency p50 or throughput worse by more than
  SLOWER_TOLERANCE, above timing noise), or larger on disk; notes when the machine was busy or the models ran
  on different devices.

The record is typed (`report.Report`, stored as the job's result). Models are opened only through the registry
(`registry.load_for`), the benchmark runner and `inference`: a variant made by any recipe (quantized, pruned,
distilled, ONNX) is evaluated like any registry model.
"""
from __future__ import annotations

import re
import time
from dataclasses import replace

import numpy as np

from .. import capabilities as caps
from .. import data, registry
from ..access import Actor
from ..errors import JobCancelled, LabError
from ..stats import equivalence as stats
from . import measure
from .drift import attribution_drift
from .measure import disk_size, larger_warning, mixed_devices, probe_memory, slower_warning, speeds
from .report import Drift, ModelReport, Quality, Report

JOB_FN = "llm_lab.compress.evaluate:run"
INTERVAL_METRICS = ("accuracy", "f1")   # intervals from the per-example predictions (classification-like tasks)


# ---------------------------------------------------------------- what is evaluated
def build_suite(actor: Actor, parent: str, dataset: str, columns: dict | None = None, split: str | None = None,
                limit: int | None = None):
    """A one-task suite on `dataset` for `parent`'s head: classification (accuracy, macro-F1, the confusion
    matrix the linked benchmark run shows) for a classifier;
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
        task = {"type": "classification", "metrics": ["accuracy", "f1", "confusion_matrix"]}
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
    """95% intervals of accuracy (Wilson: honest at 100% and at a few rows) and macro-F1 (BCa bootstrap) from a
    classification-like result's per-example rows, of the figures the task reports, with the rows behind them:
    a row is scored against the model output its label maps to (by name, case, position or label_map: a right
    row says under which name the output is shown), and macro-F1 averages over the classes the scored labels map
    to, not over a label the model predicted that the data lacks."""
    from ..metrics import intervals as metric_intervals
    from ..stats import intervals

    rows = [r for r in result.per_example or [] if r.get("prediction") is not None and r.get("label") is not None]
    if result.type not in ("classification", "multiple_choice") or not rows:
        return {}
    shown = {}
    for r in rows:
        if r.get("correct"):
            shown.setdefault(str(r["label"]), str(r["prediction"]))
    refs = [shown.get(str(r["label"]), str(r["label"])) for r in rows]
    preds = [str(r["prediction"]) for r in rows]
    index = {name: i for i, name in enumerate(sorted(set(refs) | set(preds)))}
    preds, refs = [index[p] for p in preds], [index[r] for r in refs]
    out = {"accuracy": intervals.of_proportion(np.asarray(preds) == np.asarray(refs)).to_dict()}
    # the bootstrap module's per-example confusion cells: macro-F1 is a function of their sums
    # BCa, with the Wilson fallback when every resample agrees (all right: never [1.000, 1.000])
    out["f1"] = metric_intervals.of_labels("f1", preds, refs, sorted(set(refs)), seed=0).to_dict()
    return {k: v for k, v in out.items() if k in INTERVAL_METRICS}


def _quality(result) -> Quality:
    head = result.headline
    found = _intervals(result) if result.ok else {}
    quality = Quality(task=result.task, type=result.type, metric=head and head.name, value=head and head.value,
                      low=head and head.low, high=head and head.high,
                      higher_is_better=head.higher_is_better if head else True, metrics=dict(result.metrics or {}),
                      intervals=found, rows=len(result.per_example or []), n=getattr(head, "n", None),
                      method=getattr(head, "method", None) or "", scored=result.scored, key=result.key,
                      error=result.error, notes=list(result.notes or []))
    own = found.get(quality.metric or "")
    if own:  # the headline's interval from the per-example rows (Wilson for accuracy: never [1.000, 1.000])
        quality.value, quality.low, quality.high = own["value"], own["low"], own["high"]
        quality.n, quality.method = own["n"], own["method"]
    return quality


# ---------------------------------------------------------------- the settings, checked before any work
COUNTS = {"speed_examples": ("texts timed", 1), "repeats": ("timing rounds", 1), "batch_size": ("the batch size", 1),
          "drift_examples": ("attribution examples", 0), "ig_steps": ("Integrated Gradients steps", 1)}


def check_settings(margin: float, alpha: float, **counts) -> None:
    """Refuse settings the evaluation cannot use, saying what to give (the page's form keeps to them; the job and
    a script may not)."""
    if not 0 < margin < 1:
        raise LabError(f"The equivalence margin must be between 0 and 100 points; got {100 * margin:g}. Give the "
                       "largest accuracy difference with the parent you would accept, e.g. 1 point (0.01).")
    if not 0 < alpha < 0.5:
        raise LabError(f"The equivalence test's level alpha must be between 0 and 0.5; got {alpha:g}. Give 0.05 for "
                       "\"equivalent at 95%\" (the 90% interval inside the margin).")
    for name, value in counts.items():
        what, least = COUNTS[name]
        if int(value) != value or value < least:
            raise LabError(f"{name} ({what}) must be a whole number of at least {least}; got {value}.")


# ---------------------------------------------------------------- the evaluation
def evaluate(actor: Actor, parent: str, variants: list[str], suite, *, margin: float = 0.01, alpha: float = 0.05,
             device: str | None = None, speed_examples: int = 64, repeats: int = 3, batch_size: int = 32,
             drift_examples: int = 8, ig_steps: int = 32, memory: bool = True, use_cache: bool = True,
             source: dict | None = None, progress=None, log=None, run_id: str | None = None) -> Report:
    """Evaluate `parent` and `variants` on `suite` (see the module's doc). `progress(done, total, message,
    **stats)` may raise JobCancelled."""
    from ..bench import cache, runner
    from ..bench.suite import TASK_TYPES, TaskSpec
    from ..bench.tasks.common import render

    actor.require("run", "evaluate models")
    log = log or (lambda line: None)
    names = [parent] + [v for v in dict.fromkeys(variants) if v and v != parent]
    if len(names) < 2:
        raise LabError("Pick at least one variant to evaluate against its parent.")
    check_settings(margin=margin, alpha=alpha, speed_examples=speed_examples, repeats=repeats,
                   batch_size=batch_size, drift_examples=drift_examples, ig_steps=ig_steps)
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

    # speed: the same texts for every model, in interleaved rounds after a warm-up (measure.speeds)
    busy = measure._busy()
    timed = speeds(actor, suite, speed_spec, names, repeats=repeats, batch_size=batch_size, device=device,
                   progress=lambda d, message: report_progress("speed", d, message), log=log)
    for m in report.models:
        m.speed = timed[m.name]

    busy = busy or measure._busy()
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
    check_settings(margin=margin, alpha=alpha, speed_examples=speed_examples, repeats=repeats,
                   batch_size=batch_size, drift_examples=drift_examples, ig_steps=ig_steps)
    suite, source = _suite_and_source(actor, parent, dataset, columns, split, limit, suite_text)
    what = dataset or suite.name
    title = f"Compress-then-evaluate {parent} vs {', '.join(variants)} on {what}"
    params = {"parent": parent, "variants": variants, "dataset": dataset, "columns": columns or None,
              "split": split, "limit": limit, "suite_text": suite_text, "margin": margin, "alpha": alpha,
              "device": device, "speed_examples": speed_examples, "repeats": repeats, "batch_size": batch_size,
              "drift_examples": drift_examples, "ig_steps": ig_steps, "memory": memory}
    # the parent and one variant at a time are compared side by side
    needs = jobs.Resources.for_device(device, jobs.inference_memory_gb(actor, [parent, *variants], at_once=2))
    return jobs.submit(actor, JOB_FN, params, title, resources=needs)


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
