"""Run a suite on models: each (model, task) is loaded, checked, cached, resumed, scored and recorded.

A problem with one task (model without the needed head, missing columns, unknown labels, empty
dataset, empty generations) becomes an error result for that task; the rest of the suite runs.
"""
from __future__ import annotations

import hashlib
import time
import traceback

from .. import capabilities as caps
from .. import data, registry
from ..access import DEFAULT_WORKSPACE, Actor
from ..errors import JobCancelled, LabError, ModelError, failure_message
from . import cache, fingerprint
from .result import Repro, TaskResult
from .suite import TASK_TYPES, Suite, TaskSpec
from .tasks import module
from .tasks.common import TaskError, TaskState


def default_batch_size(device: str, requested: int | None = None) -> int:
    if requested:
        return int(requested)
    return 128 if str(device).startswith("cuda") else 32


def task_frame(actor: Actor, spec: TaskSpec):
    """The rows a task scores (id + its roles, in id order), or a TaskError saying what is missing."""
    info = data.get(actor, spec.dataset)
    frame = data.load_frame(actor, spec.dataset, spec.split)
    needs, optional = TASK_TYPES[spec.type].roles_needed, TASK_TYPES[spec.type].optional
    if spec.type == "multiple_choice" and spec.choices:
        needs = tuple(r for r in needs)
    missing = [f"{role} (column {spec.column(role)!r})" for role in needs if spec.column(role) not in frame.columns]
    if spec.type == "multiple_choice" and not spec.choices and spec.column("choices") not in frame.columns:
        missing.append(f"choices (column {spec.column('choices')!r})")
    if missing:
        raise TaskError(f"Dataset {spec.dataset!r} has no {', '.join(missing)}; its columns are "
                        f"{', '.join(c for c in frame.columns if c not in ('split',))}. Map the column in the task's "
                        "`columns`, or re-import the dataset with that role.")
    if spec.split and frame.empty:
        splits = ", ".join(info.splits) or "none"
        raise TaskError(f"Dataset {spec.dataset!r} has no rows in split {spec.split!r} (splits: {splits}).")
    out = frame[["id"]].copy()
    for role in needs + optional:
        if spec.column(role) in frame.columns:
            out[role] = frame[spec.column(role)].values
    out = out.sort_values("id").reset_index(drop=True)
    if spec.limit:
        out = out.head(spec.limit)
    if out.empty:
        raise TaskError(f"Dataset {spec.dataset!r} is empty: there is nothing to score.")
    return info, out


def load_for(actor: Actor, spec: TaskSpec, model_name: str, frame, device: str | None, dtype: str | None):
    """Open the model with the head the task needs; a clear TaskError when it has none."""
    import torch

    entry = registry.resolve(actor, model_name)
    needs = TASK_TYPES[spec.type].model_needs
    try:
        head = caps.require_entry(needs, entry)
    except ModelError as exc:
        raise TaskError(str(exc)) from exc
    num_labels = None
    if head == "classifier" and entry.head != "classifier":  # a new head sized to the dataset's labels, seeded
        num_labels = int(frame["label"].astype(str).nunique())
        torch.manual_seed(spec.seed)
    loaded = registry.load(actor, model_name, head=head, device=device, dtype=dtype, num_labels=num_labels)
    try:
        caps.require(needs, loaded)
    except ModelError as exc:
        raise TaskError(str(exc)) from exc
    return loaded


def result_key(model_fp: str, dataset_fp: str, spec: TaskSpec, settings: dict,
               workspace: str = DEFAULT_WORKSPACE) -> str:
    """The cache key of a result. Results belong to a workspace, so another workspace's identical run gets its
    own key (the default workspace keeps the keys it had before workspaces existed)."""
    parts = [model_fp, dataset_fp, spec.definition_hash(), fingerprint.settings_hash(settings)]
    if workspace != DEFAULT_WORKSPACE:
        parts.append(f"workspace={workspace}")
    text = "|".join(parts)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _error_result(suite: Suite, spec: TaskSpec, model: str, message: str) -> TaskResult:
    key = "err-" + hashlib.sha256(f"{suite.name}|{model}|{spec.name}|{time.time()}".encode()).hexdigest()[:20]
    return TaskResult(key=key, model=model, suite=suite.name, suite_version=suite.version, task=spec.name,
                      type=spec.type, status="error", error=message, created_at=time.time())


