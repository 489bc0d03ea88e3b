"""`python -m llm_lab …`: each feature module adds its own subcommands with `register(subparsers)`.

A handler returns the exit code. A LabError prints its message to stderr and exits 1.
"""
import argparse
import importlib
import sys

from .errors import LabError

# Feature modules that add subcommands. A module listed here exposes `register(subparsers)`.
COMMAND_MODULES = [
    "llm_lab.cli_core",
    "llm_lab.cli_bench",
    "llm_lab.cli_train",
    "llm_lab.cli_compare",
    "llm_lab.cli_explain",
]


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
    try:
        return int(args.func(args) or 0)
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
