"""Run a suite on models: each (model, task) is loaded, checked, cached, resumed, scored and recorded.

A problem with one task (model without the needed head, missing columns, unknown labels, empty
dataset, empty generations) becomes an error result for that task; the rest of the suite runs.

Under `accelerate launch` / torchrun the processes share each task's examples and gather the outputs
(distributed.py): every process gets the same results, the main process alone reports and writes them.
"""
from __future__ import annotations

import hashlib
import time
import traceback
from pathlib import Path

from .. import capabilities as caps
from .. import data, registry
from ..access import DEFAULT_WORKSPACE, Actor
from ..errors import JobCancelled, LabError, ModelError, failure_message
from . import cache, contamination, distributed, fingerprint, slices
from .result import Repro, TaskResult
from .suite import TASK_TYPES, Suite, TaskSpec
from .tasks import module
from .tasks.common import TaskError, TaskState


def default_batch_size(device: str, requested: int | None = None) -> int:
    if requested:
        return int(requested)
    return 128 if str(device).startswith("cuda") else 32


def scored_split(spec: TaskSpec, info) -> tuple[str | None, str, str]:
    """Which rows a task scores: (the split to load, None for every row; the split recorded with the result,
    "all" for every row; a note when that is not what the task asked for, else "").

    A task names its split (`split: validation`, or `split: all` for every row); without one it scores the
    test split, so rows that trained a model never score it, or every row when the dataset has no test split
    (said in the note). A speed task measures time, not quality: it uses every row unless it names a split."""
    if spec.split == "all":
        return None, "all", ""
    if spec.split:
        return spec.split, spec.split, ""
    if spec.type == "speed":
        return None, "all", ""
    if "test" in (info.splits or {}):
        return "test", "test", ""
    splits = ", ".join(f"{k} {v}" for k, v in (info.splits or {}).items()) or "none"
    return None, "all", (f"Dataset {spec.dataset!r} has no test split (splits: {splits}): every row was scored, "
                         "including any a model was trained on. Name a split in the task (`split: ...`) to score "
                         "only that one.")


def task_frame(actor: Actor, spec: TaskSpec):
    """The rows a task scores (id + its roles, in id order), or a TaskError saying what is missing.

    Returns (dataset info, frame, split recorded with the result, note or "")."""
    info = data.get(actor, spec.dataset)
    load_split, split, note = scored_split(spec, info)
    frame = data.load_frame(actor, spec.dataset, load_split)
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
    if load_split and frame.empty:
        splits = ", ".join(info.splits) or "none"
        raise TaskError(f"Dataset {spec.dataset!r} has no rows in split {load_split!r} (splits: {splits}). Name one "
                        "of its splits in the task (`split: ...`), or `split: all` for every row.")
    out = frame[["id"]].copy()
    for role in needs + optional:
        if spec.column(role) in frame.columns:
            out[role] = frame[spec.column(role)].values
    out = out.sort_values("id").reset_index(drop=True)
    if spec.limit:
        out = out.head(spec.limit)
    if out.empty:
        raise TaskError(f"Dataset {spec.dataset!r} is empty: there is nothing to score.")
    return info, out, split, note


def text_role(spec: TaskSpec) -> str:
    """The role holding the text a task reads: text, or prompt for generation."""
    return "text" if "text" in TASK_TYPES[spec.type].roles else "prompt"


def slice_rows(actor: Actor, spec: TaskSpec, frame) -> dict[int, dict]:
    """{row id: {slice name: value}} for the task's `slices`, over every column of the dataset (not only the
    task's roles); {} without slices. A slice naming a column the dataset lacks is a TaskError, before any model
    is loaded."""
    if not spec.slices:
        return {}
    full = data.load_frame(actor, spec.dataset).set_index("id").loc[frame["id"].tolist()].reset_index()
    try:
        values = slices.slice_values(full, spec.slices, text_column=spec.column(text_role(spec)))
    except slices.SliceError as exc:
        raise TaskError(f"`slices`: {exc}") from exc
    return dict(zip(frame["id"].astype(int).tolist(), values))


