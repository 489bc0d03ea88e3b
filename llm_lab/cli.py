"""`python -m llm_lab …`: each feature module adds its own subcommands with `register(subparsers)`.

A handler returns the exit code and acts as `args.actor` (the local operator, for now). A LabError prints its message to stderr and exits 1.
The root's own commands (models, data, jobs, worker) live in core_cli; each feature package
(bench, train, compare, explain) owns its `cli.py`. `table` is the text table every CLI prints.
"""
import argparse
import importlib
import sys

from .access import LOCAL
from .errors import LabError

# Feature modules that add subcommands. A module listed here exposes `register(subparsers)`.
COMMAND_MODULES = [
    "llm_lab.core_cli",
    "llm_lab.bench.cli",
    "llm_lab.train.cli",
    "llm_lab.compare.cli",
    "llm_lab.explain.cli",
]


def table(rows: list[dict], columns: list[str]) -> str:
    """A plain-text table: upper-case headers, columns padded to their widest cell, None shown empty."""
    widths = {c: max([len(c)] + [len(str(r.get(c) if r.get(c) is not None else "")) for r in rows]) for c in columns}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in columns)]
    lines += ["  ".join(str(r.get(c) if r.get(c) is not None else "").ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m llm_lab", description="LLM Lab from the command line.")
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
    args.actor = LOCAL
    try:
        return int(args.func(args) or 0)
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
