"""Compare throughput: 4 tiny causal LMs x 32 prompts x 32 new tokens, greedy.

ours:     llm_lab.inference.generate(loaded, prompts) per model (batched, left padding, log-probs)
baseline: a loop of single-prompt `model.generate(**tokenizer(prompt))` calls (what a script does)

Both run in the same process on the same loaded models, alternating which side goes first on each
repeat (the median of each side is reported). The greedy outputs must be identical, token for token
(tolerance: zero differing outputs, in float32); otherwise the script exits with status 1.
Prints `ratio=<baseline seconds / ours seconds>` last (= ours / baseline throughput; higher is better).
"""
import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def make_models(folder: Path, count: int) -> list[Path]:
    """One tiny GPT-2 (tokenizer trained once), then `count - 1` more with other random weights."""
    import torch
    from transformers import AutoTokenizer, GPT2LMHeadModel

    from llm_lab.tiny import make_tiny_gpt2

    first = make_tiny_gpt2(folder / "tiny-0", seed=0)
    tok = AutoTokenizer.from_pretrained(first)
    config = GPT2LMHeadModel.from_pretrained(first).config
    out = [first]
    for i in range(1, count):
        torch.manual_seed(i)
        path = folder / f"tiny-{i}"
        GPT2LMHeadModel(config).save_pretrained(path)
        tok.save_pretrained(path)
        out.append(path)
    return out


def make_prompts(n: int) -> list[str]:
    from llm_lab.corpora import pydoc_corpus

    paragraphs = pydoc_corpus()
    prompts = []
    for i in range(n):  # varied lengths: 3 to 20 words (prompt + new tokens fit the 128-token context)
        words = paragraphs[(i * 37) % len(paragraphs)].split()
        prompts.append(" ".join(words[: 3 + (i * 7) % 18]))
    return prompts


def baseline(loaded, prompts, max_new: int):
    import torch

    out = []
    tok, model = loaded.tokenizer, loaded.model
    with torch.inference_mode():
        for p in prompts:
            enc = tok(p, return_tensors="pt").to(loaded.device)
            ids = model.generate(**enc, max_new_tokens=max_new, do_sample=False, pad_token_id=tok.pad_token_id)
            out.append(ids[0, enc["input_ids"].shape[1]:].tolist())
    if loaded.device.startswith("cuda"):
        torch.cuda.synchronize()
    return out


def trim(ids: list[int], eos: int) -> list[int]:
    """Tokens up to and including the first end-of-sequence (what generate() keeps)."""
    return ids[: ids.index(eos) + 1] if eos in ids else ids


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 prompts, 16 new tokens, two repeats (under a minute)")
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float32", help="float32 keeps greedy outputs bit-comparable")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    if args.quick:
        args.prompts, args.repeats, args.new_tokens = min(args.prompts, 8), 2, min(args.new_tokens, 16)

    from llm_lab import registry
    from llm_lab.access import LOCAL
    from llm_lab.generation import GenerationSettings
    from llm_lab.inference import generate

    with tempfile.TemporaryDirectory(prefix="compare-bench-") as tmp:
        os.environ.setdefault("LLM_LAB_HOME", str(Path(tmp) / "home"))
        folders = make_models(Path(tmp), args.models)
        models = [registry.load(LOCAL, str(f), head="causal-lm", device=args.device, dtype=args.dtype) for f in folders]
        prompts = make_prompts(args.prompts)
        settings = GenerationSettings(max_new_tokens=args.new_tokens, batch_size=args.batch_size)
        print(f"{len(models)} models x {len(prompts)} prompts x {args.new_tokens} new tokens on "
              f"{models[0].device} ({models[0].dtype}), batch size {args.batch_size}")
        for m in models:  # warm-up both paths
            generate(m, prompts[:2], settings)
            baseline(m, prompts[:1], 2)
        ours_t, base_t = [], []
        for r in range(args.repeats):  # alternate which side runs first: neither gets a warmer machine
            for side in (("ours", "baseline") if r % 2 == 0 else ("baseline", "ours")):
                t0 = time.perf_counter()
                if side == "ours":
                    ours = [generate(m, prompts, settings) for m in models]
                    ours_t.append(time.perf_counter() - t0)
                else:
                    base = [baseline(m, prompts, args.new_tokens) for m in models]
                    base_t.append(time.perf_counter() - t0)
        mismatches = 0
        for m, o, b in zip(models, ours, base):
            eos = m.tokenizer.eos_token_id
            mismatches += sum(r.token_ids != trim(ids, eos) for r, ids in zip(o, b))
        total = len(models) * len(prompts)
        tokens = sum(r.new_tokens for o in ours for r in o)
        ours_s, base_s = statistics.median(ours_t), statistics.median(base_t)
        print(f"ours (batched):            {ours_s:.3f}s (median of {len(ours_t)})  {tokens / ours_s:,.0f} new tokens/s")
        print(f"baseline (one at a time):  {base_s:.3f}s (median of {len(base_t)})  {tokens / base_s:,.0f} new tokens/s")
        print(f"identical greedy outputs:  {total - mismatches}/{total}")
        if mismatches and args.dtype == "float32":
            print(f"FAIL: {mismatches} batched outputs differ from the single-prompt ones (tolerance: 0)",
                  file=sys.stderr)
        elif mismatches:  # half precision: padding changes the rounding, near-ties can flip
            print(f"note: {args.dtype}; {mismatches} outputs differ (not checked outside float32)")
        print(f"ratio={base_s / ours_s:.2f}")
        return 1 if mismatches and args.dtype == "float32" else 0


if __name__ == "__main__":
    sys.exit(main())
