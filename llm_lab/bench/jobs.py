"""The background job: `jobs.submit(actor, suite_text, models)`, which queues `JOB_FN` with
`{"suite_text": ..., "models": [...]}`. The job runs with the rights of the actor who submitted it."""
from __future__ import annotations

from ..access import Actor
from . import suite as suites

JOB_FN = "llm_lab.bench.jobs:run"


def run(ctx, suite_text: str, models: list[str], use_cache: bool = True, device: str | None = None,
        batch_size: int | None = None, limit: int | None = None) -> dict:
    """Runs every task on every model; finished tasks come from the cache, interrupted ones resume."""
    from . import runner

    suite = suites.parse(suite_text, "job")
    if ctx.resume:
        ctx.log("Resuming: finished tasks come from the cache, unfinished ones from their saved outputs.")
    results = runner.run_suite(ctx.actor, suite, models, use_cache=use_cache, device=device, batch_size=batch_size,
                               progress=ctx.progress, log=ctx.log, run_id=ctx.id, limit=limit)
    failed = [f"{r.label}: {r.error}" for r in results if not r.ok]
    return {"suite": suite.name, "models": models, "keys": [r.key for r in results],
            "ok": len(results) - len(failed), "failed": failed}


def submit(actor: Actor, suite_text: str, models: list[str], use_cache: bool = True, batch_size: int | None = None,
           limit: int | None = None) -> str:
    from .. import jobs

    suite = suites.parse(suite_text, "the suite")
    if not models:
        raise suites.SuiteError("Pick at least one model to benchmark.")
    title = f"Benchmark {suite.name} on {', '.join(models)}" + (f" (≤ {limit} examples per task)" if limit else "")
    # evaluated one model at a time, on a GPU when a GPU worker is up (the runner picks the device)
    needs = jobs.Resources.for_device(None, jobs.inference_memory_gb(actor, list(models)))
    return jobs.submit(actor, JOB_FN, {"suite_text": suite_text, "models": list(models), "use_cache": use_cache,
                                       "batch_size": batch_size, "limit": limit or None}, title, resources=needs)


def keys_of(actor: Actor, job: dict) -> list[str]:
    """The result keys of a benchmark job (finished, or partly done: from the run record or the store)."""
    if job.get("result") and job["result"].get("keys"):
        return job["result"]["keys"]
    from . import cache

    for run in cache.runs(actor, 200):
        if run["id"] == job["id"]:
            return run["keys"]
    return []