def run_task(actor: Actor, suite: Suite, spec: TaskSpec, model_name: str, *, use_cache: bool = True, device: str | None = None,
             dtype: str | None = None, batch_size: int | None = None, progress=None, log=None) -> TaskResult:
    progress = progress or (lambda done, total, message="": None)
    t_start = time.time()
    info, frame = task_frame(actor, spec)
    loaded = load_for(actor, spec, model_name, frame, device, dtype)
    model_fp = fingerprint.model_fingerprint(loaded)
    settings = {"device": loaded.device, "dtype": loaded.dtype}
    key = result_key(model_fp, info.fingerprint, spec, settings, actor.workspace)
    if use_cache and (hit := cache.get(actor, key)):
        hit.cached = True
        progress(len(frame), len(frame), "from cache")
        return hit
    partial = cache.Partial(key)
    if partial.resumed and log:
        log(f"{model_name} / {spec.name}: resuming, {partial.resumed} outputs already done")
    state = TaskState(spec, loaded, frame, partial, progress, default_batch_size(loaded.device, spec.batch_size or batch_size),
                      loaded.device)
    if loaded.head_is_new and spec.type != "speed":
        state.notes.append(f"{model_name}'s {loaded.head} head is newly initialised (seed {spec.seed}): "
                           "its predictions are not meaningful until it is fine-tuned.")
    try:
        out = module(spec.type).run(state)
    except BaseException:
        partial.flush()  # keep what was done so a rerun resumes from here
        raise
    seconds = time.time() - t_start
    result = TaskResult(
        key=key, model=model_name, suite=suite.name, suite_version=suite.version, suite_digest=suite.digest(),
        task=spec.name, type=spec.type, status="ok", error=None, metrics=out["metrics"],
        details=out.get("details", {}), headline=out["headline"], per_example=out["per_example"],
        labels=out.get("labels"), notes=state.notes,
        stats=dict(state.stats, examples=len(frame), seconds=round(seconds, 3),
                   examples_per_s=round(len(frame) / max(seconds, 1e-9), 2), resumed_outputs=partial.resumed),
        seconds=seconds, created_at=time.time(), cached=False,
        repro=Repro(
            model=model_name, model_source=loaded.entry.source, model_location=loaded.entry.location,
            model_fingerprint=model_fp, head=loaded.head, head_is_new=loaded.head_is_new,
            dataset=spec.dataset, dataset_hash=info.content_hash, dataset_fingerprint=info.fingerprint,
            split=spec.split, rows=len(frame), task_definition=spec.definition(),
            task_hash=spec.definition_hash(), suite=suite.name, suite_version=suite.version,
            suite_digest=suite.digest(), seed=spec.seed, settings=settings,
            environment=fingerprint.environment(loaded.device)),
    )
    cache.put(actor, result)
    return result


def plan(suite: Suite, models: list[str]) -> list[tuple[str, TaskSpec]]:
    return [(m, t) for m in models for t in suite.tasks]


def run_suite(actor: Actor, suite: Suite, models: list[str], *, use_cache: bool = True, device: str | None = None,
              dtype: str | None = None, batch_size: int | None = None, progress=None, log=None,
              run_id: str | None = None, limit: int | None = None) -> list[TaskResult]:
    """Every task of `suite` on every model; returns one result per (model, task), errors included.

    `limit` caps the examples of every task (a quick look). `progress(done, total, message, **stats)`
    may raise JobCancelled to stop (partial work is kept)."""
    actor.require("run", "run benchmarks")
    log = log or (lambda line: None)
    if limit:
        from dataclasses import replace

        suite = replace(suite, tasks=[replace(t, limit=min(t.limit or limit, limit)) for t in suite.tasks])
    pairs = plan(suite, models)
    if not models:
        raise LabError("Pick at least one model to benchmark.")
    results = []
    for n, (model, spec) in enumerate(pairs):
        label = f"[{n + 1}/{len(pairs)}] {model} / {spec.name}"

        def task_progress(done, total, message="", n=n, label=label, started=time.time()):
            if progress:
                rate = done / max(time.time() - started, 1e-9)
                progress(n + (done / total if total else 0), len(pairs), f"{label}: {message}",
                         tasks_done=n, tasks=len(pairs), per_s=round(rate, 1))

        task_progress(0, 1, "starting")
        try:
            result = run_task(actor, suite, spec, model, use_cache=use_cache, device=device, dtype=dtype,
                              batch_size=batch_size, progress=task_progress, log=log)
            head = result.headline
            log(f"{label}: {'cached' if result.cached else 'done'} — {head.name if head else None} = "
                f"{head.value if head else None}")
        except (JobCancelled, KeyboardInterrupt):
            raise
        except LabError as exc:
            result = _error_result(suite, spec, model, str(exc))
            cache.put(actor, result)
            log(f"{label}: error — {exc}")
        except Exception as exc:  # a bug or the machine: this task fails, the suite goes on
            message = failure_message(exc, oom_advice="Out of memory even with batch size 1: use a shorter "
                                                      "max_length or a smaller model.")
            result = _error_result(suite, spec, model, message)
            cache.put(actor, result)
            log(f"{label}: failed — {message}\n{traceback.format_exc()}")
        results.append(result)
    if progress:
        progress(len(pairs), len(pairs), "done", force=True)
    if run_id:
        cache.record_run(actor, run_id, suite.name, models, [r.key for r in results])
    return results
