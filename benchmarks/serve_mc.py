"""lm-evaluation-harness's multiple-choice scoring through `serve` over HTTP against the same scoring in-process.

ours:     `python -m llm_lab serve MODEL` (dynamic batching) scored by lm-eval's `local-completions` client with
          its default settings (token-id prompts, `echo: true`, `logprobs: 1`, `max_tokens: 1`) and
          `batch_size` prompts per request
baseline: lm-eval's own `hf` backend on the same folder, in this process, the same batch size

The task: N items (default 200, --quick 40) of a question and 4 options over local JSONL (lm-eval's json
builder, offline), given to `lm_eval.simple_evaluate` as a task dict. The server is started (and warmed up)
before the clock starts: a server is a long-lived process. Checks: every (item, option) log-likelihood within
1e-4 of the baseline's and every is-greedy flag and accuracy decision identical; otherwise the script exits
with status 1. Prints `ratio=<ours seconds / baseline seconds>` last (lower is better; the goal is <= 2).

    python benchmarks/serve_mc.py [--quick] [--items N] [--batch-size B]
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(key, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from benchmarks.serve_throughput import KEY, start, wait_ready

TOLERANCE = 1e-4


def local_model(work: Path) -> str:
    builtin = ROOT / "llm_lab/builtin_models/tiny-gpt"
    if (builtin / "config.json").exists() and any(builtin.glob("*.safetensors")):
        return str(builtin)
    from llm_lab.tiny import make_tiny_gpt2

    return str(make_tiny_gpt2(work / "tiny-gpt2"))


def items(n: int) -> list[dict]:
    """Question: a paragraph's first words; options: its next words and three other paragraphs' (answer 0)."""
    from llm_lab.corpora import pydoc_corpus

    paragraphs = [p.split() for p in pydoc_corpus() if len(p.split()) >= 12]
    out = []
    for i in range(n):
        words = paragraphs[(i * 7) % len(paragraphs)]
        cut = 4 + i % 6
        others = [paragraphs[(i * 7 + 13 * k) % len(paragraphs)] for k in (1, 2, 3)]
        options = [" " + " ".join(words[cut:cut + 3])] + [" " + " ".join(o[cut:cut + 3]) for o in others]
        out.append({"question": " ".join(words[:cut]), "choices": options, "answer": 0})
    return out


def task(data_file: Path) -> dict:
    return {"task": "serve_mc", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data_file)}},
            "test_split": "test", "output_type": "multiple_choice", "doc_to_text": "{{question}}",
            "doc_to_choice": "{{choices}}", "doc_to_target": "answer",
            "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}]}


def evaluate(model: str, model_args: str, data_file: Path, batch_size: int) -> tuple[list, float, dict]:
    import lm_eval

    t0 = time.perf_counter()
    out = lm_eval.simple_evaluate(model=model, model_args=model_args, tasks=[task(data_file)], log_samples=True,
                                  batch_size=batch_size, bootstrap_iters=0)
    seconds = time.perf_counter() - t0
    samples = sorted(out["samples"]["serve_mc"], key=lambda s: s["doc_id"])
    return samples, seconds, out["results"]["serve_mc"]


def warm_up(url: str) -> None:
    """One scoring request: the server's first call pays for lazy imports and allocations."""
    import httpx

    httpx.post(url + "/v1/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=120,
               json={"prompt": [[1, 2, 3]], "max_tokens": 1, "echo": True, "logprobs": 1, "temperature": 0}
               ).raise_for_status()


def register(home: Path, folder: str, name: str) -> None:
    os.environ["LLM_LAB_HOME"] = str(home)
    from llm_lab import registry
    from llm_lab.access import LOCAL

    registry.register(LOCAL, registry.ModelEntry(name, "local", folder, "causal-lm"))


def compare(ours: list, base: list) -> tuple[int, int, float]:
    """(mismatched decisions or greedy flags, log-likelihoods beyond tolerance, largest difference)."""
    wrong_flags = beyond = 0
    largest = 0.0
    for a, b in zip(ours, base, strict=True):
        wrong_flags += a["acc"] != b["acc"] or a["acc_norm"] != b["acc_norm"]
        for (ll_a, g_a), (ll_b, g_b) in zip([r[0] for r in a["resps"]], [r[0] for r in b["resps"]], strict=True):
            largest = max(largest, abs(ll_a - ll_b))
            beyond += abs(ll_a - ll_b) > TOLERANCE
            wrong_flags += g_a != g_b
    return wrong_flags, beyond, largest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="40 items (under a minute)")
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=16, help="prompts per request / hf batch size")
    parser.add_argument("--model", help="a causal LM folder (default: the built-in tiny-gpt, else a tiny GPT-2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, for the server and in-process")
    args = parser.parse_args()
    if args.quick:
        args.items = 40
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="serve-mc-") as tmp:
        work = Path(tmp)
        folder = args.model or local_model(work)
        data = work / "mc.jsonl"
        data.write_text("".join(json.dumps(item) + "\n" for item in items(args.items)))
        register(work, folder, "bench-lm")
        server = start("bench-lm", work, ["--threads", str(args.threads)])
        try:
            wait_ready(server)
            os.environ["OPENAI_API_KEY"] = KEY
            url = server["url"] + "/v1/completions"
            remote = f"model=bench-lm,base_url={url},tokenizer={folder},tokenizer_backend=huggingface"
            warm_up(server["url"])
            ours, ours_s, ours_res = evaluate("local-completions", remote, data, args.batch_size)
        finally:
            server["proc"].terminate()
            server["proc"].wait(10)
        base, base_s, base_res = evaluate("hf", f"pretrained={folder},device=cpu,dtype=float32", data, args.batch_size)
    options = sum(len(s["resps"]) for s in base)
    flags, beyond, largest = compare(ours, base)
    print(f"{args.items} multiple-choice items ({options} log-likelihoods), batch size {args.batch_size}, "
          f"torch threads {args.threads}")
    print(f"ours (lm-eval local-completions -> serve over HTTP): {ours_s:6.2f} s  acc {ours_res['acc,none']:.3f}")
    print(f"baseline (lm-eval hf, in-process):                  {base_s:6.2f} s  acc {base_res['acc,none']:.3f}")
    print(f"largest log-likelihood difference: {largest:.2e} (tolerance {TOLERANCE:g}); "
          f"{beyond} beyond it; {flags} decisions or greedy flags differ")
    failed = bool(beyond or flags)
    if failed:
        print("FAIL: the server's scores differ from the in-process ones beyond the tolerance", file=sys.stderr)
    print(f"ratio={ours_s / base_s:.2f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
