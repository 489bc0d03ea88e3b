"""Run one training config with HF Trainer: arguments, the OOM retry, NaN and disk-full handling.

`train(actor, cfg, reporter, workdir, resume)` returns a `Trained` (model, tokenizer, metrics);
saving and registering the result is `export.finish`'s job.
"""
import json
import math
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..device import free_memory, is_out_of_memory, pick_device, pick_dtype
from ..errors import LabError, disk_full_message, failure_message, is_disk_full
from . import data_prep, evaluation, modeling, task_metrics
from ..access import Actor
from .config import TrainConfig

CKPT_RE = re.compile(r"^checkpoint-(\d+)$")


class TrainingError(LabError):
    pass


@dataclass
class Trained:
    model: object
    tokenizer: object
    prepared: data_prep.Prepared
    metrics: dict
    stats: dict = field(default_factory=dict)
    distillation: dict = field(default_factory=dict)  # teacher, layers kept, T, alpha (a distilled student)
    evaluation: dict = field(default_factory=dict)    # evaluation.Evaluation.to_dict(): intervals, vs the base


# ---------------------------------------------------------------- inputs
def prepare(actor: Actor, cfg: TrainConfig, workdir: Path, resume: bool):
    """Tokenizer, tokenized data and a model factory for the task (data checks come first)."""
    if cfg.distill:
        from . import distill

        return distill.prepare(actor, cfg)
    if cfg.task == "classify":
        tokenizer = modeling.tokenizer_for(actor, cfg.model)
        prepared = data_prep.classification(actor, cfg, tokenizer)
        return tokenizer, prepared, lambda: modeling.classifier(actor, cfg, prepared.labels)
    if cfg.task == "causal-lm":
        tokenizer = modeling.tokenizer_for(actor, cfg.model)
        prepared = data_prep.causal(actor, cfg, tokenizer)
        return tokenizer, prepared, lambda: modeling.causal_lm(actor, cfg)
    texts, meta = data_prep.pretrain_texts(actor, cfg)
    arch = cfg.architecture()
    tok_dir = workdir / "tokenizer"
    if resume and (tok_dir / "tokenizer.json").exists():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    else:
        from ..tiny import train_bpe_tokenizer

        tokenizer = train_bpe_tokenizer(texts, arch["vocab_size"], arch["n_positions"])  # deterministic
        if _rank() == 0:
            tokenizer.save_pretrained(tok_dir)
    prepared = data_prep.pretrain_blocks(cfg, texts, tokenizer, arch["n_positions"], meta)
    return tokenizer, prepared, lambda: modeling.gpt2_from_scratch(cfg, tokenizer)


def collator(cfg: TrainConfig, tokenizer, on_cuda: bool):
    if cfg.task == "classify":
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if on_cuda else None)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return data_prep.CausalCollator(pad, multiple_of=8 if on_cuda else 0)


