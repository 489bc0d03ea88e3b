"""Share links: a random token that opens a frozen, content-hashed snapshot of a result.

An editor shares what a page shows (a benchmark run, a comparison, an attribution view, a training run) as
a *snapshot*: a plain dict in one generic format that one viewer (views/shared.py) renders for every kind
(`snapshots.py` builds them from the results):

    {"kind": "benchmark", "title": "...", "created": "2026-11-23T10:00:00+00:00",
     "text": ["a line", ...],                                   # shown as plain text, never as markup
     "tables": [{"title": "...", "columns": [...], "rows": [[...], ...]}],
     "figures": [<plotly figure JSON>, ...],
     "meta": {...}}                                             # ids, settings, fingerprints

Frozen and content-addressed: the snapshot is written once as canonical JSON (sorted keys, no NaN) to
`shares/<sha256>.json` and the link's row keeps that hash; opening a link reads the file back and refuses
it when its bytes no longer hash to what the row says (a file changed on disk). Later changes to the
result (a re-run, a deleted comparison) do not change what a link shows.

The token: `secrets.token_urlsafe(24)` (192 random bits). The database keeps only its sha256, so a copy of
the database (a backup, a leak) opens no link; the price is that the address is shown once, when the link
is created, and cannot be shown again (the list shows the link's id, its title, its status and views; a
lost address is revoked and shared again). 192 random bits need no salt or slow hash.

Who opens what: a link is for sharing *beyond* the workspace (the point of sharing), so any signed-in user
of the server who may read (viewer, editor, admin; not a pending account) opens a live link, whatever
their workspaces; the token is the permission, and what it shows is only the frozen snapshot the editor
chose to share, never live workspace data. Without sign-in (`actor=None`) only a *public* link opens, and
only while the `public_links` setting is on: creating a public link is refused when it is off, and turning
it off later closes existing public links to anonymous visitors (signed-in users still open them).
Unknown, revoked and expired tokens all get the same `ShareNotFound` message, so a visitor cannot tell
which. Listing and revoking go through `access.scope`: an editor sees and revokes their own links, an
admin every link in the workspaces they see. Creating and revoking are audited (share.create,
share.revoke).
"""
from __future__ import annotations

import hashlib
import json
import math
import secrets
import uuid
from datetime import date, datetime, timezone

from . import audit, paths, settings, store
from . import access
from .access import SYSTEM, Actor, scope
from .errors import LabError

KINDS = {"benchmark": "Benchmark", "comparison": "Comparison", "attribution": "Attribution",
         "training": "Training run", "result": "Result"}
SNAPSHOT_KEYS = ("kind", "title", "created", "text", "tables", "figures", "meta")
MAX_SNAPSHOT_BYTES = 20 * 1024 * 1024
MAX_DAYS = 3650
DAY = 86400.0
NOT_FOUND = ("This share link does not exist, was revoked or has expired. Ask whoever shared it for a new "
             "link.")

store.register_schema("shares", [
    """
    CREATE TABLE shares (
        id TEXT PRIMARY KEY,                -- what lists, the CLI and the audit log name; not a secret
        token_hash TEXT NOT NULL UNIQUE,    -- sha256 of the token: the token itself is never stored
        kind TEXT NOT NULL, title TEXT NOT NULL,
        snapshot TEXT NOT NULL,             -- sha256 of the snapshot's canonical JSON: shares/<hash>.json
        public INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL, expires_at REAL, revoked_at REAL, revoked_by TEXT,
        views INTEGER NOT NULL DEFAULT 0, last_viewed_at REAL);
    CREATE INDEX shares_snapshot ON shares(snapshot)
    """,
    access.owned_columns("shares"),
])


class ShareError(LabError):
    pass


class ShareNotFound(ShareError):
    """One message for an unknown, revoked or expired token: a visitor cannot tell which."""

    def __init__(self, message: str = NOT_FOUND):
        super().__init__(message)


