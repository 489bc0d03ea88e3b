"""Training throughput: our classification fine-tune (through the job system) vs a plain Trainer script.

Both sides train the same model on the same tokenized examples with the same TrainingArguments
values (batch, learning rate, warmup, epochs, logging/checkpoint cadence, eval each epoch,
precision, seed), in the same process, alternating which side goes first. Throughput is end to end:
the samples Trainer trained on (its train_samples_per_second × train_runtime) over the wall-clock
seconds of the whole side. Ours: train.submit() until the job is finished (job record, data
preparation, JobContext callback with progress, curves, log and cancel checks, training,
evaluation, export: safetensors, model card, registry). Baseline: a plain script from tokenising
to model.save_pretrained() + tokenizer.save_pretrained(). tokens/s = samples/s × mean tokens per
example. Trainer's own in-loop figure is reported too (trainer_samples_per_s). The median of each
side over the rounds is compared.

Both sides start from the same weights, seed and data order, so their final training losses must
agree: within LOSS_RTOL = 1e-3 (relative) in fp32, 2e-2 in bf16/fp16 (mixed-precision kernels
round differently); otherwise the script exits with status 1.

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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("LLM_LAB_HOME", tempfile.mkdtemp(prefix="train-bench-"))
os.environ["LLM_LAB_JOBS_INLINE"] = "1"  # the job runs in this process: same machine state for both sides

from llm_lab.access import LOCAL  # noqa: E402  (after sys.path and LLM_LAB_HOME are set)

LOSS_RTOL = {"fp32": 1e-3, "bf16": 2e-2, "fp16": 2e-2}
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
    start = time.perf_counter()
    job = jobs.get(LOCAL, train.submit(LOCAL, cfg))  # inline: returns once the model is exported and registered
    wall = time.perf_counter() - start
    if job["status"] != "succeeded":
        raise SystemExit(f"our run failed: {job['error']}")
    stats = job["result"]["stats"]
    samples = stats["samples_per_s"] * stats["train_runtime_s"]
    tokens_per_sample = stats["tokens_per_s"] / stats["samples_per_s"]
    return {"samples_per_s": samples / wall, "tokens_per_s": samples * tokens_per_sample / wall,
            "wall_s": wall, "trainer_samples_per_s": stats["samples_per_s"],
            "train_runtime_s": stats["train_runtime_s"], "train_loss": stats["train_loss"],
            "precision": stats["precision"]}


def baseline(cfg) -> dict:
    """A plain script: tokenize, AutoModelForSequenceClassification, TrainingArguments, Trainer.train()."""
    import numpy as np
    import torch
    from sklearn.metrics import accuracy_score, f1_score
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding,
                              Trainer, TrainingArguments)

    from llm_lab import data, registry

    start = time.perf_counter()
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
    trainer.evaluate()  # a script reports its final metrics too (ours does)
    export = Path(out) / "final"
    model.save_pretrained(export, safe_serialization=True)
    tok.save_pretrained(export)
    wall = time.perf_counter() - start
    tokens = float(np.mean([len(r["input_ids"]) for r in train_rows]))
    sps = output.metrics["train_samples_per_second"]
    samples = sps * output.metrics["train_runtime"]
    return {"samples_per_s": samples / wall, "tokens_per_s": samples * tokens / wall, "wall_s": wall,
            "trainer_samples_per_s": sps, "train_runtime_s": output.metrics["train_runtime"],
            "train_loss": output.training_loss, "precision": "bf16" if cuda else "fp32"}


def compare(cfg, rounds: int) -> dict:
    runs = {"ours": [], "baseline": []}
    for r in range(rounds):
        order = ("baseline", "ours") if r % 2 == 0 else ("ours", "baseline")
        for side in order:
            result = (ours if side == "ours" else baseline)(cfg)
            runs[side].append(result)
            print(f"round {r + 1} {side:>8}: {result['samples_per_s']:8.1f} samples/s end to end "
                  f"({result['wall_s']:.1f} s; Trainer alone {result['trainer_samples_per_s']:.1f}) "
                  f"{result['tokens_per_s']:9.0f} tokens/s  loss {result['train_loss']:.5f}", flush=True)
    median = {s: statistics.median(r["samples_per_s"] for r in rs) for s, rs in runs.items()}
    return {"runs": runs, "median": median,
            "best": {side: max(r["samples_per_s"] for r in rs) for side, rs in runs.items()},
            "trainer_median": {s: statistics.median(r["trainer_samples_per_s"] for r in rs) for s, rs in runs.items()},
            "loss_check": check_losses(runs), "ratio": median["ours"] / median["baseline"]}


def check_losses(runs: dict) -> dict:
    """Every run's final training loss against the first baseline run's."""
    ref = runs["baseline"][0]
    tol = LOSS_RTOL.get(ref["precision"], 2e-2)
    worst = max(abs(r["train_loss"] - ref["train_loss"]) / max(abs(ref["train_loss"]), 1e-8)
                for rs in runs.values() for r in rs)
    return {"reference_loss": ref["train_loss"], "ours_losses": [r["train_loss"] for r in runs["ours"]],
            "baseline_losses": [r["train_loss"] for r in runs["baseline"]],
            "max_relative_difference": worst, "tolerance": tol, "ok": worst <= tol}


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
    for side, fn in (("plain_trainer", baseline), ("ours", ours)):
        torch.cuda.reset_peak_memory_stats()
        res = fn(TrainConfig(**dict(cfg.as_dict(), name="minilm-20k")))
        res["peak_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
        out[f"minilm_20k_{side}"] = res
        print(side, json.dumps(res, default=str), flush=True)
    out.setdefault("ratio", out["minilm_20k_ours"]["samples_per_s"] / out["minilm_20k_plain_trainer"]["samples_per_s"])
    out.setdefault("loss_check", check_losses({"baseline": [out["minilm_20k_plain_trainer"]],
                                               "ours": [out["minilm_20k_ours"]]}))
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


def main() -> int:
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
    check = result.get("loss_check") or {"ok": True}
    if not check["ok"]:
        print(f"FAIL: the training losses of ours and the baseline differ by {check['max_relative_difference']:.2e} "
              f"(relative) > {check['tolerance']:g}", file=sys.stderr)
    print(f"ratio={result['ratio']:.3f}")
    return 0 if check["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
