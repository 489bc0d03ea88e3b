"""CLI: `compare` (run, show, list, export) and `arena` (leaderboard)."""
import json
import sys
from pathlib import Path

from ..cli import table
from ..generation_defaults import SUGGESTED


def register(subparsers) -> None:
    cmp = subparsers.add_parser("compare", help="compare 2-4 models on prompts, texts or a dataset sample") \
        .add_subparsers(dest="sub", metavar="SUB")
    p = cmp.add_parser("run", help="run a comparison and save it (prints its id)")
    p.add_argument("--model", "-m", action="append", required=True, help="registry name, folder or Hub id (2-4)")
    # the comparison's mode; the flag keeps its old name `--kind` (`--mode` is the same flag)
    p.add_argument("--mode", "--kind", dest="mode", choices=("generation", "classification"), default="generation",
                   help="generation (causal LMs) or classification (default: generation)")
    p.add_argument("--prompt", "-p", action="append", help="a prompt or text (repeatable)")
    p.add_argument("--reference", "-r", action="append", help="reference answer / gold label per --prompt")
    p.add_argument("--dataset", help="use a sample of this dataset instead of --prompt")
    p.add_argument("--split")
    p.add_argument("--limit", type=int, default=32)
    p.add_argument("--max-new-tokens", type=int, default=SUGGESTED["max_new_tokens"])
    p.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--repetition-penalty", type=float, default=SUGGESTED["repetition_penalty"],
                   help="1 = none (default: %(default)s, which keeps small models out of loops)")
    p.add_argument("--no-repeat-ngram-size", type=int, default=SUGGESTED["no_repeat_ngram_size"],
                   help="no n-gram of this size appears twice; 0 = off (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.set_defaults(func=compare_run)
    p = cmp.add_parser("list", help="list saved comparisons")
    p.set_defaults(func=compare_list)
    p = cmp.add_parser("show", help="print a saved comparison's table, or export it")
    p.add_argument("id")
    p.add_argument("--csv", help="write the table as CSV to this file")
    p.add_argument("--json", help="write the whole comparison as JSON to this file")
    p.add_argument("--html", help="write a standalone HTML report to this file")
    p.set_defaults(func=compare_show)
    ar = subparsers.add_parser("arena", help="arena votes and leaderboard").add_subparsers(dest="sub", metavar="SUB")
    p = ar.add_parser("leaderboard", help="Bradley-Terry ratings with bootstrap intervals")
    p.add_argument("--rounds", type=int, default=1000)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=arena_leaderboard)


def compare_run(args) -> int:
    from . import jobs as compare_jobs
    from . import runs, saved
    from ..generation import GenerationSettings

    settings = GenerationSettings(do_sample=args.sample, temperature=args.temperature, top_p=args.top_p,
                                  top_k=args.top_k, max_new_tokens=args.max_new_tokens,
                                  repetition_penalty=args.repetition_penalty,
                                  no_repeat_ngram_size=args.no_repeat_ngram_size, seed=args.seed, stop=args.stop)
    progress = lambda done, total, msg: print(f"\r{done}/{total} {msg[:60]:<60}", end="", file=sys.stderr)
    if args.dataset:
        inputs = compare_jobs.sample_inputs(args.actor, args.dataset, args.mode, args.split, args.limit, args.seed)
        source = {"type": "dataset", "dataset": args.dataset, "split": args.split, "limit": args.limit}
    else:
        refs = (args.reference or []) + [None] * len(args.prompt or [])
        n = len(args.prompt or [])
        inputs = runs.make_inputs(args.prompt or [], references=refs[:n] if args.mode == "generation" else None,
                                  labels=refs[:n] if args.mode == "classification" else None)
        source = None
    comp = runs.run(args.actor, args.mode, args.model, inputs, settings, progress=progress, source=source)
    print(file=sys.stderr)
    cid = saved.save(args.actor, comp)
    _print_summary(comp)
    print(f"saved as comparison {cid} (python -m llm_lab compare show {cid}; Compare page: ?comparison={cid})")
    return 1 if all(o.error for o in comp.outputs.values()) else 0


def _print_summary(comp) -> None:
    """Per model its numbers ("value [95% interval] n=…" where they have one), then the paired verdicts."""
    from . import statistics

    found = statistics.model_intervals(comp)
    rows = []
    for m, s in comp.summary.items():
        row = {"model": m}
        row.update({k: (round(v, 4) if isinstance(v, float) else v) for k, v in s.items() if k != "error"})
        row.update({k: ci.text() for k, ci in found.get(m, {}).items()})
        row["error"] = s.get("error", "")
        rows.append(row)
    cols = ["model"] + [c for c in ("tokens_per_s", "mean_logprob", "exact_match", "bleu", "rougeL", "accuracy",
                                    "mean_prob") if any(c in r for r in rows)] + ["error"]
    print(table(rows, cols))
    for pair, ci in statistics.agreement_intervals(comp).items():
        print(f"agreement {'of all models' if pair == 'all' else pair}: {ci.text()}")
    reason = statistics.no_paired_reason(comp)
    for line in [reason] if reason else [r["verdict"] for r in statistics.pair_rows(statistics.paired_comparisons(comp))]:
        print(line)


def compare_list(args) -> int:
    from . import saved

    rows = saved.list_saved(args.actor)
    print(table([dict(r, models=", ".join(r["models"])) for r in rows], ["id", "mode", "n_inputs", "models"]))
    return 0


def compare_show(args) -> int:
    from . import saved, tables

    comp = saved.get(args.actor, args.id)
    frame = tables.table(comp, details=True)
    for flag, data in (("csv", lambda: tables.to_csv(frame)), ("json", lambda: tables.to_json(comp)),
                       ("html", lambda: tables.to_html(comp))):
        if getattr(args, flag):
            Path(getattr(args, flag)).write_bytes(data())
            print(f"wrote {getattr(args, flag)}")
    if not (args.csv or args.json or args.html):
        print(comp.title or "")
        _print_summary(comp)
        print(frame.to_string(max_colwidth=40))
    return 0


def arena_leaderboard(args) -> int:
    from . import arena, rating

    board = arena.leaderboard(args.actor, rounds=args.rounds)
    if args.json:
        print(json.dumps(board, indent=1))
    elif not board:
        print("No arena votes yet.")
    else:
        print(table([dict(r, rating=round(r["rating"]), **{"95% CI": rating.interval_text(r)}) for r in board],
                    ["rank", "model", "rating", "95% CI", "battles", "wins", "ties", "losses", "both_bad"]))
    return 0
