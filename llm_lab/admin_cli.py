"""CLI: the operator's tools: users, workspaces, the audit log and server settings.

They act as `args.actor` like every command: the local operator (admin) unless `--as EMAIL` is given, so
`python -m llm_lab --as bob@example.com users list` shows what bob is refused.
"""
import json

from . import accounts, audit, hosting, settings
from .cli import table
from .serve import cli as serve_cli


def register(subparsers) -> None:
    users = subparsers.add_parser("users", help="list, add and remove users; set roles").add_subparsers(
        dest="sub", metavar="SUB")
    p = users.add_parser("list")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=users_list)
    p = users.add_parser("add")
    p.add_argument("email")
    p.add_argument("--role", default="viewer", choices=accounts.ASSIGNABLE_ROLES)
    p.set_defaults(func=lambda a: _say(accounts.add_user(a.actor, a.email, a.role)))
    p = users.add_parser("set-role")
    p.add_argument("email")
    p.add_argument("role", choices=accounts.ASSIGNABLE_ROLES)
    p.set_defaults(func=lambda a: _say(accounts.set_role(a.actor, a.email, a.role)))
    p = users.add_parser("remove")
    p.add_argument("email")
    p.set_defaults(func=lambda a: accounts.remove_user(a.actor, a.email) or print(f"removed {a.email}") or 0)

    ws = subparsers.add_parser("workspaces", help="team workspaces and their members").add_subparsers(
        dest="sub", metavar="SUB")
    p = ws.add_parser("list")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=workspaces_list)
    p = ws.add_parser("create")
    p.add_argument("name")
    p.set_defaults(func=lambda a: accounts.create_workspace(a.actor, a.name) and print(f"created {a.name}") or 0)
    for verb, change in (("add-member", accounts.add_member), ("remove-member", accounts.remove_member)):
        p = ws.add_parser(verb)
        p.add_argument("workspace")
        p.add_argument("email")
        p.set_defaults(func=lambda a, change=change: change(a.actor, a.workspace, a.email)
                       or print(f"{a.sub}: {a.email} in {a.workspace}") or 0)

    au = subparsers.add_parser("audit", help="read the audit log").add_subparsers(dest="sub", metavar="SUB")
    p = au.add_parser("list")
    p.add_argument("--user")
    p.add_argument("--action", help="e.g. sign-in, dataset.delete, or a prefix such as dataset")
    p.add_argument("--workspace")
    p.add_argument("--since", help="2026-11-01, 2026-11-01T12:00, or 7d / 12h / 30m back from now")
    p.add_argument("--limit", type=int, default=200)
    p.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    p.set_defaults(func=audit_list)

    st = subparsers.add_parser("settings", help="server settings").add_subparsers(dest="sub", metavar="SUB")
    p = st.add_parser("list")
    p.set_defaults(func=settings_list)
    p = st.add_parser("set")
    p.add_argument("name", choices=sorted(settings.DEFAULTS))
    p.add_argument("value", help="a number, true/false, a comma-separated list, or JSON")
    p.set_defaults(func=lambda a: settings.put(a.actor, a.name, a.value)
                   or print(f"{a.name} = {json.dumps(settings.get(a.name))}") or 0)


    p = subparsers.add_parser("dashboard", help="start the dashboard (in hosted mode, only once sign-in is "
                                                "configured)")
    p.add_argument("--port", type=int, help="default: 8501")
    p.add_argument("--address", "--host", dest="address",
                   help="interface to listen on (default: .streamlit/config.toml's, 127.0.0.1)")
    p.add_argument("--check", action="store_true", help="only check the configuration, do not start")
    p.set_defaults(func=dashboard)

    p = subparsers.add_parser("serve", help="serve MODEL over an OpenAI-compatible HTTP API (without MODEL: the "
                                            "dashboard, as `dashboard` does; kept for existing deployments)")
    p.add_argument("model", nargs="?", help="a model to serve over HTTP (llm_lab/serve)")
    p.add_argument("--port", type=int, help="default: 8000 (8501 for the dashboard)")
    p.add_argument("--address", "--host", dest="address",
                   help="interface to listen on (default: .streamlit/config.toml's, 127.0.0.1)")
    p.add_argument("--check", action="store_true", help="only check the configuration, do not start")
    serve_cli.add_arguments(p)
    p.set_defaults(func=serve)


def serve(args) -> int:
    """Serve MODEL over HTTP (llm_lab/serve/cli.py). Without MODEL: the dashboard (`dashboard`), as images and
    scripts written before the two were apart still call it."""
    import sys

    if args.model:
        return serve_cli.run(args)
    if serve_cli.model_options_without_model(args):
        print(f"error: {', '.join(serve_cli.model_options_without_model(args))} apply only when serving a model: "
              "python -m llm_lab serve MODEL …", file=sys.stderr)
        return 2
    return dashboard(args)


def dashboard(args) -> int:
    """Refuse to start a hosted server that cannot sign people in; otherwise exec `streamlit run app.py`."""
    import os
    import sys
    from pathlib import Path

    app = Path(__file__).resolve().parent.parent / "app.py"
    named = os.environ.get("LLM_LAB_SECRETS_FILE")
    if named:  # Streamlit is told to read the same file the check reads
        os.environ["LLM_LAB_SECRETS_FILE"] = named = str(Path(named).resolve())
    os.chdir(app.parent)  # Streamlit reads .streamlit/config.toml and secrets.toml from here: check those
    found = hosting.problems()
    if found:
        print(hosting.refusal(found), file=sys.stderr)
        return 2
    print(f"mode: {settings.mode()}; sign-in: "
          f"{'not needed' if not settings.hosted() else settings.get('trusted_proxy_header') or 'OpenID Connect'}")
    if args.check:
        return 0
    # Streamlit's own CLI, through ui/streamlit_server.py: in hosted mode it closes /_stcore/metrics first
    command = [sys.executable, "-m", "ui.streamlit_server", "run", str(app), "--server.port", str(args.port or 8501)]
    if args.address:
        command += ["--server.address", args.address]
    if named:
        command += ["--secrets.files", named]
    os.execv(sys.executable, command)
    return 0


def _say(user: dict) -> int:
    print(f"{user['email']}: {user['role']}")
    return 0


def users_list(args) -> int:
    rows = accounts.list_users(args.actor)
    print(json.dumps(rows, indent=2) if args.json else table(rows, ["email", "role", "role_source"]))
    return 0


def workspaces_list(args) -> int:
    rows = accounts.list_workspaces(args.actor)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(table([dict(r, members=", ".join(r["members"])) for r in rows], ["name", "kind", "members"]))
    return 0


def audit_list(args) -> int:
    rows = audit.entries(args.actor, user=args.user, since=audit.parse_since(args.since), action=args.action,
                         workspace=args.workspace, limit=args.limit)
    print(audit.to_csv(rows) if args.csv else table(rows, ["time", "user", "action", "target", "workspace", "detail"]))
    return 0


def settings_list(args) -> int:
    rows = [dict(r, value=json.dumps(r["value"])) for r in settings.all_settings(args.actor)]
    print(f"mode: {settings.mode()}")
    print(table(rows, ["name", "value", "source"]))
    return 0
