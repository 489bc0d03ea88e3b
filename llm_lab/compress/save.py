"""Make a variant and register it, crash-safely, the way trained models are saved (`train.export`).

The recipe writes into a staging folder under the workspace's models folder; then, in one transaction, the
folder moves into place and its registry row is written (`train.export.register_staged`, as for a trained
model), so a half-made variant is never listed and a save killed midway is swept or reclaimed by the next save.
"""
from __future__ import annotations

import time

from .. import capabilities, hf_card, paths, registry, store
from ..access import Actor
from ..train import export
from . import common
from .recipes import Recipe, check_applies, cli_flags, default_name

VARIANT_FILE = "llm_lab_variant.json"


def check_request(actor: Actor, parent: str, recipe: Recipe, params: dict | None, name: str | None,
                  load_head: bool = False) -> dict:
    """What can be refused before any work (the job's submit and its start both ask): the right to write, the
    parameters (returned resolved), a parent whose weights are here (not an endpoint, not an ONNX graph), the
    recipe applying to its head, and a name the user typed being well formed and free. `load_head`: open the
    parent when its registry head is not one of the heads (a job may; a page's submit does not load models)."""
    actor.require("write", "make model variants")
    params = recipe.resolve(params)
    entry = registry.resolve(actor, parent)
    common.check_parent(entry)
    head = entry.head if entry.head in capabilities.HEADS else (
        common.load_parent(actor, parent).head if load_head else None)
    if head is not None:
        check_applies(recipe, parent, head)
    if name:
        registry.check_name(name)
        export.check_name_free(actor, name)
    return params


def make(actor: Actor, parent: str, recipe: Recipe, params: dict | None, name: str | None, progress=None):
    params = check_request(actor, parent, recipe, params, name, load_head=True)
    progress = progress or (lambda *args, **kwargs: None)
    name = name or free_name(actor, default_name(parent, recipe.method, params))
    export.check_name_free(actor, name)
    progress(0, 1, f"loading {parent}")
    loaded = common.load_parent(actor, parent)
    meta = {"recipe": {"method": recipe.method, "params": params}, "parent_fingerprint": fingerprint(actor, loaded),
            "parent_bytes": common.model_bytes(actor, parent)}
    with store.staged_dir(paths.workspace_dir("models", actor.workspace), name) as tmp:
        meta.update(recipe.run(actor, parent, params, tmp, progress))
        meta["bytes"] = common.weights_bytes(tmp)
        (tmp / "README.md").write_text(hf_card.render(card_facts(actor, name, parent, recipe, meta, loaded)))
        common.write_json(tmp / VARIANT_FILE, meta)
        registry.check_folder(tmp)
        variant = registry.ModelEntry(name, "trained", "", loaded.head, parent=parent,
                                      labels=list(loaded.labels) or None, meta=meta)
        export.register_staged(actor, tmp, variant)
    registry.forget(name)
    progress(1, 1, f"registered {name}")
    return variant


def free_name(actor: Actor, name: str) -> str:
    """`name`, or name-2, name-3, … when it is taken (default names only: a name the user typed is refused)."""
    taken = {e.name for e in registry.list_models(actor) if e.workspace in (None, actor.workspace)}
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}-{n}"
    return candidate


def fingerprint(actor: Actor, loaded) -> str:
    from ..bench.fingerprint import model_fingerprint

    return model_fingerprint(loaded, actor)


def card_facts(actor: Actor, name: str, parent: str, recipe: Recipe, meta: dict, loaded) -> hf_card.CardFacts:
    """The Hugging Face card's facts (`hf_card`): licence and Hub base from the parent, LLM Lab's card as record."""
    from .. import model_files

    entry = registry.ModelEntry(name, "trained", "", loaded.head, parent=parent)
    details = model_card(name, parent, recipe, meta).split("\n", 1)[1]  # without its title: the card has one
    details = "\n".join("#" + line if line.startswith("## ") else line for line in details.splitlines())
    return hf_card.facts_from_variant(name, loaded.head, parent, meta, title=recipe.title, description="",
                                      labels=list(loaded.labels) or None, base_model=model_files.hub_base(actor, parent),
                                      licence=model_files.licence_of(actor, entry), details=details)


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


def model_card(name: str, parent: str, recipe: Recipe, meta: dict) -> str:
    params = meta["recipe"]["params"]
    lines = [f"# {name}", "", (f"A {recipe.title} variant of `{parent}`, made by LLM Lab on "
                               f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}."), "", recipe.description, "",
             "| | |", "|---|---|", f"| parent | `{parent}` (fingerprint `{meta['parent_fingerprint']}`) |",
             f"| method | {recipe.method} |"]
    lines += [f"| {k} | {v} |" for k, v in params.items() if v is not None]
    lines.append(f"| weights on disk | {_mb(meta['bytes'])} (parent {_mb(meta['parent_bytes'])}) |")
    lines += [f"| check: {k} | {v} |" for k, v in (meta.get("checks") or {}).items()]
    lines += [f"| note | {n} |" for n in meta.get("notes") or []]
    lines += ["", "## Rebuild", "", "```bash",
              f"python -m llm_lab compress make {parent} --method {recipe.method} {cli_flags(params)} --name {name}",
              "```", "", "The same recipe on the same parent gives the same weights.", ""]
    return "\n".join(lines)
