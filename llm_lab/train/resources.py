"""Memory and time before starting: parameters, a rough activation size, steps × step time.

Step time comes from a past run of the same model, task, device and batch when there
is one ("measured"), otherwise from the training FLOPs (6·N per token plus attention)
divided by this device's measured matmul speed at a typical small-model efficiency.
Rough by design: it tells 10 seconds from 10 minutes and 1 GB from 40 GB.
"""
import math
import time
from functools import lru_cache

from .. import data, jobs, warmup
from ..access import Actor
from .config import ConfigError, TrainConfig

TRAIN_EFFICIENCY = {"cpu": 0.35, "cuda": 0.25, "mps": 0.25}  # achieved / matmul peak, small models
CHARS_PER_TOKEN = 4.2


def _meta_model(actor: Actor, cfg: TrainConfig, n_labels: int):
    """The model skeleton on the meta device: shapes without memory or weights."""
    warmup.wait()  # never import transformers beside the dashboard's warm-up thread (see llm_lab/warmup.py)
    import torch
    import transformers

    from .modeling import model_source

    transformers.logging.set_verbosity_error()
    with torch.device("meta"):
        if cfg.task == "pretrain":
            arch = cfg.architecture()
            config = transformers.GPT2Config(**{k: arch[k] for k in ("vocab_size", "n_embd", "n_layer", "n_head", "n_positions")})
            return transformers.GPT2LMHeadModel(config)
        _, source, kwargs = model_source(actor, cfg.model)
        config = transformers.AutoConfig.from_pretrained(source, **kwargs)
        if cfg.distill:  # the student: the teacher's shape with fewer layers (checked against the teacher's)
            from .distill import num_layers, pick_layers

            pick_layers(num_layers(config), cfg.student_layers)
            config.num_hidden_layers = cfg.student_layers
        if cfg.task == "classify":
            config.num_labels = max(2, n_labels)
            return transformers.AutoModelForSequenceClassification.from_config(config)
        return transformers.AutoModelForCausalLM.from_config(config)


def _teacher_parameters(actor: Actor, cfg: TrainConfig, n_labels: int) -> int:
    from dataclasses import replace

    return sum(p.numel() for p in _meta_model(actor, replace(cfg, distill=False), n_labels).parameters())


def _shape(model) -> dict:
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    get = lambda *names: next((getattr(cfg, n) for n in names if getattr(cfg, n, None)), 0)
    return {"layers": get("num_hidden_layers", "n_layer"), "hidden": get("hidden_size", "n_embd"),
            "heads": get("num_attention_heads", "n_head") or 1, "vocab": get("vocab_size")}


def _lora_trainable(model, cfg: TrainConfig) -> int:
    from .modeling import lora_targets

    targets = set(lora_targets(model, cfg))
    total = 0
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in targets and hasattr(module, "weight") and module.weight is not None:
            out_f, in_f = module.weight.shape[:2]
            total += cfg.lora_r * (in_f + out_f)
    return total


def _rows_and_length(actor: Actor, cfg: TrainConfig) -> tuple[int, float]:
    if cfg.task == "pretrain":
        if cfg.dataset:
            frame = data.load_frame(actor, cfg.dataset)
            chars = frame[cfg.text_col].astype(str).str.len().sum()
        else:
            from ..corpora import CORPORA

            chars = sum(len(t) for t in CORPORA[cfg.corpus]())
        block = cfg.architecture()["n_positions"]
        blocks = int(chars / CHARS_PER_TOKEN / block)
        return max(1, int(blocks * (1 - cfg.eval_fraction))), float(block)
    frame = data.load_frame(actor, cfg.dataset)
    train = frame[frame["split"] == "train"]
    rows = len(train) if (frame["split"] == "validation").any() else int(len(train) * (1 - cfg.eval_fraction))
    col = "prompt" if cfg.task == "causal-lm" and "prompt" in train.columns and cfg.lm_format != "text" else cfg.text_col
    chars = train[col].astype(str).str.len().head(500).mean() if len(train) and col in train.columns else 0
    if col == "prompt" and "reference" in train.columns:
        chars += train["reference"].astype(str).str.len().head(500).mean()
    return max(1, rows), float(min(cfg.max_length, chars / CHARS_PER_TOKEN + 2))


