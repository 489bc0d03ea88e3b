"""`python -m llm_lab …`: each feature module adds its own subcommands with `register(subparsers)`.

A handler returns the exit code and acts as `args.actor`: the local operator (an admin of the
default workspace), or with `--as EMAIL` that user, so an operator sees what the user may do. A LabError prints its message to stderr and exits 1;
so does a full disk under LLM_LAB_HOME (store.storage_full_message), instead of a traceback.
The root's own commands (models, data, jobs, worker) live in core_cli; each feature package
(bench, train, compare, explain) owns its `cli.py`. `table` is the text table every CLI prints.
"""
import argparse
import importlib
import sys

from . import accounts, store
from .access import LOCAL
from .errors import LabError

# Feature modules that add subcommands. A module listed here exposes `register(subparsers)`.
COMMAND_MODULES = [
    "llm_lab.core_cli",
    "llm_lab.bench.cli",
    "llm_lab.train.cli",
    "llm_lab.compare.cli",
    "llm_lab.explain.cli",
    "llm_lab.compress.cli",
    "llm_lab.admin_cli",
    "llm_lab.backup",
    "llm_lab.db_cli",
]


def table(rows: list[dict], columns: list[str]) -> str:
    """A plain-text table: upper-case headers, columns padded to their widest cell, None shown empty."""
    widths = {c: max([len(c)] + [len(str(r.get(c) if r.get(c) is not None else "")) for r in rows]) for c in columns}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in columns)]
    lines += ["  ".join(str(r.get(c) if r.get(c) is not None else "").ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m llm_lab", description="LLM Lab from the command line.")
    parser.add_argument("--as", dest="as_user", metavar="EMAIL",
                        help="run the command with this user's rights (default: the local operator, an admin)")
    parser.add_argument("--workspace", dest="as_workspace", metavar="NAME",
                        help="with --as: the workspace to act in (default: the user's personal one)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        args.actor = accounts.actor_for(args.as_user, args.as_workspace) if args.as_user else LOCAL
        return int(args.func(args) or 0)
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (OSError, *store.DatabaseError) as exc:
        if not store.is_storage_full(exc):
            raise
        print(f"error: {store.storage_full_message()} ({type(exc).__name__}: {exc})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
