"""`python -m llm_lab.bench …`: the `bench` command on its own, for launchers that take a module:

    accelerate launch --num_processes 2 -m llm_lab.bench --suite demo-classifier --model minilm
    torchrun --nproc_per_node 2 -m llm_lab.bench --suite demo-causal-lm --model tiny-gpt --out results.json

Same flags as `python -m llm_lab bench` (distributed.py says how the processes share the work).
"""
import sys

from ..cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
