"""Users, roles and workspaces: who may sign in, with which role, and what they may see.

A user is an e-mail address with one role (admin, editor, viewer, or pending until an admin approves).
Every user has a personal workspace named after their address; admins create team workspaces and add
members. A session works in one workspace at a time: `actor_for(email, workspace)` is the `Actor` every
backend call takes, and it sees that workspace only, so a name, an id or a permalink from any other
workspace is "not found", the same answer as one that does not exist.

The role comes, in order, from the configured first admins (`settings.admins`), from the IdP's group or
role claim when the provider sends one (`settings.role_claim`, mapped by `settings.role_map`), from what
an admin assigned, and for a new user from `settings.default_role`.
"""
from __future__ import annotations

import re

from . import audit, settings, store
from .access import Actor
from .errors import LabError

ASSIGNABLE_ROLES = ("admin", "editor", "viewer", "pending")

store.register_schema("accounts", [
    """
    CREATE TABLE users (email TEXT PRIMARY KEY, role TEXT NOT NULL, created_at REAL NOT NULL,
        created_by TEXT NOT NULL, last_seen REAL, role_source TEXT NOT NULL DEFAULT 'assigned');
    CREATE TABLE workspaces (name TEXT PRIMARY KEY, kind TEXT NOT NULL, created_at REAL NOT NULL,
        created_by TEXT NOT NULL);
    CREATE TABLE members (workspace TEXT NOT NULL REFERENCES workspaces(name) ON DELETE CASCADE,
        email TEXT NOT NULL, added_at REAL NOT NULL, PRIMARY KEY (workspace, email));
    INSERT INTO workspaces VALUES ('default', 'team', 0, 'migration')
    """,
    # the workspace a user last worked in: a reload or a new tab opens it again
    "ALTER TABLE users ADD COLUMN last_workspace TEXT",
])


class AccountError(LabError):
    pass


class NotFound(AccountError):
    pass


def normalize(email: str) -> str:
    email = (email or "").strip().lower()
    if not re.fullmatch(r"[^@\s/\\:]{1,64}@[^@\s/\\:]{1,190}", email) or email.startswith("."):
        raise AccountError(f"{email!r} is not an e-mail address.")
    return email


def _check_role(role: str) -> str:
    if role not in ASSIGNABLE_ROLES:
        raise AccountError(f"Unknown role {role!r}: use one of {', '.join(ASSIGNABLE_ROLES)}.")
    return role


def get_user(email: str) -> dict | None:
    return store.query_one("SELECT * FROM users WHERE email=?", (normalize(email),))


def _ensure_personal(email: str, by: str) -> None:
    now = store.now()
    store.execute("INSERT INTO workspaces VALUES (?, 'personal', ?, ?) ON CONFLICT DO NOTHING", (email, now, by))
    store.execute("INSERT INTO members VALUES (?, ?, ?) ON CONFLICT DO NOTHING", (email, email, now))


def _role_from_claims(claims: dict | None) -> str | None:
    """The role the IdP's group/role claim maps to (the highest one), or None when it sends no such claim."""
    if not claims:
        return None
    value = claims.get(settings.get("role_claim"))
    if value is None:
        return None
    groups = [value] if isinstance(value, str) else list(value)
    mapping = settings.get("role_map")
    found = {mapping[g] for g in groups if g in mapping}
    for role in ("admin", "editor", "viewer"):
        if role in found:
            return role
    return None


