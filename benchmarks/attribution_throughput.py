"""Layer IG throughput: LLM Lab's batching vs a plain per-example Captum loop, same attributions.

Layer Integrated Gradients (embedding layer, n_steps 50, Gauss-Legendre) of the predicted-class
probability for 64 mixed-length sentences with the built-in MiniLM (classifier head, float32).
Ours: `llm_lab.explain.batching.layer_ig_many` (per-example on CPU, length buckets + big internal batch
on GPU). Baseline: `captum.attr.LayerIntegratedGradients` called once per sentence. Also reports the
warm time for one sentence and a 64-token generation attribution with tiny-gpt (or a tiny GPT-2).
The two sides alternate which runs first on each repeat; the median time of each side is compared.
Our attributions must equal Captum's within a max relative difference (|ours − captum|, over the
largest |captum| score) of TOL = 1e-3, for the sentences and for the generation attribution:
both run the same float32 model, path and quadrature; only batching changes the float32 rounding
(~1e-6 relative), so 1e-3 catches a wrong baseline, target or step weight. Otherwise exit status 1.
Last line: ratio=<baseline seconds / our seconds> (higher is better).

    python benchmarks/attribution_throughput.py [--quick] [--out results.json]
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TOL = 1e-3  # max relative difference between our attributions and Captum's (see the docstring)


def sentences(n: int, quick: bool = False) -> list[str]:
    from llm_lab.corpora import pydoc_corpus

    words = " ".join(pydoc_corpus()[:400]).split()
    lengths = [3, 6, 10, 16] if quick else [4, 8, 12, 16, 24, 32, 48, 64]  # words; mixed lengths, cycled
    out, pos = [], 0
    for i in range(n):
        k = lengths[i % len(lengths)]
        out.append(" ".join(words[pos:pos + k]))
        pos += k
    return out


def sync(device):
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="8 short sentences, two repeats, 16-token generation (under a minute on CPU)")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--budgets", type=int, nargs="*", default=[8192, 32768],
                    help="GPU only: also time these token budgets, with and without TF32")
    args = ap.parse_args()
    import torch  # after parsing: --help stays light

    from llm_lab import registry
    from llm_lab.access import LOCAL
    from llm_lab.explain import attributions, batching, generation

    n = args.n or (8 if args.quick else 64)
    repeats = args.repeats or (2 if args.quick else 3)
    loaded = registry.load(LOCAL, "minilm", head="classifier", device=args.device, dtype="float32")
    texts = sentences(n, args.quick)
    print(f"device={loaded.device} threads={torch.get_num_threads()} sentences={n} "
          f"tokens={[len(loaded.tokenizer(t)['input_ids']) for t in texts][:8]}... n_steps={args.steps}", flush=True)

    batching.layer_ig_many(loaded, texts[:2], n_steps=args.steps)  # warm up both paths
    targets = batching.layer_ig_many(loaded, texts[:2], n_steps=args.steps).targets
    batching.captum_loop(loaded, texts[:2], targets, n_steps=args.steps)

    targets_all = batching.layer_ig_many(loaded, texts, n_steps=2).targets  # predicted classes, for Captum
    ours_t, base_t = [], []
    for r in range(repeats):  # alternate which side runs first; the median of each is compared
        for side in (("ours", "captum") if r % 2 == 0 else ("captum", "ours")):
            sync(loaded.device); t0 = time.perf_counter()
            if side == "ours":
                ours = batching.layer_ig_many(loaded, texts, n_steps=args.steps)
                sync(loaded.device); ours_t.append(time.perf_counter() - t0)
            else:
                ref = batching.captum_loop(loaded, texts, targets_all, n_steps=args.steps)
                sync(loaded.device); base_t.append(time.perf_counter() - t0)
    assert list(ours.targets) == list(targets_all), "the predicted classes differ between runs"
    diff = batching.max_relative_difference(ours.scores, ref)
    extra = {}
    if str(loaded.device).startswith("cuda"):  # the same batching without TF32, for the record
        for budget in args.budgets:
            for tf32 in (False, True):
                sync(loaded.device); t0 = time.perf_counter()
                r32 = batching.layer_ig_many(loaded, texts, n_steps=args.steps, tf32=tf32, token_budget=budget)
                sync(loaded.device)
                tag = f"ours_{'tf32' if tf32 else 'fp32'}_budget{budget}"
                extra[tag + "_s"] = round(time.perf_counter() - t0, 3)
                extra[tag + "_diff"] = batching.max_relative_difference(r32.scores, ref)

    one = []
    for _ in range(3):
        t0 = time.perf_counter()
        attributions.attribute(loaded, "A wonderful, warm film with a clever script.", "ig", n_steps=args.steps)
        sync(loaded.device); one.append(time.perf_counter() - t0)

    try:
        gpt = registry.load(LOCAL, "tiny-gpt", head="causal-lm", device=args.device, dtype="float32")
        gpt_name = "tiny-gpt"
    except Exception:
        from llm_lab.tiny import make_tiny_gpt2

        folder = make_tiny_gpt2(Path(tempfile.mkdtemp()) / "tiny-gpt2")
        gpt = registry.load(LOCAL, str(folder), head="causal-lm", device=args.device, dtype="float32")
        gpt_name = "tiny_gpt2 (llm_lab.tiny)"
    prompt = "Lists are mutable sequences, typically used to store collections of"
    gen_steps = 20
    generation.attribute_generation(gpt, prompt, 4, "gen_ig", n_steps=gen_steps)  # warm
    t0 = time.perf_counter()
    gen_tokens = 16 if args.quick else 64
    g_ours = generation.attribute_generation(gpt, prompt, gen_tokens, "gen_ig", n_steps=gen_steps, include_generated=False)
    sync(gpt.device); gen_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    g_ref = generation.attribute_generation(gpt, prompt, gen_tokens, "gen_captum_ig", n_steps=gen_steps)
    sync(gpt.device); gen_captum = time.perf_counter() - t0
    p = len(g_ours.prompt_tokens)
    gen_diff = float(abs(g_ours.array()[:, :p] - g_ref.array()[:, :p]).max() / max(1e-12, abs(g_ref.array()[:, :p]).max()))

    result = {
        "device": loaded.device, "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "sentences": n, "n_steps": args.steps, "strategy": ours.strategy,
        "ours_s": round(statistics.median(ours_t), 3), "captum_loop_s": round(statistics.median(base_t), 3),
        "ours_all_s": [round(x, 3) for x in ours_t], "captum_all_s": [round(x, 3) for x in base_t],
        "max_relative_difference": diff, "one_sentence_warm_s": round(statistics.median(one), 3),
        "generation_model": gpt_name, "generation_tokens": len(g_ours.output_tokens), "generation_n_steps": gen_steps,
        "generation_ours_s": round(gen_ours, 3), "generation_captum_llm_gradient_s": round(gen_captum, 3),
        "generation_max_relative_difference": gen_diff,
        **extra,
        "tolerance": TOL, "ratio": round(statistics.median(base_t) / statistics.median(ours_t), 3),
    }
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    failed = [f"{what} (max relative difference {d:.2e} > {TOL:g})"
              for what, d in (("sentence attributions", diff), ("generation attributions", gen_diff)) if not d <= TOL]
    if failed:
        print("FAIL: ours and Captum differ: " + "; ".join(failed), file=sys.stderr)
    print(f"ratio={result['ratio']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