def add_slices(rows: list[dict], by_id: dict[int, dict]) -> None:
    """Each per-example row gets `slice`: its example's {slice name: value} (rows of one example share it)."""
    if by_id:
        for row in rows:
            row["slice"] = dict(by_id.get(int(row["id"]), {}))


def contamination_checks(actor: Actor, spec: TaskSpec, entry, frame, split: str) -> tuple[list, list[str]]:
    """The scored rows checked against the training rows of a model LLM Lab trained (from what training
    recorded) and against the dataset the task names in `contamination`: (report dicts, notes).

    A named dataset that cannot be read is the task's error; a trained model whose training data cannot be
    reproduced any more (dataset deleted) gets a note instead."""
    role = text_role(spec)
    if spec.type == "speed" or role not in frame.columns:  # a speed task measures time: nothing to leak
        return [], []
    ids, texts = frame["id"].astype(int).tolist(), frame[role].astype(str).tolist()
    settings = dict(n=spec.contamination_n or contamination.DEFAULT_N,
                    threshold=spec.contamination_threshold or contamination.DEFAULT_THRESHOLD)
    rows_word = "evaluation rows" if split == "all" else f"{split} rows"
    reports, notes = [], []
    try:
        trained = contamination.training_rows(actor, entry)
    except contamination.ContaminationError as exc:
        trained, notes = None, [str(exc)]
    if trained:
        train_ids, train_texts, what, caveats = trained
        report = contamination.check(ids, texts, train_ids, train_texts, training=what, source="trained", **settings)
        report.caveats = caveats
        reports.append(report)
        notes.append(report.note(entry.name, rows_word))
    if spec.contamination:
        try:
            named = contamination.named_rows(actor, spec.contamination, spec.contamination_split, spec.column(role))
        except contamination.ContaminationError as exc:
            raise TaskError(str(exc)) from exc
        report = contamination.check(ids, texts, named[0], named[1], training=named[2], source="named", **settings)
        reports.append(report)
        notes.append(report.note("", rows_word))
    return [r.to_dict() for r in reports], notes


def with_contamination(details: dict, reports: list) -> dict:
    """`details` with the checks: `contamination` the first (the model's own training data when LLM Lab trained
    it, else the named dataset), `contamination_checks` all of them."""
    if not reports:
        return details
    return dict(details, contamination=reports[0], contamination_checks=reports)


def load_for_task(actor: Actor, spec: TaskSpec, model_name: str, frame, device: str | None, dtype: str | None,
                  label_names: list | None = None):
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
        if label_names:  # every label of the dataset, also those missing from the scored split
            num_labels = max(num_labels, len(label_names))
        torch.manual_seed(spec.seed)
    loaded = registry.load(actor, model_name, head=head, device=device, dtype=dtype, num_labels=num_labels)
    try:
        caps.require(needs, loaded)
    except ModelError as exc:
        raise TaskError(str(exc)) from exc
    return loaded


def result_key(model_fp: str, dataset_fp: str, spec: TaskSpec, settings: dict,
               workspace: str = DEFAULT_WORKSPACE, split: str = "all") -> str:
    """The cache key of a result. Results belong to a workspace, so another workspace's identical run gets its
    own key (the default workspace keeps the keys it had before workspaces existed). `split` is the split the
    task scored (`scored_split`): a task without one scores what the dataset offers, so it is part of the key."""
    parts = [model_fp, dataset_fp, spec.definition_hash(), fingerprint.settings_hash(settings), f"split={split}"]
    if workspace != DEFAULT_WORKSPACE:
        parts.append(f"workspace={workspace}")
    text = "|".join(parts)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def as_cached(hit: TaskResult, name: str, loaded) -> TaskResult:
    """A stored result served for `loaded`: under the name it was asked for. The key is the computation (same
    weights, data, task and settings), so a model with the same weights under another name (a copy, a path)
    gets the result that model computed, said in a note."""
    from dataclasses import replace

    notes = list(hit.notes or [])
    if hit.model != name:
        notes.append(f"Served from the cached result of {hit.model}: the same weights (fingerprint "
                     f"{hit.repro.model_fingerprint if hit.repro else '?'}), data, task and settings.")
    repro = hit.repro and replace(hit.repro, model=name, model_source=loaded.entry.source,
                                  model_location=loaded.entry.location)
    return replace(hit, model=name, notes=notes, repro=repro, cached=True)


