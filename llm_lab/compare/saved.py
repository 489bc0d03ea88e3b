"""Saved comparisons: metadata in the store, the full comparison as a JSON file beside it.

Reopen one by id (`get`), or by URL: the Compare page reads `?comparison=<id>`.
"""
import json
import uuid

from .. import paths, store
from ..errors import LabError
from .runs import Comparison

store.register_schema("comparisons", [
    """
    CREATE TABLE comparisons (
        id TEXT PRIMARY KEY, created_at REAL NOT NULL, kind TEXT NOT NULL, title TEXT NOT NULL,
        models TEXT NOT NULL, n_inputs INTEGER NOT NULL, source TEXT, job_id TEXT, path TEXT NOT NULL);
    """,
])


class ComparisonNotFound(LabError):
    pass


def _title(comparison: Comparison) -> str:
    src = comparison.source or {}
    where = f"{src.get('dataset')} ({src.get('split') or 'all'})" if src.get("dataset") else "typed inputs"
    return f"{comparison.kind}: {' vs '.join(comparison.models)} on {len(comparison.inputs)} {where}"


def save(comparison: Comparison, job_id: str | None = None, title: str | None = None) -> str:
    """Store a comparison and return its id (also set as its `id`)."""
    cid = comparison.id or uuid.uuid4().hex[:10]
    comparison.id = cid
    comparison.title = title or comparison.title or _title(comparison)
    path = paths.subdir("comparisons") / f"{cid}.json"
    store.atomic_write_bytes(path, json.dumps(comparison.to_dict(), default=str).encode())
    store.execute(
        "INSERT OR REPLACE INTO comparisons VALUES (?,?,?,?,?,?,?,?,?)",
        (cid, comparison.created_at or store.now(), comparison.kind, comparison.title,
         store.to_json(comparison.models), len(comparison.inputs), store.to_json(comparison.source),
         job_id, str(path)))
    return cid


def get(comparison_id: str) -> Comparison:
    cid = (comparison_id or "").strip()
    row = store.query_one("SELECT path FROM comparisons WHERE id=?", (cid,))
    if row is None:
        raise ComparisonNotFound(f"No saved comparison with id {cid!r}. The Compare page lists the saved ones; "
                                 "a link from another LLM Lab installation does not work here.")
    try:
        with open(row["path"], encoding="utf-8") as handle:
            return Comparison.from_dict(json.load(handle))
    except (OSError, ValueError, TypeError) as exc:
        raise ComparisonNotFound(f"Comparison {cid}'s file {row['path']} cannot be read ({exc}).") from exc


def list_saved(limit: int = 100) -> list[dict]:
    rows = store.query("SELECT * FROM comparisons ORDER BY created_at DESC LIMIT ?", (limit,))
    for r in rows:
        r["models"] = store.from_json(r["models"], [])
        r["source"] = store.from_json(r["source"], {})
    return rows


def delete(comparison_id: str) -> None:
    row = store.query_one("SELECT path FROM comparisons WHERE id=?", (comparison_id,))
    store.execute("DELETE FROM comparisons WHERE id=?", (comparison_id,))
    if row:
        from pathlib import Path

        Path(row["path"]).unlink(missing_ok=True)
