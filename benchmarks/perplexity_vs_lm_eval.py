"""Our language-modelling task against lm-evaluation-harness on the same local causal LM and text.

lm-eval (`pip install lm-eval`, not in requirements.txt) scores the texts with `loglikelihood_rolling`
(its wikitext recipe: a JSON file read with the `datasets` json builder, offline) and reports word
perplexity, byte perplexity and bits per byte; we run our `language_modeling` task on the same texts
(same scheme: a BOS/EOS token in front, disjoint windows of the model's context). Both load the
model themselves, both compute a 1,000-resample bootstrap. Checks: the same figures within 1%,
and our wall time.

    python benchmarks/perplexity_vs_lm_eval.py [--quick] [--model PATH]

Last line: ratio=<lm-eval seconds / our seconds> (higher is better for us).
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


def texts(n: int) -> list[str]:
    from llm_lab.corpora import pydoc_corpus

    docs = [line.strip() for line in (ROOT / "llm_lab/demo_data/docs.txt").read_text().splitlines() if line.strip()]
    paragraphs = [" ".join(p.split()) for p in reversed(pydoc_corpus())]  # the tiny tokenizer trains on the first 2,000
    return (docs + paragraphs)[:n]


def local_model(work: Path) -> str:
    builtin = ROOT / "llm_lab/builtin_models/tiny-gpt"
    if (builtin / "config.json").exists() and any(builtin.glob("*.safetensors")):
        return str(builtin)
    from llm_lab.tiny import make_tiny_gpt2

    return str(make_tiny_gpt2(work / "tiny-gpt2"))


def run_lm_eval(model: str, data_file: Path, batch_size: int) -> tuple[dict, float]:
    import lm_eval

    task = {"task": "llm_lab_texts", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data_file)}},
            "test_split": "test", "output_type": "loglikelihood_rolling", "doc_to_text": "", "doc_to_target": "{{text}}",
            "metric_list": [{"metric": "word_perplexity"}, {"metric": "byte_perplexity"}, {"metric": "bits_per_byte"}]}
    t0 = time.perf_counter()
    out = lm_eval.simple_evaluate(model="hf", model_args={"pretrained": model, "dtype": "float32"}, tasks=[task],
                                  batch_size=batch_size, device="cpu", bootstrap_iters=1000, log_samples=False)
    seconds = time.perf_counter() - t0
    res = out["results"]["llm_lab_texts"]
    return {k.split(",")[0]: v for k, v in res.items() if "perplexity" in k or "bits_per_byte" in k}, seconds


def run_ours(model: str, items: list[str], batch_size: int) -> tuple[dict, float]:
    import pandas as pd

    from llm_lab import data, registry
    from llm_lab.access import LOCAL
    from llm_lab.bench import runner
    from llm_lab.bench.suite import Suite, TaskSpec

    data.import_dataset(LOCAL, "texts", "t.csv", pd.DataFrame({"text": items}).to_csv(index=False).encode(),
                        {"text": "text"}, data.Recipe(train=1.0, validation=0.0, drop_duplicates=False, strip=False))
    suite = Suite("ppl", "1", [TaskSpec("ppl", "language_modeling", "texts", batch_size=batch_size)], text="ppl")
    registry.forget()
    t0 = time.perf_counter()
    (res,) = runner.run_suite(LOCAL, suite, [model], use_cache=False, device="cpu")
    seconds = time.perf_counter() - t0
    assert res.status == "ok", res.error
    return res.metrics, seconds


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="60 texts")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--model", help="a local causal LM folder (default: tiny-gpt, else a tiny random GPT-2)")
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ppl-vs-lm-eval-"))
    os.environ["LLM_LAB_HOME"] = str(work / "home")
    items = texts(60 if args.quick else args.n)
    model = args.model or local_model(work)
    data_file = work / "texts.jsonl"
    data_file.write_text("".join(json.dumps({"text": t}) + "\n" for t in items))
    print(f"model {model}, {len(items)} texts, {sum(len(t) for t in items)} characters")
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        print("lm-eval is not installed: pip install lm-eval (used only by this script)", file=sys.stderr)
        return 2
    ours, ours_s = run_ours(model, items, args.batch_size)
    theirs, theirs_s = run_lm_eval(model, data_file, args.batch_size)
    rows = {"word_perplexity": (ours["word_perplexity"], theirs.get("word_perplexity")),
            "byte_perplexity": (ours["byte_perplexity"], theirs.get("byte_perplexity")),
            "bits_per_byte": (ours["bits_per_byte"], theirs.get("bits_per_byte"))}
    worst = 0.0
    for name, (a, b) in rows.items():
        rel = abs(a - b) / abs(b)
        worst = max(worst, rel)
        print(f"{name:>16}: ours {a:.6g}  lm-eval {b:.6g}  relative difference {rel:.2e}")
    print(f"token perplexity (ours only; lm-eval reports word/byte figures): {ours['perplexity']:.6g}")
    print(f"wall time: ours {ours_s:.2f}s, lm-eval {theirs_s:.2f}s")
    if worst > 0.01:
        print("the figures differ by more than 1%", file=sys.stderr)
        return 1
    print(f"ratio={theirs_s / ours_s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