@lru_cache(maxsize=4)
def device_flops(device: str) -> float:
    """Measured matmul FLOP/s of this device (a quarter-second probe, cached)."""
    import torch

    n = 2048 if device == "cuda" else 1024
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < 0.25:
        for _ in range(2):
            a @ b
        reps += 2
        if device == "cuda":
            torch.cuda.synchronize()
    return 2 * n ** 3 * reps / (time.perf_counter() - start)


def _measured_rate(actor: Actor, cfg: TrainConfig, device: str) -> float | None:
    for job in jobs.list_jobs(actor, "llm_lab.train:", limit=50):
        past, res = TrainConfig.from_params(job["params"]), job["result"] or {}
        stats = res.get("stats") or {}
        if (job["status"] == "succeeded" and past.task == cfg.task and past.model == cfg.model
                and past.batch_size == cfg.batch_size and past.max_length == cfg.max_length
                and past.preset == cfg.preset and past.lora == cfg.lora and stats.get("device") == device
                and (past.distill, past.student_layers) == (cfg.distill, cfg.student_layers)
                and stats.get("samples_per_s")):
            return float(stats["samples_per_s"])
    return None


def device_memory(device: str) -> int | None:
    """The bytes of memory `device` has in all (None: unknown)."""
    from ..device import memory_bytes

    return memory_bytes(device)


