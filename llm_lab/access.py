"""Who is acting, and the only way to reach stored things: through a scope.

Every backend function that reads or changes datasets, models, suites, jobs, results,
comparisons, battles, votes or share links takes an `Actor` (who is asking, in which workspace, with
which role). Those tables carry a `workspace` and a `created_by` column, and no module
queries them with raw SQL: `scope(actor)` builds every query, so a read cannot forget the
workspace filter and a write cannot forget the permission check. A test greps the package
to keep it that way (tests/test_access.py).

Today there is one actor, `LOCAL`: the single user of a laptop install, admin of the
`default` workspace, allowed everything. `SYSTEM` is the worker's and the store's own
bookkeeping (marking orphaned jobs, progress writes): it sees every workspace.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import store
from .errors import LabError

DEFAULT_WORKSPACE = "default"
# What each role may do. "read" and "vote" are a viewer's; an editor also writes (upload, delete what they
# own, share) and runs jobs; an admin also manages users and server settings and may run server-side code.
ROLES = {
    "viewer": frozenset({"read", "vote"}),
    "editor": frozenset({"read", "vote", "write", "run"}),
    "admin": frozenset({"read", "vote", "write", "run", "admin", "server"}),
}
ROLES["system"] = ROLES["admin"]
ROLES["pending"] = frozenset()  # signed in, waiting for an admin to approve
ROLES["removed"] = frozenset()  # locked out by an admin

# Tables whose rows belong to a workspace. Their owners add the columns with `owned_columns`.
OWNED_TABLES = frozenset({"datasets", "models", "jobs", "bench_results", "bench_runs", "comparisons",
                          "arena_battles", "arena_votes", "shares"})


class PermissionDenied(LabError):
    pass


@dataclass(frozen=True)
class Actor:
    user: str
    role: str = "admin"
    workspace: str = DEFAULT_WORKSPACE                  # where new things go
    workspaces: tuple[str, ...] = (DEFAULT_WORKSPACE,)  # what it may see

    def can(self, action: str) -> bool:
        return action in ROLES.get(self.role, frozenset())

    def require(self, action: str, what: str = "do this") -> None:
        if not self.can(action):
            hint = ("Ask an admin to approve your account." if self.role == "pending" else
                    "An admin removed your account." if self.role == "removed" else
                    "Only an admin can." if action in ("admin", "server") else "Ask an admin for the editor role.")
            raise PermissionDenied(f"{self.user} ({self.role}) may not {what}. {hint}")

    @property
    def sees_everything(self) -> bool:
        return self.role == "system"

    def to_dict(self) -> dict:
        return {"user": self.user, "role": self.role, "workspace": self.workspace, "workspaces": list(self.workspaces)}

    @classmethod
    def from_dict(cls, d: dict | None) -> "Actor":
        if not d:
            return LOCAL
        return cls(d["user"], d.get("role", "viewer"), d.get("workspace", DEFAULT_WORKSPACE),
                   tuple(d.get("workspaces") or (d.get("workspace", DEFAULT_WORKSPACE),)))


LOCAL = Actor("local", "admin")
SYSTEM = Actor("system", "system")


def owned_columns(table: str) -> str:
    """The migration that makes `table` workspace-owned (existing rows go to the default workspace)."""
    assert table in OWNED_TABLES, table
    return (f"ALTER TABLE {table} ADD COLUMN workspace TEXT NOT NULL DEFAULT '{DEFAULT_WORKSPACE}';"
            f"ALTER TABLE {table} ADD COLUMN created_by TEXT NOT NULL DEFAULT 'local';"
            f"CREATE INDEX {table}_workspace ON {table}(workspace)")


class Scope:
    """Queries over workspace-owned tables, filtered to what `actor` may see and checked for what it may do."""

    def __init__(self, actor: Actor):
        if not isinstance(actor, Actor):
            raise TypeError(f"a backend call needs an Actor, got {type(actor).__name__}")
        self.actor = actor

    def _where(self, table: str, where: str, params) -> tuple[str, tuple]:
        if table not in OWNED_TABLES:
            raise ValueError(f"{table} is not a workspace-owned table")
        if self.actor.sees_everything:
            return f"({where})", tuple(params)
        marks = ",".join("?" * len(self.actor.workspaces))
        return f"({where}) AND workspace IN ({marks})", tuple(params) + tuple(self.actor.workspaces)

    def select(self, table: str, where: str = "1=1", params=(), order: str = "", limit: int | None = None,
               columns: str = "*") -> list[dict]:
        self.actor.require("read", "read stored things")
        clause, args = self._where(table, where, params)
        sql = f"SELECT {columns} FROM {table} WHERE {clause}" + (f" ORDER BY {order}" if order else "")
        if limit is not None:
            sql += " LIMIT ?"
            args += (int(limit),)
        return store.query(sql, args)

    def one(self, table: str, where: str, params=(), columns: str = "*") -> dict | None:
        rows = self.select(table, where, params, limit=1, columns=columns)
        return rows[0] if rows else None

    def insert(self, table: str, values: dict, action: str = "write", replace: bool = False, conn=None) -> None:
        """Insert a row stamped with the actor's workspace and name."""
        self.actor.require(action, {"write": "create or change things", "run": "start jobs",
                                    "vote": "vote"}.get(action, action))
        if table not in OWNED_TABLES:
            raise ValueError(f"{table} is not a workspace-owned table")
        values = dict(values, workspace=self.actor.workspace, created_by=self.actor.user)
        # replace: the row with the same primary key is overwritten (portable ON CONFLICT, not INSERT OR REPLACE)
        sql = store.insert_sql(table, values, "replace" if replace else "", store.primary_key(table) if replace else ())
        (conn or store.connect()).execute(sql, tuple(values.values()))

    def _owned_clause(self, action: str) -> tuple[str, tuple]:
        """Admins change anything they see; others only what they made."""
        if self.actor.can("admin") or action in ("vote",):
            return "1=1", ()
        return "created_by=?", (self.actor.user,)

    def update(self, table: str, values: dict, where: str, params=(), action: str = "write", conn=None) -> int:
        self.actor.require(action, "change this")
        own, own_args = self._owned_clause(action)
        clause, args = self._where(table, f"({where}) AND {own}", tuple(params) + own_args)
        sets = ",".join(f"{k}=?" for k in values)
        cur = (conn or store.connect()).execute(f"UPDATE {table} SET {sets} WHERE {clause}",
                                                tuple(values.values()) + args)
        return cur.rowcount

    def delete(self, table: str, where: str, params=(), conn=None) -> int:
        self.actor.require("write", "delete this")
        own, own_args = self._owned_clause("write")
        clause, args = self._where(table, f"({where}) AND {own}", tuple(params) + own_args)
        return (conn or store.connect()).execute(f"DELETE FROM {table} WHERE {clause}", args).rowcount


def scope(actor: Actor) -> Scope:
    return Scope(actor)