def sign_in(email: str, claims: dict | None = None) -> dict:
    """Record a sign-in (creating the user on first sight) and return the user's record."""
    email = normalize(email)
    user = get_user(email)
    configured_admin = email in {normalize(a) for a in settings.get("admins")}
    claimed = _role_from_claims(claims)
    now = store.now()
    if user is None:
        role = "admin" if configured_admin else claimed or settings.get("default_role")
        source = "configured" if configured_admin else "claim" if claimed else "default"
        store.execute("INSERT INTO users (email, role, created_at, created_by, last_seen, role_source) "
                      "VALUES (?, ?, ?, 'sign-in', ?, ?)", (email, role, now, now, source))
        audit.record(email, "user.create", email, {"role": role, "from": source}, workspace="")
    else:
        role = user["role"] if user["role"] == "removed" else "admin" if configured_admin else claimed or user["role"]
        if role != user["role"]:
            store.execute("UPDATE users SET role=?, role_source=? WHERE email=?",
                          (role, "configured" if configured_admin else "claim", email))
            audit.record(email, "role.change", email, {"from": user["role"], "to": role, "by": "identity provider"},
                         workspace="")
        store.execute("UPDATE users SET last_seen=? WHERE email=?", (now, email))
    _ensure_personal(email, email)
    issued = (claims or {}).get("iat")
    if not _sign_in_recorded(email, issued):
        # once per sign-in, not once per browser tab or reload (each is a new session)
        audit.record(email, "sign-in", email, {"role": role, **({"iat": issued} if issued else {})}, workspace="")
    return get_user(email)


def _sign_in_recorded(email: str, issued) -> bool:
    """Whether this sign-in is in the audit log already: the one whose ID token was issued at `issued`; behind a
    signing-in proxy (no token) one sign-in per session_max_hours."""
    last = store.query_one("SELECT at, detail FROM audit_log WHERE \"user\"=? AND action='sign-in' ORDER BY id DESC "
                           "LIMIT 1", (email,))
    if not last:
        return False
    if issued is not None:
        return store.from_json(last["detail"], {}).get("iat") == issued
    return store.now() - last["at"] < float(settings.get("session_max_hours")) * 3600


def workspace_names(email: str) -> list[str]:
    """The workspaces a user may open: their memberships (personal first); an admin may open every one."""
    user = get_user(email)
    if user is None:
        return []
    if user["role"] == "admin":
        rows = store.query("SELECT name FROM workspaces ORDER BY kind DESC, name")
    else:
        rows = store.query("SELECT w.name FROM workspaces w JOIN members m ON m.workspace=w.name "
                           "WHERE m.email=? ORDER BY w.kind DESC, w.name", (user["email"],))
    names = [r["name"] for r in rows]
    if user["email"] in names:  # personal workspace first
        names.remove(user["email"])
        names.insert(0, user["email"])
    return names


def remember_workspace(email: str, workspace: str) -> None:
    store.execute("UPDATE users SET last_workspace=? WHERE email=?", (workspace, normalize(email)))


def actor_for(email: str, workspace: str | None = None) -> Actor:
    """The Actor for a signed-in user working in `workspace` (default: their personal one).

    A workspace the user is not in gets the same answer as one that does not exist."""
    user = get_user(email)
    if user is None:
        raise NotFound(f"No user {email!r}. An admin adds users with `python -m llm_lab users add EMAIL`.")
    allowed = workspace_names(user["email"])
    workspace = workspace or user["email"]
    if workspace not in allowed:
        raise NotFound(f"No workspace {workspace!r}.")
    return Actor(user["email"], user["role"], workspace, (workspace,))


# ---------------------------------------------------------------- what admins do
def list_users(actor: Actor) -> list[dict]:
    actor.require("admin", "list users")
    return store.query("SELECT email, role, role_source, created_at, last_seen FROM users ORDER BY email")


def add_user(actor: Actor, email: str, role: str) -> dict:
    actor.require("admin", "add users")
    email, role = normalize(email), _check_role(role)
    if get_user(email):
        raise AccountError(f"{email} exists already; change the role with set-role.")
    store.execute("INSERT INTO users (email, role, created_at, created_by, role_source) VALUES (?, ?, ?, ?, 'assigned')",
                  (email, role, store.now(), actor.user))
    _ensure_personal(email, actor.user)
    audit.record(actor, "user.create", email, {"role": role}, workspace="")
    return get_user(email)


