"""Training throughput: our classification fine-tune (through the job system) vs a plain Trainer script.

Both sides train the same model on the same tokenized examples with the same TrainingArguments
values (batch, learning rate, warmup, epochs, logging/checkpoint cadence, eval each epoch,
precision, seed), in the same process, alternating. Throughput is Trainer's own
train_samples_per_second (tokens/s = samples/s × mean tokens per example). Ours adds the
job record, the JobContext callback (progress, curves, log, cancel checks) and the export.

    python benchmarks/train_throughput.py --quick        # tiny BERT, CPU, < 1 min
    python benchmarks/train_throughput.py                # MiniLM, 2,000 examples
    python benchmarks/train_throughput.py --gpu --out r.json   # H100 suite: MiniLM on 20,000 examples
                                                         # for one epoch + pretraining tiny-gpt (MFU)
Last line: ratio=<ours/baseline samples per second> (higher is better; ≥ 0.95 means no visible cost).
"""
import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from llm_lab.access import LOCAL

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("LLM_LAB_HOME", tempfile.mkdtemp(prefix="train-bench-"))
os.environ["LLM_LAB_JOBS_INLINE"] = "1"  # the job runs in this process: same machine state for both sides

POS = "great wonderful excellent lovely superb delightful charming brilliant".split()
NEG = "terrible awful dreadful boring poor dull clumsy tedious".split()


def make_dataset(name: str, rows: int) -> None:
    from llm_lab import data

    rng = random.Random(0)
    lines = ["text,label"]
    for i in range(rows):
        words = POS if i % 2 else NEG
        lines.append(f"a {rng.choice(words)} and {rng.choice(words)} film; story {i} was {rng.choice(words)},"
                     f"{'pos' if i % 2 else 'neg'}")
    data.import_dataset(LOCAL, name, f"{name}.csv", "\n".join(lines).encode(),
                        recipe=data.Recipe(train=0.9, validation=0.1, drop_duplicates=False))


def ours(cfg) -> dict:
    from llm_lab import jobs, train

    cfg = type(cfg)(**dict(cfg.as_dict(), name=f"bench-{time.time_ns()}"))
    job = jobs.get(LOCAL, train.submit(LOCAL, cfg))
    if job["status"] != "succeeded":
        raise SystemExit(f"our run failed: {job['error']}")
    stats = job["result"]["stats"]
    return {"samples_per_s": stats["samples_per_s"], "tokens_per_s": stats["tokens_per_s"],
            "train_runtime_s": stats["train_runtime_s"], "wall_s": stats["wall_s"]}


