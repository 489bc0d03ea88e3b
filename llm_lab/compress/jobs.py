"""The background job that makes a variant, so a page need not wait: `submit(...)` queues
`llm_lab.compress.jobs:make`, which calls `make_variant` as the user who submitted it."""
from __future__ import annotations

from ..access import Actor
from .recipes import make_variant, recipe_for

JOB_FN = "llm_lab.compress.jobs:make"


def submit(actor: Actor, parent: str, method: str, params: dict | None = None, name: str | None = None) -> str:
    """Queue the job; returns its id. The parent, the method, its parameters and the name are checked now, in the
    caller: a form says what is wrong at once, not a job that fails after the work."""
    from .. import jobs
    from .save import check_request

    params = check_request(actor, parent, recipe_for(method), params, name)
    title = f"Compress {parent}: {method}" + (f" → {name}" if name else "")
    # the parent and the variant made from it are in memory together
    needs = jobs.Resources.for_device(None, 2 * jobs.inference_memory_gb(actor, [parent]))
    return jobs.submit(actor, JOB_FN, {"parent": parent, "method": method, "params": params, "name": name}, title,
                       resources=needs)


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


CHECK_WORDS = {"argmax_agreement": "the same prediction", "min_cosine": "smallest cosine of the sentence embeddings",
               "max_abs_diff": "largest output difference"}


def describe(result: dict) -> tuple[list[str], float | None]:
    """What a finished make job says to its user, from its result: (lines, the share of sample predictions that
    agree with the parent, None when the recipe does not measure it)."""
    size, parent = result.get("bytes"), result.get("parent_bytes")
    line = f"Made {result['model']}"
    if size:
        line += f": {size / 2**20:.1f} MB of weights"
        if parent:
            line += f", {size / parent:.2f}× the parent's {parent / 2**20:.1f} MB"
    lines = [line + "."]
    checks = dict(result.get("checks") or {})
    if "heads_removed" in checks:
        lines.append(f"{checks.pop('heads_removed')} of {checks.pop('heads_before', '?')} attention heads removed; "
                     f"{checks.pop('parameters', 0) / 1e6:.2f} M parameters (the parent: "
                     f"{checks.pop('parameters_before', 0) / 1e6:.2f} M).")
    agreement = checks.get("argmax_agreement")
    texts = checks.pop("texts", None)
    said = [f"{CHECK_WORDS.get(k, k.replace('_', ' '))} "
            + (f"{v:.1%}" if k == "argmax_agreement" and isinstance(v, (int, float)) else f"{v}")
            for k, v in checks.items()]
    if said:
        lines.append(f"Against {result.get('parent', 'the parent')}" + (f" on {texts} sample texts" if texts else "")
                     + ": " + ", ".join(said) + ".")
    lines += [str(n) for n in result.get("notes") or []]
    return lines, agreement
