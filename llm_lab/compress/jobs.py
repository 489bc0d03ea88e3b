"""The background job that makes a variant, so a page need not wait: `submit(...)` queues
`llm_lab.compress.jobs:make`, which calls `make_variant` as the user who submitted it."""
from __future__ import annotations

from ..access import Actor
from .recipes import make_variant, recipe_for

JOB_FN = "llm_lab.compress.jobs:make"


def submit(actor: Actor, parent: str, method: str, params: dict | None = None, name: str | None = None) -> str:
    """Queue the job; returns its id. The method, its parameters, the name and the parent (one the actor can
    open, with weights here) are checked now, in the caller."""
    from .. import jobs, registry
    from .common import check_parent

    actor.require("write", "make model variants")
    params = recipe_for(method).resolve(params)
    if name is not None:
        registry.check_name(name)
    check_parent(registry.resolve(actor, parent))
    title = f"Compress {parent}: {method}" + (f" → {name}" if name else "")
    return jobs.submit(actor, JOB_FN, {"parent": parent, "method": method, "params": params, "name": name}, title)


def make(ctx, parent: str, method: str, params: dict | None = None, name: str | None = None) -> dict:
    """The job function: the variant made and registered; its name, sizes and checks are the job's result."""
    def progress(done, total, message="", **_):
        ctx.progress(done, total, message)

    entry = make_variant(ctx.actor, parent, method, params, name=name, progress=progress)
    meta = entry.meta
    ctx.log(f"registered {entry.name} ({meta['bytes']} bytes of weights; parent {meta['parent_bytes']}); "
            f"checks: {meta.get('checks')}")
    return {"model": entry.name, "parent": parent, "method": method, "bytes": meta["bytes"],
            "parent_bytes": meta["parent_bytes"], "checks": meta.get("checks"), "notes": meta.get("notes")}