def _error_result(suite: Suite, spec: TaskSpec, model: str, message: str) -> TaskResult:
    key = "err-" + hashlib.sha256(f"{suite.name}|{model}|{spec.name}|{time.time()}".encode()).hexdigest()[:20]
    return TaskResult(key=key, model=model, suite=suite.name, suite_version=suite.version, task=spec.name,
                      type=spec.type, status="error", error=message, created_at=time.time())


def _prepare(actor: Actor, spec: TaskSpec, model_name: str, device: str | None, dtype: str | None,
             batch_size: int | None) -> dict:
    """What a task needs before the model runs: its rows, slices, the loaded model, batch size, settings and
    the result key."""
    info, frame, split, split_note = task_frame(actor, spec)
    slice_of = slice_rows(actor, spec, frame)
    loaded = load_for_task(actor, spec, model_name, frame, device, dtype, info.label_names)
    model_fp = fingerprint.model_fingerprint(loaded, actor)
    size = default_batch_size(loaded.device, spec.batch_size or batch_size)
    settings = {"device": loaded.device, "dtype": loaded.dtype}
    if getattr(loaded.model, "batch_dependent", False):  # its outputs depend on the rows batched together (int8
        settings["batch_size"] = size                    # activations quantized per batch): part of the result
        if distributed.active():  # each process batches only its share: other batches than one process makes
            settings["data_parallel"] = distributed.world()
    if getattr(module(spec.type), "VERSION", None):  # a task type whose computation changed: old results do not match
        settings["task_version"] = module(spec.type).VERSION
    key = result_key(model_fp, info.fingerprint, spec, settings, actor.workspace, split)
    return {"info": info, "frame": frame, "split": split, "split_note": split_note, "slice_of": slice_of,
            "loaded": loaded, "model_fp": model_fp, "size": size, "settings": settings, "key": key}


def _cached(actor: Actor, key: str, loaded, use_cache: bool) -> TaskResult | None:
    """The stored result for `key`, if it may be served (decided by the main process when distributed)."""
    # an endpoint's model may change behind its URL: its results are stored, never served from the cache
    if not use_cache or loaded.entry.source == "endpoint":
        return None
    return distributed.from_main(lambda: cache.get(actor, key))


def _run_module(spec: TaskSpec, state: TaskState, partial) -> dict:
    """The task type's `run(state)`; data-parallel, the processes share the examples (distributed.py), and a
    speed task runs on the main process alone (timings of N processes at once measure their contention)."""
    run = module(spec.type).run
    if spec.type == "speed" and distributed.active():
        return distributed.from_main(lambda: run(state))
    return distributed.agreed(lambda: distributed.run_guarded(partial, lambda: run(state)))