def _admins() -> set[str]:
    return {r["email"] for r in store.query("SELECT email FROM users WHERE role='admin'")}


def set_role(actor: Actor, email: str, role: str) -> dict:
    actor.require("admin", "change roles")
    email, role = normalize(email), _check_role(role)
    user = get_user(email)
    if user is None:
        raise NotFound(f"No user {email!r}.")
    if user["role"] == "admin" and role != "admin" and _admins() == {email}:
        raise AccountError(f"{email} is the last admin; make someone else admin first.")
    if role == user["role"]:
        return user
    store.execute("UPDATE users SET role=?, role_source='assigned' WHERE email=?", (role, email))
    audit.record(actor, "role.change", email, {"from": user["role"], "to": role}, workspace="")
    return get_user(email)


def remove_user(actor: Actor, email: str) -> None:
    """Lock a user out: their role becomes `removed` (kept, so signing in again does not re-create them with the
    default role) and their team memberships go. What they made stays in its workspace; `set_role` restores."""
    actor.require("admin", "remove users")
    email = normalize(email)
    user = get_user(email)
    if user is None:
        raise NotFound(f"No user {email!r}.")
    if user["role"] == "admin" and _admins() == {email}:
        raise AccountError(f"{email} is the last admin; make someone else admin first.")
    store.execute("DELETE FROM members WHERE email=? AND workspace<>?", (email, email))
    store.execute("UPDATE users SET role='removed', role_source='assigned' WHERE email=?", (email,))
    audit.record(actor, "user.remove", email, {"role": user["role"]}, workspace="")


def list_workspaces(actor: Actor) -> list[dict]:
    """Workspaces with their members: all of them for an admin, the actor's own otherwise."""
    if actor.can("admin"):
        rows = store.query("SELECT * FROM workspaces ORDER BY kind DESC, name")
    else:
        rows = store.query("SELECT w.* FROM workspaces w JOIN members m ON m.workspace=w.name WHERE m.email=? "
                           "ORDER BY w.kind DESC, w.name", (actor.user,))
    for row in rows:
        row["members"] = [m["email"] for m in store.query(
            "SELECT email FROM members WHERE workspace=? ORDER BY email", (row["name"],))]
    return rows


def _team(name: str) -> dict:
    row = store.query_one("SELECT * FROM workspaces WHERE name=?", (name,))
    if row is None:
        raise NotFound(f"No workspace {name!r}.")
    if row["kind"] != "team":
        raise AccountError(f"{name} is a personal workspace; members are added to team workspaces.")
    return row


def create_workspace(actor: Actor, name: str) -> dict:
    actor.require("admin", "create workspaces")
    name = (name or "").strip()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
        raise AccountError(f"Workspace name {name!r}: use letters, digits, '.', '_' or '-' (at most 64).")
    if store.query_one("SELECT 1 FROM workspaces WHERE name=?", (name,)):
        raise AccountError(f"A workspace named {name!r} exists already.")
    store.execute("INSERT INTO workspaces VALUES (?, 'team', ?, ?)", (name, store.now(), actor.user))
    audit.record(actor, "workspace.create", name, workspace=name)
    return _team(name)


def add_member(actor: Actor, workspace: str, email: str) -> None:
    actor.require("admin", "add workspace members")
    _team(workspace)
    email = normalize(email)
    if get_user(email) is None:
        raise NotFound(f"No user {email!r}; add the user first.")
    store.execute("INSERT INTO members VALUES (?, ?, ?) ON CONFLICT DO NOTHING", (workspace, email, store.now()))
    audit.record(actor, "workspace.add-member", email, workspace=workspace)


def remove_member(actor: Actor, workspace: str, email: str) -> None:
    actor.require("admin", "remove workspace members")
    _team(workspace)
    email = normalize(email)
    store.execute("DELETE FROM members WHERE workspace=? AND email=?", (workspace, email))
    audit.record(actor, "workspace.remove-member", email, workspace=workspace)

