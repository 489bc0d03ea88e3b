"""CLI: `python -m llm_lab compress methods|make|eval`."""
import argparse
import json

from ..capabilities import HEADS
from ..cli import table
from .recipes import RECIPES, make_variant, methods


def register(subparsers) -> None:
    compress = subparsers.add_parser("compress", help="make smaller or faster variants of a model").add_subparsers(
        dest="sub", metavar="SUB")
    p = compress.add_parser("methods", help="list the compression methods and their parameters")
    p.add_argument("--head", choices=HEADS, help="only the methods for a model opened with this head")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=methods_cmd)
    p = compress.add_parser("make", help="make a variant of a registry model and register it",
                            description="Make a variant (int8, onnx, fp16, bf16, magnitude, heads) of PARENT; it is "
                                        "registered with its parent and recipe, and checked against the parent.")
    p.add_argument("parent", help="registry name of the model to compress")
    p.add_argument("--method", required=True, choices=list(RECIPES))
    p.add_argument("--sparsity", type=float, help="magnitude: share of the block weights set to zero (default 0.5)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--heads", type=int, help="heads: how many attention heads to remove")
    group.add_argument("--head-fraction", type=float, help="heads: share of the heads to remove (default 0.25)")
    p.add_argument("--samples", type=int, help="heads: texts measuring head importance (default 64)")
    p.add_argument("--per-channel", action=argparse.BooleanOptionalAction, default=None,
                   help="int8: one scale per output channel (default) or per tensor")
    p.add_argument("--dataset", help="the dataset whose texts check the variant (heads: measure importance)")
    p.add_argument("--name", help="the variant's name (default: PARENT-METHOD…)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=make_cmd)
    p = compress.add_parser("eval", help="compress-then-evaluate: variants against their parent on a dataset",
                            description="Size, peak memory, latency p50/p95 at batch 1, throughput at batch 32, "
                                        "accuracy with intervals, flips, McNemar and an equivalence verdict for "
                                        "each VARIANT against PARENT, as a background job (the Compress page shows "
                                        "it too).")
    p.add_argument("parent", help="registry name of the parent model")
    p.add_argument("variants", nargs="+", metavar="VARIANT", help="registry names of the variants")
    p.add_argument("--dataset", required=True, help="a dataset with text and label columns")
    p.add_argument("--split", help="the split scored (default: test; every row when there is none)")
    p.add_argument("--limit", type=int, help="at most this many examples")
    p.add_argument("--margin", type=float, default=1.0, help="equivalence margin in accuracy points (default 1)")
    p.add_argument("--confidence", type=float, default=95.0, help="confidence in percent (default 95)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory probe (one process per model)")
    p.add_argument("--no-wait", action="store_true", help="queue the job and print its id")
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")
    p.set_defaults(func=eval_cmd)


def methods_cmd(args) -> int:
    rows = [r.as_dict() for r in methods(args.head)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(table([{"method": r["method"], "heads": ",".join(r["heads"]),
                  "params": ", ".join(f"{p['name']}={p['default']}" for p in r["params"]), "title": r["title"]}
                 for r in rows], ["method", "heads", "params", "title"]))
    return 0


PARAMS = ("sparsity", "heads", "head_fraction", "samples", "per_channel", "dataset")


def make_cmd(args) -> int:
    given = {k: getattr(args, k) for k in PARAMS if getattr(args, k) is not None}
    entry = make_variant(args.actor, args.parent, args.method, given, name=args.name,
                         progress=lambda done, total, message="", **_: print(f"  {message}", flush=True))
    if args.json:
        print(json.dumps(entry.as_dict(), indent=2, default=str))
        return 0
    print(summary(entry))
    return 0


def summary(entry) -> str:
    """What the CLI prints about a new variant: its name, its size against the parent's, the checks."""
    meta = entry.meta
    size, parent = meta["bytes"], meta["parent_bytes"]
    ratio = f", {size / parent:.2f}× the parent" if parent else ""
    lines = [f"made {entry.name}: {meta['recipe']['method']} variant of {entry.parent}, at {entry.location}",
             f"weights on disk: {size / 2**20:.1f} MB (parent {parent / 2**20:.1f} MB{ratio})"]
    checks = meta.get("checks") or {}
    lines.append(f"checks against {entry.parent} on {checks.get('texts', '?')} texts: " + ", ".join(
        f"{k} {v}" for k, v in checks.items() if k != "texts"))
    lines += [f"note: {n}" for n in meta.get("notes") or []]
    return "\n".join(lines)


def eval_cmd(args) -> int:
    from .. import jobs
    from . import evaluate, tables

    if not 50 <= args.confidence < 100:
        raise SystemExit(f"--confidence is a percentage between 50 and 100; got {args.confidence:g}.")
    job_id = evaluate.submit(args.actor, args.parent, args.variants, dataset=args.dataset, split=args.split,
                             limit=args.limit, margin=args.margin / 100, alpha=(100 - args.confidence) / 200,
                             memory=not args.no_memory)
    print(job_id, flush=True)
    if args.no_wait:
        return 0
    job = jobs.wait(args.actor, job_id, timeout=24 * 3600)
    report = evaluate.report_of(args.actor, job_id)
    if report is None:
        print(f"the evaluation {job['status']}: {job.get('error') or ''}")
        return 1
    if args.json:
        print(json.dumps(report.to_dict(), indent=1, default=str))
        return 0
    rows = tables.summary(report)
    print(table(rows, list(rows[0])))
    for note in report.notes:
        print(f"note: {note}")
    for model in report.models:
        for warning in model.warnings:
            print(f"warning: {model.name}: {warning}")
    return 0