def run_task(actor: Actor, suite: Suite, spec: TaskSpec, model_name: str, *, use_cache: bool = True, device: str | None = None,
             dtype: str | None = None, batch_size: int | None = None, progress=None, log=None) -> TaskResult:
    progress = progress or (lambda done, total, message="": None)
    if spec.type == "lm_eval":  # lm-eval's own evaluator runs the task; data-parallel, on the main process alone
        return distributed.from_main(lambda: run_lm_eval_task(
            actor, suite, spec, model_name, use_cache=use_cache, device=device, dtype=dtype,
            batch_size=batch_size, progress=progress))
    t_start = time.time()
    ready = distributed.agreed(lambda: _prepare(actor, spec, model_name, device, dtype, batch_size),
                               same=lambda r: r["key"])
    info, frame, split, split_note = ready["info"], ready["frame"], ready["split"], ready["split_note"]
    slice_of, loaded, model_fp, size = ready["slice_of"], ready["loaded"], ready["model_fp"], ready["size"]
    settings, key = ready["settings"], ready["key"]
    if hit := _cached(actor, key, loaded, use_cache):
        progress(len(frame), len(frame), "from cache")
        served = as_cached(hit, model_name, loaded)
        if "contamination" not in (served.details or {}):  # stored before the check existed: run it now (cheap)
            reports, notes = distributed.agreed(lambda: contamination_checks(actor, spec, loaded.entry, frame, split))
            from dataclasses import replace

            served = replace(served, details=with_contamination(served.details or {}, reports),
                             notes=list(served.notes or []) + notes)
        return served
    reports, contamination_notes = distributed.agreed(
        lambda: contamination_checks(actor, spec, loaded.entry, frame, split))
    partial = distributed.partial(key)
    if partial.resumed and log:
        log(f"{model_name} / {spec.name}: resuming, {partial.resumed} outputs already done")
    state = TaskState(spec, loaded, frame, partial, progress, size, loaded.device, actor=actor)
    if split_note:
        state.notes.append(split_note)
    if loaded.head_is_new and spec.type != "speed":
        state.notes.append(f"{model_name}'s {loaded.head} head is newly initialised (seed {spec.seed}): "
                           "its predictions are not meaningful until it is fine-tuned.")
    try:
        out = _run_module(spec, state, partial)
    except BaseException:
        partial.flush()  # keep what was done so a rerun resumes from here
        raise
    add_slices(out["per_example"], slice_of)
    state.notes.extend(contamination_notes)
    seconds = time.time() - t_start
    result = TaskResult(
        key=key, model=model_name, suite=suite.name, suite_version=suite.version, suite_digest=suite.digest(),
        task=spec.name, type=spec.type, status="ok", error=None, metrics=out["metrics"],
        details=with_contamination(out.get("details", {}), reports), headline=out["headline"],
        per_example=out["per_example"],
        intervals=out.get("intervals", {}),
        labels=out.get("labels"), notes=state.notes,
        stats=dict(state.stats, examples=len(frame), seconds=round(seconds, 3),
                   examples_per_s=round(len(frame) / max(seconds, 1e-9), 2), resumed_outputs=partial.resumed),
        seconds=seconds, created_at=time.time(), cached=False,
        repro=Repro(
            model=model_name, model_source=loaded.entry.source, model_location=loaded.entry.location,
            model_fingerprint=model_fp, head=loaded.head, head_is_new=loaded.head_is_new,
            dataset=spec.dataset, dataset_hash=info.content_hash, dataset_fingerprint=info.fingerprint,
            split=split, rows=len(frame), dataset_rows=info.rows, task_definition=spec.definition(),
            task_hash=spec.definition_hash(), suite=suite.name, suite_version=suite.version,
            suite_digest=suite.digest(), seed=spec.seed, settings=settings,
            environment=fingerprint.environment(loaded.device)),
    )
    if distributed.is_main():  # data-parallel: one result, written once
        cache.put(actor, result)
    return result


def lm_eval_needs(prepared) -> caps.Needs:
    """What an lm-eval task needs of a model: scoring when it sends loglikelihood requests (multiple choice,
    perplexity), else text generation (endpoint models too)."""
    return caps.SCORE if prepared.output_types - {"generate_until"} else caps.GENERATE


