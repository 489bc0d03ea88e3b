"""Results in the store, keyed by (model fingerprint, dataset fingerprint, task definition, settings),
and partial per-example outputs on disk so an interrupted task resumes where it stopped."""
from __future__ import annotations

import json
import time
from pathlib import Path

from .. import paths, store
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
])


def results_dir() -> Path:
    return paths.subdir("bench", "results")


def partial_dir() -> Path:
    return paths.subdir("bench", "partial")


def get(key: str) -> TaskResult | None:
    """A finished result (with per-example rows), or None."""
    row = store.query_one("SELECT key FROM bench_results WHERE key=? AND status='ok'", (key,))
    path = results_dir() / f"{key}.json"
    if row is None or not path.exists():
        return None
    return TaskResult.from_dict(json.loads(path.read_text()))


def put(result: TaskResult) -> None:
    """Store a result: the full JSON (per-example rows included) in a file, the summary in the store.

    Errors are stored too (so the leaderboard can show them) but are never served from the cache."""
    key = result.key
    store.atomic_write_bytes(results_dir() / f"{key}.json", json.dumps(result.to_dict(), default=str).encode())
    head = result.headline
    store.execute(
        "INSERT OR REPLACE INTO bench_results VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (key, result.model, result.suite, result.task, result.type, result.status, head and head.name,
         head and head.value, head and head.low, head and head.high, result.error, result.created_at or time.time(),
         result.seconds, store.to_json(result.to_dict(per_example=False))))
    clear_partial(key)


def load_result(key: str) -> TaskResult | None:
    path = results_dir() / f"{key}.json"
    return TaskResult.from_dict(json.loads(path.read_text())) if path.exists() else None


def record_run(run_id: str, suite: str, models: list[str], keys: list[str]) -> None:
    store.execute("INSERT OR REPLACE INTO bench_runs VALUES (?,?,?,?,?)",
                  (run_id, suite, store.to_json(models), store.to_json(keys), time.time()))


def runs(limit: int = 50) -> list[dict]:
    rows = store.query("SELECT * FROM bench_runs ORDER BY created_at DESC LIMIT ?", (limit,))
    for r in rows:
        r["models"], r["keys"] = store.from_json(r["models"], []), store.from_json(r["keys"], [])
    return rows


def summaries(keys: list[str] | None = None, suite: str | None = None) -> list[TaskResult]:
    """Stored results without their per-example rows."""
    if keys is not None:
        if not keys:
            return []
        marks = ",".join("?" * len(keys))
        rows = store.query(f"SELECT summary FROM bench_results WHERE key IN ({marks})", tuple(keys))
    elif suite:
        rows = store.query("SELECT summary FROM bench_results WHERE suite=? ORDER BY created_at", (suite,))
    else:
        rows = store.query("SELECT summary FROM bench_results ORDER BY created_at")
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