def _plan(actor: Actor, cfg: TrainConfig) -> dict:
    """Memory and steps: what a run needs, without timing anything."""
    from .. import jobs
    from ..device import pick_device

    cfg.validate()
    team = jobs.runs_elsewhere()  # a team worker runs it, not this (dashboard) machine: judged by the workers
    if team:
        device = jobs.worker_device(cfg.device)
    else:
        device = "cpu" if cfg.device == "cpu" else pick_device(None if cfg.device == "auto" else cfg.device)
    labels = len(data.get(actor, cfg.dataset).label_names or []) if cfg.task == "classify" else 0
    model = _meta_model(actor, cfg, labels)
    params = sum(p.numel() for p in model.parameters())
    trainable = _lora_trainable(model, cfg) if cfg.lora and cfg.task != "pretrain" else params
    shape = _shape(model)
    rows, tokens = _rows_and_length(actor, cfg)
    rows *= 1 + cfg.augment  # a distillation's augmented copies are trained on too
    seq = max(1, int(tokens))
    half = device == "cuda" and cfg.precision != "fp32"
    act_bytes = 2 if half else 4
    b, h, L, a = cfg.batch_size, shape["hidden"], shape["layers"], shape["heads"]
    # per layer: ~17·s·b·h values plus 2.5·a·s²·b attention values kept for backward (Korthikanti et al.)
    activations = L * b * seq * (17 * h + 2.5 * a * seq) * act_bytes
    if cfg.task != "classify":
        activations += 3 * b * seq * shape["vocab"] * 4  # logits, softmax and their gradient in fp32
    weights = params * 4
    teacher = _teacher_parameters(actor, cfg, labels) if cfg.distill else 0
    weights += teacher * 4  # a distillation's teacher: weights only, forward without gradients
    optimizer = trainable * (4 + 8)  # gradients + Adam's two moments, fp32
    total = weights + optimizer + activations
    steps_per_epoch = max(1, math.ceil(rows / cfg.batch_size) // cfg.grad_accum)
    steps = cfg.max_steps if cfg.max_steps > 0 else max(1, math.ceil(cfg.epochs * steps_per_epoch))
    have = jobs.worker_memory_bytes(device) if team else device_memory(device)
    plan = {"device": device, "parameters": params, "trainable_parameters": trainable, "train_rows": rows,
            "tokens_per_example": round(float(tokens), 1), "steps": steps, "steps_per_epoch": steps_per_epoch,
            "memory_mb": {"weights": weights / 2**20, "gradients_and_optimizer": optimizer / 2**20,
                          "activations": activations / 2**20, "total": total / 2**20},
            "device_memory_mb": have / 2**20 if have else None, "seq": seq, "shape": shape,
            "teacher_parameters": teacher}
    plan["refusal"] = _refusal(cfg, plan)
    return plan


def _refusal(cfg: TrainConfig, plan: dict) -> str | None:
    """Why this run may not start (too big for the device, too many steps), or None."""
    from .. import settings

    need, have = plan["memory_mb"]["total"], plan["device_memory_mb"]
    if have and need > have:
        ways = [f"lower the batch size (now {cfg.batch_size})"]
        if cfg.task == "pretrain":
            ways.append("pick a smaller size preset or architecture")
        else:
            ways.append(f"lower the maximum length (now {cfg.max_length})")
            ways += ["use LoRA"] if cfg.task == "causal-lm" and not cfg.lora else []
            ways.append("pick a smaller base model")
        return (f"This run needs about {need / 1024:,.1f} GB of memory and the {plan['device']} has "
                f"{have / 1024:,.1f} GB in all, so it cannot start: {', '.join(ways[:-1])}, or {ways[-1]}.")
    max_steps = int(settings.get("max_steps"))
    if cfg.max_steps <= 0 and plan["steps"] > max_steps:
        return (f"This run would take {plan['steps']:,} optimizer steps ({cfg.epochs:g} epochs × "
                f"{plan['steps_per_epoch']:,} steps per epoch); a run may take at most {max_steps:,} (setting "
                "max_steps). Train for fewer epochs, set Max steps, or raise the batch size.")
    return None


def check(actor: Actor, cfg: TrainConfig) -> dict:
    """Refuse, before it is queued or started, a run the device cannot hold or that takes more steps than
    this server allows. Returns the plan (memory and steps) when it may run."""
    plan = _plan(actor, cfg)
    if plan["refusal"]:
        raise ConfigError(plan["refusal"])
    return plan


def estimate(actor: Actor, cfg: TrainConfig) -> dict:
    """Memory, steps and time. `refusal` says why the run may not start (None when it may)."""
    plan = _plan(actor, cfg)
    device, shape, seq = plan["device"], plan.pop("shape"), plan.pop("seq")
    params, trainable = plan["parameters"], plan["trainable_parameters"]
    L, h = shape["layers"], shape["hidden"]
    samples_per_step = cfg.batch_size * cfg.grad_accum
    rate = _measured_rate(actor, cfg, device)
    if rate:
        step_s, basis = samples_per_step / rate, "measured in an earlier run with these settings"
    else:
        flops_per_token = 6 * trainable + 2 * (params - trainable) + 12 * L * seq * h
        flops_per_token += 2 * plan["teacher_parameters"]  # the teacher's forward (distillation)
        if cfg.lora:
            flops_per_token += 2 * params  # backward through frozen weights for the activations
        flops = flops_per_token * seq * samples_per_step
        if not _can_probe(device):  # a GPU on a worker, not here: nothing here to time it by
            return dict(plan, step_seconds=None, seconds=None,
                        time_basis=f"time unknown: the {device} is on a worker; the first run measures it")
        step_s = flops / (device_flops(device) * TRAIN_EFFICIENCY.get(device, 0.3))
        basis = f"assumed from FLOPs and this {device}'s measured matmul speed"
    return dict(plan, step_seconds=step_s, seconds=plan["steps"] * step_s, time_basis=basis)


def _can_probe(device: str) -> bool:
    """Whether this machine has `device` to time (a dashboard without a GPU plans runs for GPU workers)."""
    import torch

    return not str(device).startswith("cuda") or torch.cuda.is_available()


def describe(est: dict) -> str:
    """One line for the page and CLI."""
    secs = est["seconds"]
    if secs is None:
        return (f"{est['parameters'] / 1e6:.1f}M parameters ({est['trainable_parameters'] / 1e6:.2f}M trained) · "
                f"about {est['memory_mb']['total'] / 1024:.2f} GB on {est['device']} · {est['steps']} steps "
                f"({est['time_basis']})")
    when = f"{secs:.0f} s" if secs < 120 else f"{secs / 60:.1f} min" if secs < 7200 else f"{secs / 3600:.1f} h"
    teacher = f" + a {est['teacher_parameters'] / 1e6:.1f}M-parameter teacher" if est.get("teacher_parameters") else ""
    return (f"{est['parameters'] / 1e6:.1f}M parameters ({est['trainable_parameters'] / 1e6:.2f}M trained){teacher} · "
            f"about {est['memory_mb']['total'] / 1024:.2f} GB on {est['device']} · {est['steps']} steps × "
            f"{est['step_seconds']:.2f} s ≈ {when} ({est['time_basis']})")