def run_lm_eval_task(actor: Actor, suite: Suite, spec: TaskSpec, model_name: str, *, use_cache: bool = True,
                     device: str | None = None, dtype: str | None = None, batch_size: int | None = None,
                     progress=None) -> TaskResult:
    """An lm-evaluation-harness task (bench/tasks/lm_eval_task.py) on one model: checked and hashed before the
    model loads (a Hub dataset offline fails here), cached by the model, lm-eval's version, the task's config and
    its data files' content, and run through the inference layer (`bench.lm_eval_model.LabLM`)."""
    from .tasks import lm_eval_task

    t_start = time.time()
    prepared = lm_eval_task.prepare(actor, spec)
    entry = registry.resolve(actor, model_name)
    needs = lm_eval_needs(prepared)
    try:
        head = caps.require_entry(needs, entry)
    except ModelError as exc:
        raise TaskError(str(exc)) from exc
    loaded = registry.load(actor, model_name, head=head, device=device, dtype=dtype)
    model_fp = fingerprint.model_fingerprint(loaded, actor)
    size = default_batch_size(loaded.device, spec.batch_size or batch_size)
    settings = {"device": loaded.device, "dtype": loaded.dtype, "task_version": lm_eval_task.VERSION,
                "lm_eval": prepared.version, "lm_eval_config": prepared.config_hash}
    key = result_key(model_fp, prepared.fingerprint(), spec, settings, actor.workspace, "lm_eval")
    if use_cache and loaded.entry.source != "endpoint" and (hit := cache.get(actor, key)):
        progress(1, 1, "from cache")
        return as_cached(hit, model_name, loaded)
    partial = cache.Partial(key)
    state = TaskState(spec, loaded, None, partial, progress, size, loaded.device, actor=actor)
    try:
        out = lm_eval_task.run(state, prepared)
    except BaseException:
        partial.flush()  # keep the answered requests so a rerun resumes from here
        raise
    seconds = time.time() - t_start
    rows = len(out["per_example"])
    files = ", ".join(f"{Path(p).name} sha256 {d[:12]}" for p, d in prepared.data_files.items())
    result = TaskResult(
        key=key, model=model_name, suite=suite.name, suite_version=suite.version, suite_digest=suite.digest(),
        task=spec.name, type=spec.type, status="ok", error=None, metrics=out["metrics"], details=out["details"],
        headline=out["headline"], per_example=out["per_example"], intervals=out["intervals"], notes=state.notes,
        stats=dict(state.stats, examples=rows, seconds=round(seconds, 3),
                   examples_per_s=round(rows / max(seconds, 1e-9), 2), resumed_outputs=partial.resumed),
        seconds=seconds, created_at=time.time(), cached=False,
        repro=Repro(
            model=model_name, model_source=loaded.entry.source, model_location=loaded.entry.location,
            model_fingerprint=model_fp, head=loaded.head, head_is_new=loaded.head_is_new,
            dataset=f"lm-eval:{prepared.label}", dataset_hash=files or ", ".join(prepared.hub_datasets),
            dataset_fingerprint=prepared.fingerprint(), split="all", rows=rows, dataset_rows=rows,
            task_definition=spec.definition(), task_hash=spec.definition_hash(), suite=suite.name,
            suite_version=suite.version, suite_digest=suite.digest(), seed=spec.seed,
            settings=dict(settings, lm_eval_task_hashes=out["details"]["lm_eval"]["task_hashes"]),
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
    if not distributed.is_main():  # data-parallel: the main process reports (and alone may cancel)
        progress, log = None, None
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
                f"{head.value if head else None}" + (f" ({result.scored})" if result.scored else ""))
        except (JobCancelled, KeyboardInterrupt):
            raise
        except LabError as exc:
            result = _error_result(suite, spec, model, str(exc))
            if distributed.is_main():
                cache.put(actor, result)
            log(f"{label}: error — {exc}")
        except Exception as exc:  # a bug or the machine: this task fails, the suite goes on
            message = failure_message(exc, oom_advice="Out of memory even with batch size 1: use a shorter "
                                                      "max_length or a smaller model.")
            result = _error_result(suite, spec, model, message)
            if distributed.is_main():
                cache.put(actor, result)
            log(f"{label}: failed — {message}\n{traceback.format_exc()}")
        results.append(result)
    if progress:
        progress(len(pairs), len(pairs), "done", force=True)
    if run_id and distributed.is_main():
        cache.record_run(actor, run_id, suite.name, models, [r.key for r in results])
    return results
