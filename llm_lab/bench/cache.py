"""Results in the store, keyed by (model fingerprint, dataset fingerprint, task definition, settings),
and partial per-example outputs on disk so an interrupted task resumes where it stopped."""
from __future__ import annotations

import json
import time
from pathlib import Path

from .. import access, paths, store
from ..access import Actor, scope
from .result import TaskResult

store.register_schema("bench", [
    """
    CREATE TABLE bench_results (
        key TEXT PRIMARY KEY, model TEXT NOT NULL, suite TEXT NOT NULL, task TEXT NOT NULL, type TEXT NOT NULL,
        status TEXT NOT NULL, headline_name TEXT, headline REAL, low REAL, high REAL, error TEXT,
        created_at REAL NOT NULL, seconds REAL, summary TEXT NOT NULL);
    CREATE INDEX bench_results_suite ON bench_results(suite, model, task);
    CREATE TABLE bench_runs (
        id TEXT PRIMARY KEY, suite TEXT NOT NULL, models TEXT NOT NULL, keys TEXT NOT NULL, created_at REAL NOT NULL);
    """,
    access.owned_columns("bench_results") + ";" + access.owned_columns("bench_runs"),
    # a key is a fingerprint of the computation, so two workspaces can compute the same one: each keeps its own
    # result (an INSERT OR REPLACE keyed by the key alone took the row away from the workspace that had it)
    """
    CREATE TABLE bench_results_by_workspace (
        key TEXT NOT NULL, model TEXT NOT NULL, suite TEXT NOT NULL, task TEXT NOT NULL, type TEXT NOT NULL,
        status TEXT NOT NULL, headline_name TEXT, headline REAL, low REAL, high REAL, error TEXT,
        created_at REAL NOT NULL, seconds REAL, summary TEXT NOT NULL,
        workspace TEXT NOT NULL DEFAULT 'default', created_by TEXT NOT NULL DEFAULT 'local',
        PRIMARY KEY (workspace, key));
    INSERT INTO bench_results_by_workspace (key, model, suite, task, type, status, headline_name, headline, low, high,
        error, created_at, seconds, summary, workspace, created_by)
        SELECT key, model, suite, task, type, status, headline_name, headline, low, high, error, created_at, seconds,
            summary, workspace, created_by FROM bench_results;
    DROP TABLE bench_results;
    ALTER TABLE bench_results_by_workspace RENAME TO bench_results;
    CREATE INDEX bench_results_suite ON bench_results(suite, model, task);
    CREATE INDEX bench_results_workspace ON bench_results(workspace)
    """,
])


def results_dir(workspace: str = access.DEFAULT_WORKSPACE) -> Path:
    """Result files: bench/results for the default workspace (as before workspaces), bench/results/@<workspace>
    for another (paths.workspace_dir), so a result of one workspace never overwrites another's."""
    return paths.workspace_dir("bench/results", workspace)


def partial_dir() -> Path:
    return paths.subdir("bench", "partial")


def get(actor: Actor, key: str) -> TaskResult | None:
    """A finished result (with per-example rows) the actor can see, or None."""
    row = _row(actor, key, "status='ok'")
    if row is None or not (path := results_dir(row["workspace"]) / f"{key}.json").exists():
        return None
    return TaskResult.from_dict(json.loads(path.read_text()))


def put(actor: Actor, result: TaskResult) -> None:
    """Store a result in the actor's workspace: the full JSON (per-example rows included) in a file, the
    summary in the store. Results are written by jobs, so it takes the "run" right, not "write".

    Errors are stored too (so the leaderboard can show them) but are never served from the cache."""
    actor.require("run", "run benchmarks")
    key = result.key
    store.atomic_write_bytes(results_dir(actor.workspace) / f"{key}.json",
                             json.dumps(result.to_dict(), default=str).encode())
    head = result.headline
    scope(actor).insert("bench_results", dict(
        key=key, model=result.model, suite=result.suite, task=result.task, type=result.type, status=result.status,
        headline_name=head and head.name, headline=head and head.value, low=head and head.low,
        high=head and head.high, error=result.error, created_at=result.created_at or time.time(),
        seconds=result.seconds, summary=store.to_json(result.to_dict(per_example=False))), action="run", replace=True)
    clear_partial(key)


