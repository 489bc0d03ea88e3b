"""CLI: `python -m llm_lab db migrate` and `db check`, the operator's tools for the store.

Every process migrates the store on first use, so a laptop never needs them. A team server does: run
`db migrate` once after upgrading (before starting the dashboard and workers, so none of them races an old
schema), and `db check` from a deployment's health check: it reads without writing and exits 1 when the
database cannot be reached, lacks migrations, or was migrated by a newer LLM Lab.
"""
from __future__ import annotations

import importlib
import json

from . import store

# Every module that declares a schema (store.register_schema): imported so that all of them are known.
SCHEMA_MODULES = ["llm_lab.accounts", "llm_lab.audit", "llm_lab.settings", "llm_lab.sharing", "llm_lab.data",
                  "llm_lab.registry", "llm_lab.jobs", "llm_lab.compare.saved", "llm_lab.compare.arena",
                  "llm_lab.bench.cache"]


def register(subparsers) -> None:
    db = subparsers.add_parser("db", help="the store's database: migrate it, check it").add_subparsers(
        dest="sub", metavar="SUB")
    p = db.add_parser("migrate", help="apply the migrations this database lacks (PostgreSQL or SQLite)")
    p.set_defaults(func=migrate)
    p = db.add_parser("check", help="can the database be reached, is it migrated? exits 1 if not (writes nothing)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=check)


def load_schemas() -> dict[str, int]:
    for name in SCHEMA_MODULES:
        importlib.import_module(name)
    return store.registered()


def where() -> str:
    url = store.database_url()
    return f"PostgreSQL {store.redact(url)}" if url else f"SQLite {store.db_path_quiet()}"


def migrate(args) -> int:
    args.actor.require("admin", "migrate the database")
    load_schemas()
    try:
        applied = store.migrate(store.raw_connection())
    except store.DatabaseError as exc:
        print(f"error: migrating {where()} failed: {exc}", flush=True)
        return 1
    print(f"{where()}: " + ("; ".join(applied) if applied else "up to date, nothing to apply"))
    return 0


def report() -> dict:
    """What `db check` says, as data: the engine, whether it answers, each component's migrations."""
    registered = load_schemas()
    out = {"database": where(), "engine": store.dialect(), "reachable": False, "problems": []}
    try:
        conn = store.raw_connection()
        out["server"] = store.server_version(conn)
        applied = store.versions(conn)
        out["reachable"] = True
        if conn.dialect == "sqlite":
            out["journal_mode"] = conn.execute("PRAGMA journal_mode").fetchone()[0]
            out["integrity"] = conn.execute("PRAGMA quick_check").fetchone()[0]
            if out["integrity"] != "ok":
                out["problems"].append(f"SQLite quick_check: {out['integrity']}")
    except (OSError, *store.DatabaseError) as exc:
        out["problems"].append(f"cannot reach the database: {type(exc).__name__}: {str(exc).strip()}")
        return out
    out["components"] = {c: {"applied": applied.get(c, 0), "registered": n} for c, n in sorted(registered.items())}
    pending = [c for c, n in registered.items() if applied.get(c, 0) < n]
    # more migrations than this version has, or a component it does not know at all: a newer LLM Lab's schema
    newer = [c for c, n in applied.items() if n > registered.get(c, 0)]
    if pending:
        out["problems"].append(f"migrations not applied: {', '.join(sorted(pending))}: run "
                               "`python -m llm_lab db migrate`")
    if newer:
        out["problems"].append(f"migrated by a newer LLM Lab ({', '.join(sorted(newer))}): upgrade this one")
    return out


def check(args) -> int:
    out = report()
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"database:  {out['database']}" + (f" ({out['server']})" if out.get("server") else ""))
        if "journal_mode" in out:
            print(f"journal:   {out['journal_mode']}, integrity {out['integrity']}")
        for component, n in out.get("components", {}).items():
            print(f"  {component:<12} {n['applied']}/{n['registered']} migrations")
        print("ok" if not out["problems"] else "\n".join(f"problem: {p}" for p in out["problems"]))
    return 0 if not out["problems"] else 1
