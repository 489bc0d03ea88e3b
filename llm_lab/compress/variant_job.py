"""Making a variant as a background job: `submit(actor, parent, method, params, name)` queues `JOB_FN`, which
calls the recipes' `make_variant` (llm_lab/compress/recipes.py) with the job's progress."""
from __future__ import annotations

from ..access import Actor
from ..errors import LabError

JOB_FN = "llm_lab.compress.variant_job:run"


def recipes():
    """The recipes module, or None where it is not installed (the page then offers no methods)."""
    try:
        from . import recipes as module
    except ImportError:
        return None
    return module if hasattr(module, "make_variant") else None


def run(ctx, parent: str, method: str, params: dict | None = None, name: str | None = None) -> dict:
    module = recipes()
    if module is None:
        raise LabError("Making variants needs llm_lab.compress.recipes, which this installation does not have.")

    def progress(done=0, total=1, message="", *args, **kwargs):
        ctx.progress(done, total, message)

    entry = module.make_variant(ctx.actor, parent, method, params or {}, name=name, progress=progress)
    made = getattr(entry, "name", None) or str(entry)
    ctx.log(f"Made {made} from {parent} with {method}")
    return {"model": made, "parent": parent, "method": method, "params": params or {}}


def submit(actor: Actor, parent: str, method: str, params: dict | None = None, name: str | None = None) -> str:
    from .. import jobs

    module = recipes()
    if module is None:
        raise LabError("Making variants needs llm_lab.compress.recipes, which this installation does not have.")
    if hasattr(module, "recipe_for"):  # the method and its parameters checked now, in the page
        params = module.recipe_for(method).resolve(params)
    title = f"Make a {method} variant of {parent}" + (f" named {name}" if name else "")
    return jobs.submit(actor, JOB_FN, {"parent": parent, "method": method, "params": params or {}, "name": name or None},
                       title)
