"""The background job: a comparison over a dataset sample, with progress, saved at the end."""
from .. import data
from ..access import Actor
from ..errors import DataError
from . import runs, saved

JOB_FN = "llm_lab.compare.jobs:run_comparison"


def sample_inputs(actor: Actor, dataset: str, mode: str, split: str | None = None, limit: int = 50, seed: int = 0) -> list[dict]:
    """Rows of a dataset as comparison inputs: the prompt (or text) column, the reference or gold label."""
    info = data.get(actor, dataset)
    frame = data.load_frame(actor, dataset, split)
    if frame.empty:
        raise DataError(f"{dataset} has no rows in split {split!r}.")
    if mode == "generation":
        column = "prompt" if "prompt" in frame.columns else "text"
        data.require(info, column)
        gold = "reference" if "reference" in frame.columns else None
    else:
        column = "text"
        data.require(info, "text")
        gold = "label" if "label" in frame.columns else None
    frame = frame[frame[column].astype(str).str.strip() != ""]
    if limit and len(frame) > limit:
        frame = frame.sample(n=int(limit), random_state=int(seed)).sort_index()
    texts = frame[column].astype(str).tolist()
    golds = frame[gold].astype(str).tolist() if gold else None
    ids = frame["id"].tolist()
    if mode == "generation":
        return runs.make_inputs(texts, references=golds, ids=ids)
    return runs.make_inputs(texts, labels=golds, ids=ids)


def submit(actor: Actor, mode: str, models: list[str], dataset: str, split: str | None, limit: int, seed: int = 0,
           settings: dict | None = None) -> str:
    from .. import jobs

    runs.check_models(models)
    data.get(actor, dataset)  # fail now, in the page, if it does not exist
    title = f"Compare {', '.join(models)} on {dataset} ({limit} rows)"
    needs = jobs.Resources.for_device(None, jobs.inference_memory_gb(actor, models))  # one model at a time
    return jobs.submit(actor, JOB_FN, {"mode": mode, "models": models, "dataset": dataset, "split": split,
                              "limit": limit, "seed": seed, "settings": settings or {}}, title, resources=needs)


def run_comparison(ctx, models: list[str], dataset: str, split: str | None = None, limit: int = 50,
                   seed: int = 0, settings: dict | None = None, mode: str | None = None, kind: str | None = None) -> dict:
    """The job function; it acts as `ctx.actor`, who submitted it. `kind` is `mode` in jobs queued before the rename."""
    from ..generation import GenerationSettings

    mode = mode or kind or "generation"
    inputs = sample_inputs(ctx.actor, dataset, mode, split, limit, seed)
    ctx.log(f"{len(inputs)} inputs from {dataset}; models: {', '.join(models)}")
    gen_settings = GenerationSettings.from_dict(settings)

    def progress(done, total, message):
        ctx.progress(done, total, message)

    comparison = runs.run(ctx.actor, mode, models, inputs, gen_settings, progress=progress,
                          source={"type": "dataset", "dataset": dataset, "split": split, "limit": limit, "seed": seed,
                                  "fingerprint": data.get(ctx.actor, dataset).fingerprint})
    for name, out in comparison.outputs.items():
        ctx.log(f"{name}: " + (f"failed: {out.error}" if out.error else f"{len(out.rows)} outputs "
                                                                      f"in {out.wall_s:.1f}s"))
    cid = saved.save(ctx.actor, comparison, job_id=ctx.id)
    ctx.progress(1, 1, "Saved as comparison " + cid, force=True)
    return {"comparison_id": cid, "inputs": len(inputs),
            "failed": [m for m, o in comparison.outputs.items() if o.error]}