class SnapshotTampered(ShareError):
    pass


# ---------------------------------------------------------------- snapshots: canonical JSON, hash, file
def jsonable(value):
    """`value` as JSON-able plain data: numpy and pandas scalars unwrapped, NaN and infinities as None,
    dates as ISO text, tuples as lists, anything else as its text."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return jsonable(value.tolist())
    if hasattr(value, "isoformat"):  # pandas Timestamp
        return value.isoformat()
    if hasattr(value, "item"):
        return jsonable(value.item())
    return str(value)


def check_snapshot(snapshot: dict) -> dict:
    """The snapshot in the generic format (missing lists filled in), or ShareError saying what is wrong."""
    if not isinstance(snapshot, dict):
        raise ShareError("A snapshot is a dict with kind, title, text, tables, figures and meta.")
    unknown = set(snapshot) - set(SNAPSHOT_KEYS)
    if unknown:
        raise ShareError(f"Unknown snapshot keys {sorted(unknown)}; a snapshot has {', '.join(SNAPSHOT_KEYS)}.")
    snap = jsonable({"text": [], "tables": [], "figures": [], "meta": {}, **snapshot})
    if snap.get("kind") not in KINDS:
        raise ShareError(f"Unknown snapshot kind {snap.get('kind')!r}; one of: {', '.join(KINDS)}.")
    if not isinstance(snap.get("title"), str) or not snap["title"].strip():
        raise ShareError("A snapshot needs a title.")
    snap["created"] = snap.get("created") or datetime.now(timezone.utc).isoformat(timespec="seconds")
    if not isinstance(snap["text"], list) or not all(isinstance(t, str) for t in snap["text"]):
        raise ShareError("A snapshot's text is a list of strings.")
    if not isinstance(snap["meta"], dict):
        raise ShareError("A snapshot's meta is a dict.")
    if not isinstance(snap["tables"], list):
        raise ShareError("A snapshot's tables are a list.")
    for i, table in enumerate(snap["tables"]):
        if not isinstance(table, dict) or not isinstance(table.get("columns"), list) \
                or not isinstance(table.get("rows"), list):
            raise ShareError(f"Table {i + 1} of the snapshot needs columns and rows (lists).")
        table.setdefault("title", "")
        width = len(table["columns"])
        if any(not isinstance(row, list) or len(row) != width for row in table["rows"]):
            raise ShareError(f"Table {i + 1} ({table['title']!r}): every row needs {width} cells, one per column.")
    if not isinstance(snap["figures"], list) or not all(isinstance(f, dict) and isinstance(f.get("data", []), list)
                                                          for f in snap["figures"]):
        raise ShareError("A snapshot's figures are Plotly figure dicts (with data and layout).")
    return snap


def canonical(snapshot: dict) -> bytes:
    """The one byte form of a snapshot whose sha256 names it: sorted keys, compact, UTF-8, no NaN."""
    return json.dumps(snapshot, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _token_hash(token: str) -> str:
    return hashlib.sha256(str(token).encode("utf-8")).hexdigest()


def snapshot_path(snapshot_hash: str):
    if len(snapshot_hash) != 64 or any(c not in "0123456789abcdef" for c in snapshot_hash):
        raise ShareError(f"Not a snapshot hash: {snapshot_hash!r}.")
    return paths.subdir("shares") / f"{snapshot_hash}.json"


def _write_snapshot(data: bytes) -> str:
    """Store `data` under its hash (once: the same snapshot shared twice is one file)."""
    snapshot_hash = digest(data)
    path = snapshot_path(snapshot_hash)
    if not (path.exists() and digest(path.read_bytes()) == snapshot_hash):
        store.atomic_write_bytes(path, data)
    return snapshot_hash


def read_snapshot(snapshot_hash: str) -> dict:
    """The stored snapshot, checked against its hash: a file changed on disk is refused."""
    path = snapshot_path(snapshot_hash)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SnapshotTampered("This shared snapshot's file is missing from the server, so it cannot be shown. "
                               "Ask whoever shared it to share it again.") from None
    if digest(data) != snapshot_hash:
        raise SnapshotTampered("This shared snapshot was changed on the server after it was shared (its content "
                               "no longer matches its hash), so it is not shown. Ask whoever shared it to share "
                               "it again.")
    return json.loads(data)


# ---------------------------------------------------------------- links
def _status(row: dict, now: float) -> str:
    if row["revoked_at"] is not None:
        return "revoked"
    if row["expires_at"] is not None and row["expires_at"] <= now:
        return "expired"
    return "active"


def create(actor: Actor, kind: str, title: str, snapshot: dict, expires_in_days: float | None = None,
           public: bool = False, now: float | None = None) -> str:
    """Share `snapshot` and return the link's token (shown once: only its hash is stored).

    Needs the "write" permission (editors and admins). `expires_in_days`: None or 0 for a link that does
    not expire. `public`: opens without sign-in; refused unless an admin turned `public_links` on."""
    actor.require("write", "create share links")
    if kind not in KINDS:
        raise ShareError(f"Unknown share kind {kind!r}; one of: {', '.join(KINDS)}.")
    if not isinstance(snapshot, dict):
        raise ShareError("A snapshot is a dict with kind, title, text, tables, figures and meta.")
    title = str(title or snapshot.get("title") or "").strip()[:200]
    snap = check_snapshot(dict(snapshot, kind=kind, title=title))
    if public and not settings.get("public_links"):
        raise access.PermissionDenied("Public links (opened without signing in) are off on this server; only an "
                                      "admin can allow them (setting public_links). Share a link for signed-in "
                                      "users instead.")
    if expires_in_days is not None:
        expires_in_days = float(expires_in_days)
        if not 0 <= expires_in_days <= MAX_DAYS or math.isnan(expires_in_days):
            raise ShareError(f"A link expires after 0 (never) to {MAX_DAYS} days, not {expires_in_days:g}.")
    data = canonical(snap)
    if len(data) > MAX_SNAPSHOT_BYTES:
        raise ShareError(f"This snapshot is {len(data) / 2**20:.0f} MB; a share holds at most "
                         f"{MAX_SNAPSHOT_BYTES // 2**20} MB. Share a smaller view (fewer rows or results).")
    now = store.now() if now is None else float(now)
    snapshot_hash = _write_snapshot(data)
    token, link_id = secrets.token_urlsafe(24), uuid.uuid4().hex[:12]
    expires_at = now + expires_in_days * DAY if expires_in_days else None
    scope(actor).insert("shares", dict(id=link_id, token_hash=_token_hash(token), kind=kind, title=title,
                                       snapshot=snapshot_hash, public=int(bool(public)), created_at=now,
                                       expires_at=expires_at, views=0))
    audit.record(actor, "share.create", link_id, {"kind": kind, "title": title, "public": bool(public),
                                                  "expires_at": expires_at, "snapshot": snapshot_hash})
    return token


def _live(token: str, now: float) -> dict:
    """The link row of a token that is neither unknown, revoked nor expired, else ShareNotFound."""
    if not isinstance(token, str) or not token.strip():
        raise ShareNotFound()
    row = scope(SYSTEM).one("shares", "token_hash=?", (_token_hash(token.strip()),))
    if row is None or _status(row, now) != "active":
        raise ShareNotFound()
    return row


def is_public(token: str, now: float | None = None) -> bool:
    """Whether `token` opens without sign-in now: a live public link while public links are allowed.
    (The sign-in gate lets `/shared?token=…` through on this; it counts no view.)"""
    if not settings.get("public_links"):
        return False
    try:
        return bool(_live(token, store.now() if now is None else now)["public"])
    except ShareNotFound:
        return False


def open_link(token: str, actor: Actor | None, now: float | None = None, count_view: bool = True) -> dict:
    """The snapshot a link shows, plus a "share" entry (id, kind, title, by, at, expires_at, views, public).

    `actor` None is an anonymous visitor: only a public link opens, and only while public links are allowed.
    A signed-in actor who may read opens any live link (see the module's docstring). Unknown, revoked,
    expired and (for anonymous visitors) non-public tokens raise ShareNotFound, one message for all; a
    snapshot file changed on disk raises SnapshotTampered. Each opening adds one view (atomically),
    unless `count_view` is False (the page counts a visitor once per browser session)."""
    if actor is not None:
        if not isinstance(actor, Actor):
            raise TypeError(f"open_link needs an Actor or None, got {type(actor).__name__}")
        actor.require("read", "open share links")
    now = store.now() if now is None else float(now)
    with store.transaction() as conn:  # BEGIN IMMEDIATE: the read and the +1 below are one step
        row = _live(token, now)
        if actor is None and not (row["public"] and settings.get("public_links")):
            raise ShareNotFound()
        snap = read_snapshot(row["snapshot"])
        views = row["views"] + (1 if count_view else 0)
        if count_view:
            scope(SYSTEM).update("shares", dict(views=views, last_viewed_at=now), "id=?", (row["id"],), conn=conn)
    snap["share"] = {"id": row["id"], "kind": row["kind"], "title": row["title"], "by": row["created_by"],
                     "at": row["created_at"], "expires_at": row["expires_at"], "views": views,
                     "public": bool(row["public"]), "snapshot": row["snapshot"]}
    return snap


def list_links(actor: Actor, now: float | None = None) -> list[dict]:
    """The actor's links (an admin's: every link in the workspaces they see), newest first, each with its
    status (active, expired, revoked) and view count. Tokens are not among them: they are not stored."""
    now = store.now() if now is None else float(now)
    where, params = ("1=1", ()) if actor.can("admin") else ("created_by=?", (actor.user,))
    rows = scope(actor).select("shares", where, params, order="created_at DESC",
                               columns="id, kind, title, snapshot, public, created_at, expires_at, revoked_at, "
                                       "revoked_by, views, last_viewed_at, workspace, created_by")
    for row in rows:
        row["public"] = bool(row["public"])
        row["status"] = _status(row, now)
    return rows


def revoke(actor: Actor, token_or_id: str, now: float | None = None) -> dict:
    """Revoke a link (by its id or its token): its owner or an admin. Revoking twice is harmless. The
    snapshot file goes too when no other live link shows it."""
    actor.require("write", "revoke share links")
    key = str(token_or_id or "").strip()
    row = scope(actor).one("shares", "id=? OR token_hash=?", (key, _token_hash(key)))
    if row is None:
        raise ShareNotFound(f"No share link {key[:12]!r} among the links you can see.")
    if row["revoked_at"] is None:
        now = store.now() if now is None else float(now)
        if not scope(actor).update("shares", dict(revoked_at=now, revoked_by=actor.user), "id=?", (row["id"],)):
            raise access.PermissionDenied(f"{actor.user} may not revoke share link {row['id']}: only who created "
                                          "it or an admin can.")
        audit.record(actor, "share.revoke", row["id"], {"kind": row["kind"], "title": row["title"]},
                     workspace=row["workspace"])
        still_shown = scope(SYSTEM).one("shares", "snapshot=? AND revoked_at IS NULL", (row["snapshot"],),
                                        columns="id")
        if still_shown is None:
            snapshot_path(row["snapshot"]).unlink(missing_ok=True)
        row = scope(actor).one("shares", "id=?", (row["id"],))
    row["status"] = _status(row, store.now() if now is None else now)
    row.pop("token_hash", None)
    return row


def when(timestamp: float | None) -> str:
    """A timestamp as the lists and the viewer show it (UTC)."""
    if timestamp is None:
        return "never"
    return datetime.fromtimestamp(float(timestamp), timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
