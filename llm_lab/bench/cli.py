"""CLI: `python -m llm_lab bench --suite NAME --model A --model B --out results.json` (runs inline).

Data-parallel: `accelerate launch --num_processes N -m llm_lab.bench …` or `torchrun --nproc_per_node N -m
llm_lab.bench …` with the same flags: the processes share each task's examples (distributed.py), each on its own
GPU when there are GPUs; the main process alone prints and writes.
"""
import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("bench", help="run a benchmark suite and print the leaderboard")
    p.add_argument("--suite", help="a built-in or saved suite name, or a YAML file")
    p.add_argument("--model", action="append", default=[], help="a model (repeat for several)")
    p.add_argument("--out", help="write the results (with per-example predictions) as JSON")
    p.add_argument("--csv", help="write the leaderboard rows as CSV")
    p.add_argument("--html", help="write a self-contained HTML report")
    p.add_argument("--no-cache", action="store_true", help="recompute tasks that have a cached result")
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best there is)")
    p.add_argument("--batch-size", type=int, default=None, help="starting batch size (halved on out-of-memory)")
    p.add_argument("--limit", type=int, default=None, help="at most this many examples per task (a quick look)")
    p.add_argument("--list", action="store_true", help="list the suites and exit")
    p.set_defaults(func=bench)
    sub = p.add_subparsers(dest="bench_command", required=False, metavar="compare")
    c = sub.add_parser("compare", help="is the difference between models real? (paired tests on a results file)",
                       description="Paired comparison of models from a results JSON (`bench --out`, or the "
                                   "Benchmarks page's Download JSON): per task, the difference with its paired "
                                   "bootstrap interval, McNemar's exact test (a paired permutation test for other "
                                   "metrics), flips, the minimum detectable effect and a verdict in words.")
    c.add_argument("results", help="a results JSON file")
    c.add_argument("--model", action="append", default=[], help="a model to compare (repeat; default: all)")
    c.add_argument("--metric", default=None, help="the metric (default: each task's headline)")
    c.add_argument("--task", action="append", default=[], help="only this task (repeat)")
    c.add_argument("--margin", type=float, default=None,
                   help="equivalence margin in the metric's units (0.01 = 1 point of accuracy)")
    c.add_argument("--adjust", choices=["holm", "bh", "none"], default="holm",
                   help="p-value adjustment across pairs and tasks (default holm)")
    c.add_argument("--json", action="store_true", help="print every figure as JSON")
    c.set_defaults(func=compare_cmd)


def compare_cmd(args) -> int:
    import json

    from ..errors import LabError
    from . import compare
    from .result import TaskResult

    try:
        data = json.loads(Path(args.results).read_text())
        results = [TaskResult.from_dict(r) for r in data["results"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"error: {args.results} is not a results JSON file of LLM Lab ({e}); write one with "
              "`python -m llm_lab bench ... --out results.json`.", file=sys.stderr)
        return 2
    names = list(dict.fromkeys(r.model for r in results))
    unknown = [m for m in args.model if m not in names]
    if unknown:
        print(f"error: no results for {', '.join(map(repr, unknown))} in {args.results}; its models are "
              f"{', '.join(names)}.", file=sys.stderr)
        return 2
    if args.task:
        results = [r for r in results if r.task in args.task]
    try:
        found = compare.compare_run(results, args.metric, models=args.model or None, margin=args.margin,
                                    adjust=args.adjust)
    except (LabError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"adjustment": args.adjust, "tasks": [t.to_dict() for t in found]}, indent=1, default=str))
    else:
        print(compare.text(found))
    return 0


def bench(args) -> int:
    from . import distributed

    if distributed.launched():
        distributed.init()
        try:
            return _bench(args, distributed.device(args.device), main=distributed.is_main())
        finally:
            _leave_group()
    return _bench(args, args.device, main=True)


def _leave_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def _bench(args, device: str | None, main: bool) -> int:
    """The benchmark run; `main` is False on the other processes of a data-parallel run: they print nothing
    and write nothing (the main process does both, with every process's outputs)."""
    from .. import access
    from . import leaderboard, runner
    from . import suite as suites

    actor = getattr(args, "actor", access.LOCAL)
    if args.list:
        for s in suites.list_suites(actor) if main else []:
            print(f"{s['name']:<24} {s['source']:<8} {s['path']}")
        return 0
    if not args.suite or not args.model:
        print("error: give --suite and at least one --model (see --list for suites)", file=sys.stderr)
        return 2
    suite = suites.load(actor, args.suite)

    import time

    last = [0.0]

    def progress(done, total, message="", **_):
        if sys.stderr.isatty():
            print(f"\r[{done / max(total, 1):6.1%}] {message[:100]:<100}", end="", file=sys.stderr, flush=True)
        elif time.time() - last[0] > 10:  # in CI logs: a line every 10 s
            last[0] = time.time()
            print(f"[{done / max(total, 1):6.1%}] {message[:100]}", file=sys.stderr, flush=True)

    run_id = time.strftime("cli-%Y%m%d-%H%M%S")
    results = runner.run_suite(actor, suite, args.model, use_cache=not args.no_cache, device=device,
                               batch_size=args.batch_size, progress=progress, run_id=run_id, limit=args.limit,
                               log=lambda line: print("\n" + line.splitlines()[0], file=sys.stderr))
    failed = 1 if any(not r.ok for r in results) else 0
    if not main:
        return failed
    print(f"\nrun {run_id}: on the Benchmarks page, /benchmarks?result={run_id}", file=sys.stderr)
    summaries = [r.summary() for r in results]
    print(leaderboard.text_table(summaries))
    if args.out:
        Path(args.out).write_bytes(leaderboard.export_json(results))
        print(f"wrote {args.out}", file=sys.stderr)
    if args.csv:
        Path(args.csv).write_bytes(leaderboard.export_csv(summaries))
    if args.html:
        from .report import html_report

        Path(args.html).write_text(html_report(results, f"{suite.name} on {', '.join(args.model)}"))
    return failed
