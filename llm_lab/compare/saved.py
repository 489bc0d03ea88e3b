"""Saved comparisons: metadata in the store, the full comparison as a JSON file beside it.

Reopen one by id (`get`), or by URL: the Compare page reads `?comparison=<id>`.
"""
import json
import uuid

from .. import access, paths, store
from ..access import Actor, scope
from ..errors import LabError
from .runs import Comparison

store.register_schema("comparisons", [
    """
    CREATE TABLE comparisons (
        id TEXT PRIMARY KEY, created_at REAL NOT NULL, kind TEXT NOT NULL, title TEXT NOT NULL,
        models TEXT NOT NULL, n_inputs INTEGER NOT NULL, source TEXT, job_id TEXT, path TEXT NOT NULL);
    """,
    access.owned_columns("comparisons"),
])
# The `kind` column holds the comparison's mode ("generation"/"classification"); it keeps its old name
# in the store (rows read by `list_saved` call it `mode`).


class ComparisonNotFound(LabError):
    pass


def _title(comparison: Comparison) -> str:
    src = comparison.source or {}
    where = f"{src.get('dataset')} ({src.get('split') or 'all'})" if src.get("dataset") else "typed inputs"
    return f"{comparison.mode}: {' vs '.join(comparison.models)} on {len(comparison.inputs)} {where}"


def save(actor: Actor, comparison: Comparison, job_id: str | None = None, title: str | None = None) -> str:
    """Store a comparison in the actor's workspace and return its id (also set as its `id`)."""
    actor.require("run", "save comparisons")
    cid = comparison.id or uuid.uuid4().hex[:10]
    comparison.id = cid
    comparison.title = title or comparison.title or _title(comparison)
    path = paths.subdir("comparisons") / f"{cid}.json"
    store.atomic_write_bytes(path, json.dumps(comparison.to_dict(), default=str).encode())
    scope(actor).insert("comparisons", dict(
        id=cid, created_at=comparison.created_at or store.now(), kind=comparison.mode, title=comparison.title,
        models=store.to_json(comparison.models), n_inputs=len(comparison.inputs),
        source=store.to_json(comparison.source), job_id=job_id, path=str(path)), action="run", replace=True)
    return cid


def get(actor: Actor, comparison_id: str) -> Comparison:
    cid = (comparison_id or "").strip()
    row = scope(actor).one("comparisons", "id=?", (cid,), columns="path")
    if row is None:
        raise ComparisonNotFound(f"No saved comparison with id {cid!r}. The Compare page lists the saved ones; "
                                 "a link from another LLM Lab installation does not work here.")
    try:
        with open(row["path"], encoding="utf-8") as handle:
            return Comparison.from_dict(json.load(handle))
    except (OSError, ValueError, TypeError) as exc:
        raise ComparisonNotFound(f"Comparison {cid}'s file {row['path']} cannot be read ({exc}).") from exc


def list_saved(actor: Actor, limit: int = 100) -> list[dict]:
    rows = scope(actor).select("comparisons", order="created_at DESC", limit=limit)
    for r in rows:
        r["models"] = store.from_json(r["models"], [])
        r["source"] = store.from_json(r["source"], {})
        r["mode"] = r.pop("kind")
    return rows


def delete(actor: Actor, comparison_id: str) -> None:
    """Delete a saved comparison and its file. An id the actor cannot see (unknown, or of another workspace)
    is "not found", the answer `load` gives: never a silent success that deleted nothing."""
    row = scope(actor).one("comparisons", "id=?", (comparison_id,), columns="path")
    if row is None:
        raise ComparisonNotFound(f"No saved comparison with id {comparison_id!r}. The Compare page lists the saved "
                                 "ones.")
    if not scope(actor).delete("comparisons", "id=?", (comparison_id,)):
        raise access.PermissionDenied(f"{actor.user} may not delete comparison {comparison_id}: only its creator "
                                      "or an admin can.")
    from pathlib import Path

    Path(row["path"]).unlink(missing_ok=True)