# ---------------------------------------------------------------- arguments
def schedule(cfg: TrainConfig, n_train: int, batch_size: int, grad_accum: int, world_size: int = 1) -> dict:
    steps_per_epoch = max(1, math.ceil(n_train / (batch_size * world_size)) // grad_accum)
    total = cfg.max_steps if cfg.max_steps > 0 else max(1, math.ceil(cfg.epochs * steps_per_epoch))
    logging = cfg.logging_steps or max(1, min(50, total // 50))
    save = cfg.save_steps or max(1, steps_per_epoch // 2)
    save = max(logging, math.ceil(save / logging) * logging)  # a save step is always a logged (NaN-checked) step
    return {"steps_per_epoch": steps_per_epoch, "total_steps": total, "logging_steps": logging, "save_steps": save}


def training_args(cfg: TrainConfig, output_dir: Path, n_train: int, has_eval: bool, batch_size: int | None = None,
                  grad_accum: int | None = None):
    import torch
    from transformers import TrainingArguments

    batch_size, grad_accum = batch_size or cfg.batch_size, grad_accum or cfg.grad_accum
    device = train_device(cfg)
    cuda = device == "cuda"
    precision = cfg.precision
    if precision == "auto":  # bf16 where llm_lab.device picks it (CUDA with bf16); fp16 mixed precision on older GPUs
        precision = "bf16" if pick_dtype(device) == torch.bfloat16 else "fp16" if cuda else "fp32"
    if precision in ("bf16", "fp16") and not cuda:
        precision = "fp32"  # mixed precision training needs a GPU here
    sched = schedule(cfg, n_train, batch_size, grad_accum, _world_size())
    best, greater = task_metrics.best_metric(cfg.task)
    return TrainingArguments(
        output_dir=str(output_dir), per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size * 2, gradient_accumulation_steps=grad_accum,
        num_train_epochs=cfg.epochs, max_steps=cfg.max_steps, learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay, warmup_steps=cfg.warmup, lr_scheduler_type=cfg.scheduler,
        bf16=precision == "bf16", fp16=precision == "fp16",
        tf32=True if cuda and torch.cuda.get_device_capability()[0] >= 8 else None,
        use_cpu=device == "cpu",
        eval_strategy="epoch" if has_eval else "no", save_strategy="steps", save_steps=sched["save_steps"],
        save_total_limit=2, logging_strategy="steps", logging_steps=sched["logging_steps"],
        logging_nan_inf_filter=False, metric_for_best_model=best if has_eval else None,
        greater_is_better=greater if has_eval else None, load_best_model_at_end=False,
        seed=cfg.seed, data_seed=cfg.seed, report_to="none", disable_tqdm=True,
        remove_unused_columns=False, label_names=["labels"], dataloader_num_workers=0,
        dataloader_pin_memory=cuda, save_only_model=False, ddp_find_unused_parameters=False)


def train_device(cfg: TrainConfig) -> str:
    """"cpu" when asked for; otherwise what `llm_lab.device.pick_device` finds (CUDA, then MPS, then
    CPU), so `device: cuda` on a machine without a GPU trains where it can instead of failing."""
    return "cpu" if cfg.device == "cpu" else pick_device()


def _world_size() -> int:
    import os

    return int(os.environ.get("WORLD_SIZE", "1"))


def _rank() -> int:
    import os

    return int(os.environ.get("RANK", "0"))


# ---------------------------------------------------------------- checkpoints
def _complete(path: Path) -> bool:
    """Whether a checkpoint folder was written to the end: the Trainer writes trainer_state.json last, after the
    weights, the optimizer and the random state, so a whole, readable one means the rest is there too."""
    try:
        json.loads((path / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return any(path.glob("*.safetensors"))


def checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints (trainer state and weights written), newest first. Half-written ones (the process
    killed, or the disk full, mid-save) are removed, so a resume never starts from one."""
    if not folder.exists():
        return []
    found = []
    for path in folder.iterdir():
        m = CKPT_RE.match(path.name)
        if m and path.is_dir():
            if _complete(path):
                found.append((int(m.group(1)), path))
            else:
                shutil.rmtree(path, ignore_errors=True)  # half-written (killed or disk full mid-save)
    return [p for _, p in sorted(found, reverse=True)]


def _resume_note(out_dir: Path) -> str:
    """What resuming does after a failure, said truthfully: from the newest whole checkpoint, or from the start
    when none was saved. Looking removes the half-written one the failure left."""
    good = checkpoints(out_dir)
    if good:
        return f"it continues from its last checkpoint ({good[0].name})"
    return "no checkpoint was saved before the disk filled up, so it starts from the beginning"


# ---------------------------------------------------------------- the run
def train(actor: Actor, cfg: TrainConfig, reporter, workdir: Path, resume: bool = False, build_trainer=None) -> Trained:
    """Train to the end, retrying out-of-memory with half the batch and twice the accumulation."""
    import torch
    import transformers
    from transformers import EarlyStoppingCallback, Trainer, set_seed
    from transformers.trainer_callback import PrinterCallback

    from .callback import JobReporterCallback

    cfg.validate()
    transformers.utils.logging.disable_progress_bar()
    transformers.logging.set_verbosity_error()
    workdir = Path(workdir)
    out_dir = workdir / "checkpoints"
    out_dir.mkdir(parents=True, exist_ok=True)
    set_seed(cfg.seed)
    tokenizer, prepared, make_model = prepare(actor, cfg, workdir, resume)
    distillation = {}
    if cfg.distill:
        from . import distill

        build_trainer = build_trainer or distill.trainer_builder(actor, cfg)
        distillation = distill.record(actor, cfg)
        reporter.log(distill.describe(distillation))
    reporter.log(f"Data: {len(prepared.train)} training and {len(prepared.eval or [])} evaluation examples, "
                 f"{prepared.tokens_per_sample:.0f} tokens per example on average")
    batch, accum = cfg.batch_size, cfg.grad_accum
    started = time.perf_counter()
    while True:
        set_seed(cfg.seed)
        model = make_model()
        total, trainable = modeling.count_parameters(model)
        args = training_args(cfg, out_dir, len(prepared.train), prepared.eval is not None, batch, accum)
        callback = JobReporterCallback(reporter, batch * accum * args.world_size, prepared.tokens_per_sample,
                                       perplexity=cfg.task != "classify")
        callbacks = [callback]
        if cfg.early_stopping and prepared.eval is not None:
            callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping))
        trainer = (build_trainer or Trainer)(
            model=model, args=args, train_dataset=prepared.train, eval_dataset=prepared.eval,
            data_collator=collator(cfg, tokenizer, args.device.type == "cuda"), processing_class=tokenizer,
            compute_metrics=task_metrics.classification_metrics if cfg.task == "classify" else None,
            callbacks=callbacks)
        trainer.remove_callback(PrinterCallback)  # our callback reports; no dicts printed to stdout
        found = checkpoints(out_dir)
        ckpt = str(found[0]) if found and (resume or batch != cfg.batch_size) else None
        if resume and not ckpt:
            reporter.log("No checkpoint was saved before the interruption: starting from the beginning.")
        elif ckpt:
            reporter.log(f"Resuming from {Path(ckpt).name}")
        reporter.log(f"Model: {total:,} parameters ({trainable:,} trainable) on {args.device.type}, "
                     f"{'bf16' if args.bf16 else 'fp16' if args.fp16 else 'fp32'}")
        try:
            output = trainer.train(resume_from_checkpoint=ckpt)
            break
        except BaseException as exc:
            if is_disk_full(exc):
                raise TrainingError(disk_full_message(workdir.parent, exc, _resume_note(out_dir))) from exc
            if not is_out_of_memory(exc):
                raise
            del trainer, model
            free_memory()
            if batch == 1:
                raise TrainingError(
                    "Out of memory even with a batch of 1. Lower the maximum length (now "
                    f"{cfg.max_length}), use LoRA, or pick a smaller model.") from exc
            batch, accum = batch // 2, accum * 2
            reporter.log(f"Out of memory: retrying with batch {batch} × gradient accumulation {accum} "
                         "(same effective batch).")
    if callback.nan_step is not None or not math.isfinite(output.training_loss):
        good = checkpoints(out_dir)
        where = f"The last good checkpoint ({good[0].name}) is kept in {good[0].parent}." if good else \
            "No checkpoint was saved before it happened."
        raise TrainingError(f"The training loss became NaN/inf at step {callback.nan_step or trainer.state.global_step}; "
                            f"training stopped and no model was saved. {where} Lower the learning rate "
                            f"(now {cfg.learning_rate:g}) or use fp32, then train again.")
    model = trainer.model
    if any(not torch.isfinite(p).all() for p in model.parameters()):
        raise TrainingError("The weights contain NaN/inf after training; no model was saved. Lower the learning rate.")
    metrics, held_out = final_metrics(trainer, prepared, cfg, actor, reporter)
    wall = time.perf_counter() - started
    stats = {"steps": trainer.state.global_step, "epochs": round(trainer.state.epoch or 0, 3),
             "train_loss": round(output.training_loss, 5), "train_runtime_s": round(output.metrics["train_runtime"], 2),
             "samples_per_s": round(output.metrics["train_samples_per_second"], 2),
             "tokens_per_s": round(output.metrics["train_samples_per_second"] * prepared.tokens_per_sample, 1),
             "wall_s": round(wall, 2), "batch_size": batch, "grad_accum": accum, "parameters": total,
             "trainable_parameters": trainable, "device": args.device.type,
             "precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"}
    (workdir / "train_stats.json").write_text(json.dumps({"stats": stats, "metrics": metrics,
                                                          "evaluation": held_out}, indent=2))
    return Trained(model, tokenizer, prepared, metrics, stats, distillation, held_out)


def final_metrics(trainer, prepared, cfg: TrainConfig, actor: Actor | None = None, reporter=None) -> tuple[dict, dict]:
    """The last evaluation if it was at the final step, else one more evaluation; and the held-out intervals
    with the comparison against the base (`evaluation`), as a dict to store."""
    if prepared.eval is None:
        return {}, {}
    history = [h for h in trainer.state.log_history if "eval_loss" in h]
    if history and history[-1].get("step") == trainer.state.global_step:
        metrics = dict(history[-1])
    else:
        metrics = trainer.evaluate()
    metrics = {k: float(v) for k, v in metrics.items() if k.startswith("eval_") and isinstance(v, (int, float))
               and not k.endswith(("_runtime", "_per_second"))}
    held_out = evaluation.Evaluation()
    if cfg.task == "classify":
        # the per-row predictions behind accuracy and F1 (Trainer's metrics keep only the averages)
        predicted = trainer.predict(prepared.eval)
        logits = predicted.predictions[0] if isinstance(predicted.predictions, tuple) else predicted.predictions
        found = evaluation.classification(logits, predicted.label_ids)
        held_out.note = ("The base model was not evaluated: a fine-tuned classifier's head is new (or its labels "
                         "differ), so the base has no accuracy on these labels to compare with.")
    else:
        batch = trainer.args.per_device_eval_batch_size
        scores = held_out_scores(trainer.model, trainer.processing_class, prepared.eval.rows, batch)
        if scores is None:
            return metrics, {}
        nll, tokens = scores
        metrics.update({"eval_loss": float(nll.sum() / tokens.sum()), "eval_tokens": float(tokens.sum())})
        task_metrics.add_perplexity(metrics)
        found = {"eval_perplexity": evaluation.perplexity(nll, tokens)}
        held_out.base, held_out.note = _against_base(actor, cfg, prepared.eval.rows, scores, batch, reporter)
        if actor is not None and _rank() == 0:  # the base's and this model's answers to held-out prompts
            from . import before_after

            held_out.before_after = before_after.compare(actor, cfg, trainer.model, trainer.processing_class,
                                                         reporter)
    held_out.intervals = {k: ci.to_dict() for k, ci in found.items()}
    return metrics, held_out.to_dict()


def _against_base(actor, cfg: TrainConfig, rows, scores, batch_size, reporter) -> tuple[dict | None, str]:
    """The base model's perplexity on the same held-out rows, paired with the fine-tuned one's (a causal-LM
    fine-tune whose held-out split is cheap to score; else why not)."""
    if cfg.task != "causal-lm" or cfg.distill or actor is None:
        return None, ("No base model to compare with." if cfg.task == "pretrain" else
                      "The base (teacher) was not evaluated on the held-out rows.")
    if _rank() != 0:
        return None, ""  # one process scores the base; only it saves the model
    if not evaluation.is_cheap(scores[1]):
        return None, (f"The base model was not evaluated: {int(scores[1].sum()):,} held-out tokens is more than the "
                      f"{evaluation.BASE_TOKEN_LIMIT:,} scored on CPU after training.")
    from .. import registry
    from .export import TASK_HEAD

    try:
        # as export.check_changed loads it: CPU, float32, kept by the registry for that check
        base = registry.load(actor, cfg.model, head=TASK_HEAD[cfg.task], device="cpu", dtype="float32")
        base_scores = held_out_scores(base.model, base.tokenizer, rows, batch_size)
    except Exception as exc:  # the comparison is extra: a base that cannot score the rows must not lose the model
        return None, f"The base model was not evaluated: {failure_message(exc)}"
    if base_scores is None:
        return None, "The base model scored no held-out tokens."
    comparison = evaluation.against_base(cfg.model, cfg.name or cfg.default_name(), base_scores, scores)
    if reporter is not None:
        reporter.log(f"Against the base: {comparison.to_dict()['verdict']}")
    return comparison.to_dict(), ""


def held_out_scores(model, tokenizer, rows: list[dict], batch_size: int | None = None):
    """The final evaluation of a language model, through the inference layer (`inference.score_tokens`, what the
    benchmark's language-modelling and multiple-choice tasks run): per held-out row, the summed negative
    log-likelihood of the tokens it scores (a prompt's tokens are not scored) and their count, as two arrays
    (None: no row scores a token). Their ratio of sums is the exact per-token loss; Trainer's `eval_loss` during
    training is a mean of per-batch means."""
    from .. import inference

    requests = []
    for row in rows:
        ids, labels = row["input_ids"], row["labels"]
        scored = sum(1 for label in labels[1:] if label != -100)  # the scored tokens end each row
        if scored:
            requests.append((ids[:-1], ids[1:], scored))
    if not requests:
        return None
    was_training = model.training
    model.eval()  # no dropout
    try:
        scores = inference.score_tokens(inference.wrap(model, tokenizer, "causal-lm"), requests, batch_size=batch_size)
    finally:
        model.train(was_training)
    nll = np.array([-float(sum(s.logprobs)) for s in scores])
    tokens = np.array([float(len(s.logprobs)) for s in scores])
    return nll, tokens


def held_out_loss(model, tokenizer, rows: list[dict], batch_size: int | None = None) -> dict:
    """The mean negative log-likelihood of every held-out token (`held_out_scores`), each token weighing the same."""
    scores = held_out_scores(model, tokenizer, rows, batch_size)
    if scores is None:
        return {}
    nll, tokens = scores
    return {"eval_loss": float(nll.sum() / tokens.sum()), "eval_tokens": float(tokens.sum())}
