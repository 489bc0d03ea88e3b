"""CLI: `python -m llm_lab train classify|causal-lm|pretrain …` submit a training job and wait.

Every TrainConfig field is a flag (`--learning-rate`, `--lora-targets c_attn`, `--arch n_layer=6`;
the dataset is `--data`), so a model card's "Reproduce" command runs as it is.
`--no-wait` returns after queueing; `--inline` trains in this process without the worker;
`--estimate` prints the memory/time estimate and exits. `train export NAME` writes the zip.
`--distill-from TEACHER --student-layers 3 [--temperature 2 --alpha 0.5]` (classify, causal-lm) trains a student
with 3 of the teacher's layers on its soft labels and the gold ones (train/distill.py).
The same flags work for `accelerate launch -m llm_lab.train TASK …` (multi-GPU / multi-node).
"""
import argparse
import json
import sys
import time
from dataclasses import fields
from pathlib import Path

HELP = {"classify": "fine-tune an encoder (minilm by default) as a text classifier",
        "causal-lm": "continue training a causal LM on a text column or prompt/completion pairs (full or LoRA)",
        "pretrain": "pretrain a small GPT-2 from scratch (default corpus: CPython's pydoc text)"}


def flag(name: str) -> str:
    return "--data" if name == "dataset" else "--" + name.replace("_", "-")


def add_train_arguments(parser, task: str) -> None:
    from ..corpora import CORPORA
    from .config import PRESETS, TrainConfig, task_defaults

    defaults = TrainConfig(task=task, **task_defaults(task))
    for f in fields(TrainConfig):
        if f.name == "task":
            continue
        value = getattr(defaults, f.name)
        kw = {"dest": f.name, "default": argparse.SUPPRESS, "help": f"(default: {value!r})"}
        if isinstance(value, bool):
            parser.add_argument(flag(f.name), action=argparse.BooleanOptionalAction, **kw)
        elif isinstance(value, (list, dict)):
            parser.add_argument(flag(f.name), metavar="A,B" if isinstance(value, list) else "K=V,…", **kw)
        elif f.name == "preset":
            parser.add_argument(flag(f.name), choices=list(PRESETS), **kw)
        elif f.name == "corpus":
            parser.add_argument(flag(f.name), choices=list(CORPORA), **kw)
        else:
            parser.add_argument(flag(f.name), type=type(value), **kw)
    if task != "pretrain":
        parser.add_argument("--distill-from", metavar="TEACHER", help="distil TEACHER into a smaller student (fewer "
                            "of its layers; --student-layers, --temperature, --alpha): the same as --distill "
                            "--model TEACHER")


def config_from_args(args, task: str):
    from .config import ConfigError, TrainConfig, task_defaults

    teacher = getattr(args, "distill_from", None)
    distill = bool(teacher or getattr(args, "distill", False))
    values = dict(task_defaults(task, bool(getattr(args, "lora", False)), distill))
    for f in fields(TrainConfig):
        if f.name in vars(args) and f.name != "task":
            values[f.name] = getattr(args, f.name)
    if teacher:  # --distill-from TEACHER: --distill with TEACHER as the model
        if values.get("model", teacher) != teacher and "model" in vars(args):
            raise ConfigError(f"--distill-from {teacher} and --model {values['model']} name two models: the teacher "
                              "is the model, give one of them.")
        values.update(model=teacher, distill=True)
    if isinstance(values.get("lora_targets"), str):
        values["lora_targets"] = [t.strip() for t in values["lora_targets"].split(",") if t.strip()]
    if isinstance(values.get("arch"), str):
        values["arch"] = {k.strip(): int(v) for k, v in (kv.split("=", 1) for kv in values["arch"].split(",") if kv)}
    if values.get("out"):
        values["out"] = str(Path(values["out"]).expanduser().resolve())
    return TrainConfig(task=task, **values).validate()


def register(subparsers) -> None:
    tr = subparsers.add_parser("train", help="fine-tune or pretrain models (background jobs)").add_subparsers(
        dest="sub", metavar="TASK")
    for task in ("classify", "causal-lm", "pretrain"):
        p = tr.add_parser(task, help=HELP[task], description=HELP[task])
        add_train_arguments(p, task)
        p.add_argument("--no-wait", action="store_true", help="queue the job and return its id")
        p.add_argument("--inline", action="store_true", help="train in this process instead of the worker")
        p.add_argument("--resume", action="store_true", help="with --inline: continue the run of this --name "
                       "from its last checkpoint")
        p.add_argument("--estimate", action="store_true", help="print the memory and time estimate and exit")
        p.set_defaults(func=lambda a, task=task: train_command(a, task))
    p = tr.add_parser("export", help="write a trained model's folder as a zip")
    p.add_argument("name")
    p.add_argument("--out", help="zip file (default: NAME.zip)")
    p.set_defaults(func=export_command)


def train_command(args, task: str) -> int:
    from .. import train

    cfg = config_from_args(args, task)
    if args.estimate:
        print(json.dumps(train.estimate(args.actor, cfg), indent=2))
        return 0
    if args.inline:  # no job record: this process trains and prints its progress
        from .jobs import run_direct

        result = run_direct(cfg, resume=args.resume, actor=args.actor)
        print(json.dumps(result, indent=2, default=str))
        return 0
    job_id = train.submit(args.actor, cfg)
    if args.no_wait:
        print(job_id)
        return 0
    print(f"job {job_id}: {cfg.title()}", file=sys.stderr)
    job = wait_with_progress(args.actor, job_id)
    if job["status"] != "succeeded":
        print(f"\n{job['status']}: {job['error'] or job['message']}", file=sys.stderr)
        return 1
    result = job["result"]
    print(json.dumps(result, indent=2, default=str))
    return 0


def wait_with_progress(actor, job_id: str) -> dict:
    from .. import jobs

    try:
        while True:
            job = jobs.get(actor, job_id)
            bar = "#" * int(job["fraction"] * 30)
            print(f"\r[{bar:<30}] {job['fraction']:4.0%} {job['status']}: {job['message'][:70]:<70}",
                  end="", file=sys.stderr, flush=True)
            if job["status"] not in jobs.ACTIVE:
                print(file=sys.stderr)
                return job
            time.sleep(0.5)
    except KeyboardInterrupt:
        print(f"\nStopped waiting; the job goes on. `python -m llm_lab jobs cancel {job_id}` stops it.",
              file=sys.stderr)
        raise


def export_command(args) -> int:
    from ..store import atomic_write_bytes
    from .export import zip_bytes

    out = Path(args.out or f"{args.name}.zip")
    atomic_write_bytes(out, zip_bytes(args.actor, args.name))
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MB)")
    return 0
