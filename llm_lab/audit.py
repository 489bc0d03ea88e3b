"""The audit log: who did what, when, in which workspace. Append-only.

The backend records the actions that matter (sign-in, upload, delete, train, benchmark, share, revoke,
role and settings changes) where they happen, so the pages, the CLI and the jobs leave the same trail.
Triggers in the database refuse UPDATE and DELETE on the log: not even an admin rewrites it.
"""
from __future__ import annotations

from datetime import datetime, timezone

from . import csv_safe, store
from .errors import LabError

store.register_schema("audit", [
    """
    CREATE TABLE audit_log (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, "user" TEXT NOT NULL,
        action TEXT NOT NULL, target TEXT NOT NULL DEFAULT '', workspace TEXT NOT NULL DEFAULT '',
        detail TEXT NOT NULL DEFAULT '{}');
    CREATE INDEX audit_at ON audit_log(at);
    CREATE INDEX audit_user ON audit_log("user", at);
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit_log BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit_log BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END
    """,
])

COLUMNS = ["at", "user", "action", "target", "workspace", "detail"]


def record(actor, action: str, target: str = "", detail: dict | None = None, workspace: str | None = None) -> None:
    """Append one entry. `actor` is an access.Actor (or a plain user name for events before one exists)."""
    user = getattr(actor, "user", None) or str(actor)
    ws = workspace if workspace is not None else getattr(actor, "workspace", "")
    store.execute('INSERT INTO audit_log (at, "user", action, target, workspace, detail) VALUES (?, ?, ?, ?, ?, ?)',
                  (store.now(), user, action, str(target), ws, store.to_json(detail or {})))


def parse_since(text: str | None) -> float | None:
    """'2026-11-01', '2026-11-01T12:00', or a relative '7d' / '12h' / '30m' -> a timestamp."""
    if not text:
        return None
    text = text.strip()
    units = {"d": 86400, "h": 3600, "m": 60}
    if text[-1:] in units and text[:-1].isdigit():
        return store.now() - int(text[:-1]) * units[text[-1]]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise LabError(f"--since {text!r}: give a date (2026-11-01), a date and time (2026-11-01T12:00) "
                       "or a span back from now (7d, 12h, 30m).") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def entries(actor, user: str | None = None, since: float | None = None, action: str | None = None,
            workspace: str | None = None, limit: int = 5000) -> list[dict]:
    """The newest entries first, filtered; admins only."""
    actor.require("admin", "read the audit log")
    where, args = ["1=1"], []
    if user:
        where.append('"user" = ?')
        args.append(user.strip().lower())  # addresses are stored lower-case
    if workspace:
        where.append("workspace = ?")
        args.append(workspace.strip())
    if action:  # "dataset" finds dataset.upload and dataset.delete; typed text is never a pattern
        action = action.strip()
        where.append("(action = ? OR substr(action, 1, ?) = ?)")
        args += [action, len(action) + 1, action + "."]
    if since is not None:
        where.append("at >= ?")
        args.append(since)
    rows = store.query(f"SELECT * FROM audit_log WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
                       (*args, int(limit)))
    for row in rows:
        row["time"] = datetime.fromtimestamp(row["at"], timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return rows


def to_csv(rows: list[dict]) -> str:
    """The rows as CSV, safe to open in a spreadsheet (targets and details hold names anyone typed)."""
    return csv_safe.rows_to_csv(["time"] + COLUMNS, ([row.get("time")] + [row.get(c) for c in COLUMNS]
                                                     for row in rows))
