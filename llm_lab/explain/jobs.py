"""Dataset mode as a background job: attribute a sample, score faithfulness, aggregate tokens per class.

Submit with `jobs.submit(actor, JOB_FN, params, title)`; the job reads and loads with the rights of that actor. Each finished
example is appended to `results.jsonl` in the job folder, so a resumed job continues where it stopped.
"""
import json
from collections import defaultdict

import numpy as np

from .. import data, registry
from ..access import Actor
from ..errors import DataError
from . import attributions, faithfulness, specs

JOB_FN = "llm_lab.explain.jobs:attribute_dataset"


def benchmark_errors(actor: Actor, result_key: str) -> dict:
    """The misclassified examples of a finished classification benchmark result: model, dataset, split, ids."""
    from ..bench import cache

    result = cache.load_result(actor, result_key)
    if result is None or not result.ok:
        raise DataError(f"No finished benchmark result {result_key!r}. Run the suite on the Benchmarks page first.")
    if result.type != "classification":
        raise DataError(f"{result.task} is a {result.type} task; only classification results have errors "
                        "to attribute.")
    ids = [str(r["id"]) for r in result.per_example if not r.get("correct", True)]
    if not ids:
        raise DataError(f"{result.model} made no errors on {result.task}: nothing to attribute.")
    repro = result.repro
    split = repro.split if repro and repro.split != "all" else None  # "all": every row was scored
    return {"model": result.model, "dataset": repro.dataset if repro else None, "split": split,
            "ids": ids, "task": result.task, "suite": result.suite}


def attribute_dataset(ctx, model: str | None = None, dataset: str | None = None, methods: list[str] | None = None,
                      n: int = 32, split: str | None = None, baseline: str = "pad", n_steps: int = 32,
                      n_samples: int = 100, seed: int = 0, max_tokens: int | None = None,
                      bench_result: str | None = None) -> dict:
    """Attribute a sample of `dataset`, or (with `bench_result`, a result key) the examples that
    benchmark result got wrong; `model` defaults to the result's model."""
    methods = methods or ["ig"]
    errors = benchmark_errors(ctx.actor, bench_result) if bench_result else None
    if errors:
        model, dataset, split = model or errors["model"], errors["dataset"], errors["split"]
        ctx.log(f"Errors of {errors['model']} on {errors['suite']}/{errors['task']}: {len(errors['ids'])} examples")
    if not model or not dataset:
        raise DataError("Name a model and a dataset (or a benchmark result) to attribute.")
    info = data.get(ctx.actor, dataset)
    data.require(info, "text")
    frame = data.load_frame(ctx.actor, dataset, split)
    if errors:
        frame = frame[frame["id"].astype(str).isin(errors["ids"])]
    if frame.empty:
        raise DataError(f"{dataset} has no rows{' in split ' + split if split else ''}"
                        f"{' with the ids of the benchmark errors (was the dataset replaced?)' if errors else ''}.")
    sample = frame.sample(n=min(n, len(frame)), random_state=seed) if len(frame) > n else frame
    loaded = registry.load_for(ctx.actor, specs.CLASSIFICATION_NEEDS, model)
    path = ctx.workdir / "results.jsonl"
    done = [json.loads(l) for l in path.read_text().splitlines() if l.strip()] if ctx.resume and path.exists() else []
    if not ctx.resume and path.exists():
        path.unlink()
    seen = {r["id"] for r in done}
    total = len(sample) * len(methods)
    ctx.log(f"Attributing {len(sample)} examples of {dataset} with {', '.join(methods)} on {loaded.device}")
    with open(path, "a") as out:
        for k, (_, row) in enumerate(sample.iterrows()):
            if str(row["id"]) in seen:
                continue
            for j, method in enumerate(methods):
                attr = attributions.attribute(loaded, row["text"], method, baseline=baseline, n_steps=n_steps,
                                              n_samples=n_samples, max_tokens=max_tokens, seed=seed)
                faith = faithfulness.for_attribution(loaded, attr)
                rec = {"id": str(row["id"]), "method": method, "label": None if "label" not in row else str(row["label"]),
                       "predicted": attr.target_label, "tokens": attr.tokens, "scores": attr.scores,
                       "special": attr.special, "comprehensiveness": faith["comprehensiveness"],
                       "sufficiency": faith["sufficiency"], "delta": attr.delta}
                out.write(json.dumps(rec) + "\n")
                out.flush()
                done.append(rec)
                ctx.progress(k * len(methods) + j + 1, total, f"example {k + 1}/{len(sample)} · {method}")
    return summarise(done, methods, model=model, dataset=dataset, n=len(sample),
                     source=f"errors of {errors['suite']}/{errors['task']}" if errors else "sample")


def summarise(records: list[dict], methods: list[str], **meta) -> dict:
    """Faithfulness per method with its interval over the examples every method finished (paired), the most
    faithful method when its lead is beyond the noise (else None) and the tokens per class."""
    ranking = faithfulness.rank(example_units(records, methods), faithfulness.EXAMPLES)
    rows = [{**row, "examples": row["n"]} for row in ranking.pop("rows")]
    return {**meta, "faithfulness": rows, "ranking": ranking, "most_faithful": ranking["winner"],
            "class_tokens": {m: aggregate_tokens([r for r in records if r["method"] == m]) for m in methods}}


def example_units(records: list[dict], methods: list[str]) -> dict:
    """{method: {comprehensiveness, sufficiency}} over the examples every method has, in one order: the pairing
    the interval of a lead needs (a resumed or failed example missing for one method is left out for all)."""
    by = {(r["id"], r["method"]): r for r in records}
    present = [m for m in methods if any(r["method"] == m for r in records)]
    ids = [i for i in dict.fromkeys(r["id"] for r in records) if all((i, m) in by for m in present)]
    return {m: {kind: np.array([by[(i, m)][kind] for i in ids], dtype=float)
                for kind in ("comprehensiveness", "sufficiency")} for m in present}


def aggregate_tokens(records: list[dict], top: int = 15, min_count: int = 2) -> dict:
    """{predicted class: [{token, mean, count}]} sorted by mean attribution (tokens seen min_count times)."""
    sums = defaultdict(lambda: defaultdict(list))
    for r in records:
        for tok, s, sp in zip(r["tokens"], r["scores"], r["special"]):
            if not sp:
                sums[r["predicted"]][tok.strip().lower()].append(s)
    out = {}
    for cls, toks in sums.items():
        rows = [{"token": t, "mean": float(np.mean(v)), "count": len(v)} for t, v in toks.items()
                if len(v) >= min_count] or [{"token": t, "mean": float(np.mean(v)), "count": len(v)} for t, v in toks.items()]
        out[cls] = sorted(rows, key=lambda r: -r["mean"])[:top]
    return out
