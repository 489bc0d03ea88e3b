"""`python -m llm_lab.train TASK …`: train in this process, for `accelerate launch` and torchrun.

    accelerate launch --multi_gpu --num_processes 4 -m llm_lab.train classify --model minilm --data reviews
    torchrun --nproc_per_node 4 -m llm_lab.train pretrain --preset 30M

Same flags as `python -m llm_lab train TASK`, same code path (llm_lab.train.jobs.run_direct):
every process trains its shard under DDP (set up by Trainer/accelerate from the launcher's
environment) and the main process saves and registers the model.
"""
import argparse
import json
import sys

from .cli import HELP, add_train_arguments, config_from_args
from ..errors import LabError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m llm_lab.train", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="task", metavar="TASK", required=True)
    for task in HELP:
        add_train_arguments(sub.add_parser(task, help=HELP[task]), task)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from .jobs import run_direct

    try:
        result = run_direct(config_from_args(args, args.task))
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if result is not None:
        print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