def baseline(cfg) -> dict:
    """A plain script: tokenize, AutoModelForSequenceClassification, TrainingArguments, Trainer.train()."""
    import numpy as np
    import torch
    from sklearn.metrics import accuracy_score, f1_score
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding,
                              Trainer, TrainingArguments)

    from llm_lab import data, registry

    source = registry.resolve(LOCAL, cfg.model).location
    tok = AutoTokenizer.from_pretrained(source)
    frame = data.load_frame(LOCAL, cfg.dataset)
    names = sorted(frame["label"].unique())

    def encode(part):
        enc = tok(part["text"].tolist(), truncation=True, max_length=cfg.max_length)
        return [{"input_ids": i, "attention_mask": m, "labels": names.index(y)}
                for i, m, y in zip(enc["input_ids"], enc["attention_mask"], part["label"])]

    train_rows, eval_rows = encode(frame[frame.split == "train"]), encode(frame[frame.split == "validation"])
    torch.manual_seed(cfg.seed)
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=len(names),
                                                               ignore_mismatched_sizes=True)
    cuda = torch.cuda.is_available()
    steps_per_epoch = -(-len(train_rows) // cfg.batch_size)
    logging = max(1, min(50, int(steps_per_epoch * cfg.epochs) // 50))
    save = max(logging, -(-max(1, steps_per_epoch // 2) // logging) * logging)

    def metrics(p):
        pred = np.argmax(p.predictions, -1)
        return {"accuracy": accuracy_score(p.label_ids, pred), "f1": f1_score(p.label_ids, pred, average="macro")}

    out = tempfile.mkdtemp(prefix="plain-trainer-")
    args = TrainingArguments(
        output_dir=out, per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=cfg.batch_size * 2,
        num_train_epochs=cfg.epochs, learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup, lr_scheduler_type=cfg.scheduler, bf16=cuda, tf32=True if cuda else None,
        use_cpu=not cuda, eval_strategy="epoch", save_strategy="steps", save_steps=save, save_total_limit=2,
        logging_steps=logging, seed=cfg.seed, report_to="none", disable_tqdm=True, dataloader_pin_memory=cuda)
    trainer = Trainer(model=model, args=args, train_dataset=train_rows, eval_dataset=eval_rows,
                      data_collator=DataCollatorWithPadding(tok, pad_to_multiple_of=8 if cuda else None),
                      compute_metrics=metrics)
    output = trainer.train()
    tokens = float(np.mean([len(r["input_ids"]) for r in train_rows]))
    sps = output.metrics["train_samples_per_second"]
    return {"samples_per_s": sps, "tokens_per_s": sps * tokens, "train_runtime_s": output.metrics["train_runtime"]}


def compare(cfg, rounds: int) -> dict:
    runs = {"ours": [], "baseline": []}
    for r in range(rounds):
        order = ("baseline", "ours") if r % 2 == 0 else ("ours", "baseline")
        for side in order:
            result = (ours if side == "ours" else baseline)(cfg)
            runs[side].append(result)
            print(f"round {r + 1} {side:>8}: {result['samples_per_s']:8.1f} samples/s "
                  f"{result['tokens_per_s']:9.0f} tokens/s", flush=True)
    best = {side: max(r["samples_per_s"] for r in rs) for side, rs in runs.items()}
    return {"runs": runs, "best": best, "median": {s: statistics.median(r["samples_per_s"] for r in rs)
                                                  for s, rs in runs.items()},
            "ratio": best["ours"] / best["baseline"]}


def peak_flops() -> float:
    import torch

    name = torch.cuda.get_device_name(0)
    if "H200" in name or "H100" in name and ("SXM" in name or "HBM3" in name):
        return 989e12
    if "H100" in name:
        return 756e12
    if "A100" in name:
        return 312e12
    return 989e12


def gpu_suite(out: dict, rounds: int = 1, pretrain: bool = True) -> None:
    """MiniLM on 20,000 short examples for one epoch (ours and plain), then pretrain tiny-gpt with MFU."""
    import torch

    from llm_lab import jobs, train
    from llm_lab.train import TINY_GPT, TrainConfig

    out["device"] = torch.cuda.get_device_name(0)
    make_dataset("short20k", 22_223)  # 90% train = 20,000 examples
    cfg = TrainConfig(task="classify", model="minilm", dataset="short20k", epochs=1.0, batch_size=64,
                      learning_rate=5e-5, max_length=64)
    if rounds > 1:  # alternate the order so CUDA warm-up favours neither side
        out["minilm_20k_rounds"] = compare(cfg, rounds)
        out["ratio"] = out["minilm_20k_rounds"]["ratio"]
        out["peak_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
        if not pretrain:
            return
    for side, fn in (("plain_trainer", baseline), ("ours", None)):
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        if fn:
            res = fn(cfg)
        else:
            job = jobs.get(LOCAL, train.submit(LOCAL, TrainConfig(**dict(cfg.as_dict(), name="minilm-20k"))))
            assert job["status"] == "succeeded", job["error"]
            res = dict(job["result"]["stats"], metrics=job["result"]["metrics"])
        res["wall_s_including_load_and_save"] = time.perf_counter() - start
        res["peak_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
        out[f"minilm_20k_{side}"] = res
        print(side, json.dumps(res, default=str), flush=True)
    out.setdefault("ratio", out["minilm_20k_ours"]["samples_per_s"] / out["minilm_20k_plain_trainer"]["samples_per_s"])
    for label, extra in (("tiny_gpt_recipe", {}), ("tiny_gpt_batch128", {"batch_size": 128, "epochs": 40.0})):
        torch.cuda.reset_peak_memory_stats()
        pcfg = TrainConfig(task="pretrain", name=f"tiny-gpt-{label}", **dict(TINY_GPT, **extra))
        start = time.perf_counter()
        job = jobs.get(LOCAL, train.submit(LOCAL, pcfg))
        assert job["status"] == "succeeded", job["error"]
        stats = dict(job["result"]["stats"], metrics=job["result"]["metrics"])
        arch = pcfg.architecture()
        flops_per_token = 6 * stats["parameters"] + 12 * arch["n_layer"] * arch["n_positions"] * arch["n_embd"]
        stats["mfu"] = flops_per_token * stats["tokens_per_s"] / peak_flops()
        stats["peak_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
        stats["wall_s_including_tokenizer_and_save"] = time.perf_counter() - start
        out[f"pretrain_{label}"] = stats
        print(label, json.dumps(stats, default=str), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny BERT on CPU, under a minute")
    parser.add_argument("--gpu", action="store_true", help="the H100 suite (MiniLM 20k examples, tiny-gpt)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--no-pretrain", action="store_true", help="--gpu: only the MiniLM comparison")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    import torch

    from llm_lab.train import TrainConfig

    if torch.cuda.is_available() is False:
        torch.set_num_threads(min(2, torch.get_num_threads()))
    result: dict = {}
    if args.gpu:
        gpu_suite(result, rounds=args.rounds or 1, pretrain=not args.no_pretrain)
    else:
        if args.quick:
            from llm_lab import registry
            from llm_lab.tiny import make_tiny_bert

            folder = make_tiny_bert(Path(os.environ["LLM_LAB_HOME"]) / "tiny-bert", hidden=64, layers=2)
            registry.register(LOCAL, registry.ModelEntry("bench-tiny-bert", "local", str(folder), "classifier"))
            make_dataset("bench", 1_200)
            cfg = TrainConfig(task="classify", model="bench-tiny-bert", dataset="bench", epochs=2.0, batch_size=16,
                              learning_rate=1e-3, max_length=64)
        else:
            make_dataset("bench", 2_000)
            cfg = TrainConfig(task="classify", model="minilm", dataset="bench", epochs=1.0, batch_size=16,
                              max_length=64)
        result = compare(cfg, args.rounds or (4 if args.quick else 2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2, default=str))
    print(f"ratio={result['ratio']:.3f}")


if __name__ == "__main__":
    main()