def load_result(actor: Actor, key: str) -> TaskResult | None:
    """A stored result (ok or error, with per-example rows) the actor can see, or None."""
    row = _row(actor, key)
    if row is None:
        return None
    path = results_dir(row["workspace"]) / f"{key}.json"
    return TaskResult.from_dict(json.loads(path.read_text())) if path.exists() else None


def _row(actor: Actor, key: str, where: str = "1=1") -> dict | None:
    """The result row `key` the actor sees, its current workspace's first."""
    rows = scope(actor).select("bench_results", f"key=? AND {where}", (key,), columns="key, workspace")
    return next((r for r in rows if r["workspace"] == actor.workspace), rows[0] if rows else None)


def record_run(actor: Actor, run_id: str, suite: str, models: list[str], keys: list[str]) -> None:
    scope(actor).insert("bench_runs", dict(id=run_id, suite=suite, models=store.to_json(models),
                                           keys=store.to_json(keys), created_at=time.time()),
                        action="run", replace=True)


def _decode_run(row: dict) -> dict:
    """A run row with its lists, and `key_models`: the model each key was run for. A run is every task on
    every model, model by model (runner.plan), so key i belongs to models[i // tasks]; a result served from
    the cache for another model with the same weights is shown under this one's name."""
    row["models"], row["keys"] = store.from_json(row["models"], []), store.from_json(row["keys"], [])
    models, keys = row["models"], row["keys"]
    per = len(keys) // len(models) if models and keys and len(keys) % len(models) == 0 else 0
    row["key_models"] = [models[i // per] for i in range(len(keys))] if per else [None] * len(keys)
    return row


def runs(actor: Actor, limit: int = 50) -> list[dict]:
    return [_decode_run(r) for r in scope(actor).select("bench_runs", order="created_at DESC", limit=limit)]


def get_run(actor: Actor, run_id: str) -> dict | None:
    """One benchmark run the actor can see (also one older than `runs` lists), or None."""
    row = scope(actor).one("bench_runs", "id=?", (run_id,))
    return _decode_run(row) if row else None


def summaries(actor: Actor, keys: list[str] | None = None, suite: str | None = None) -> list[TaskResult]:
    """Stored results the actor can see, without their per-example rows."""
    sc = scope(actor)
    if keys is not None:
        if not keys:
            return []
        marks = ",".join("?" * len(keys))
        rows = sc.select("bench_results", f"key IN ({marks})", tuple(keys), columns="summary")
    elif suite:
        rows = sc.select("bench_results", "suite=?", (suite,), order="created_at", columns="summary")
    else:
        rows = sc.select("bench_results", order="created_at", columns="summary")
    return [TaskResult.from_dict(store.from_json(r["summary"])) for r in rows]


class Partial:
    """Per-example outputs of an unfinished task, flushed to disk every few seconds (atomic writes).

    Outputs are keyed by example position, so a resumed run skips them whatever its batch size."""

    def __init__(self, key: str, flush_every: float = 2.0):
        self.path = partial_dir() / f"{key}.json"
        self.flush_every = flush_every
        self._last = time.time()
        self.outputs: dict[int, object] = {}
        if self.path.exists():
            try:
                self.outputs = {int(k): v for k, v in json.loads(self.path.read_text()).items()}
            except (OSError, ValueError):
                self.outputs = {}
        self.resumed = len(self.outputs)

    def add(self, positions, values) -> None:
        for p, v in zip(positions, values):
            self.outputs[int(p)] = v
        if time.time() - self._last >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        self._last = time.time()
        store.atomic_write_bytes(self.path, json.dumps({str(k): v for k, v in self.outputs.items()}).encode())

    def missing(self, n: int) -> list[int]:
        return [i for i in range(n) if i not in self.outputs]


def clear_partial(key: str) -> None:
    (partial_dir() / f"{key}.json").unlink(missing_ok=True)
