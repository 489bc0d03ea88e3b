"""What a model costs, measured alike for the parent and its variants: size on disk, peak memory (a fresh
process per model, `memprobe`), latency and throughput (the benchmark's speed task in interleaved rounds), and
the notes and warnings read from them (a busy machine, models on different devices, a variant slower or larger
than its parent)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from .. import registry
from ..access import Actor
from ..errors import JobCancelled
from .report import Memory, ModelReport, Speed, _build

SLOWER_TOLERANCE = 0.05     # a variant is "slower" when its latency p50 or throughput is worse by more than this
MEMPROBE_TIMEOUT_S = 900


# ---------------------------------------------------------------- size on disk
def folder_bytes(folder) -> int:
    root = Path(folder)
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def disk_size(actor: Actor, name: str) -> tuple[int | None, str]:
    """(bytes of the model's folder, a note): an adapter-only model includes its base; a Hub id is measured
    in the local Hub cache when it is there."""
    entry = registry.resolve(actor, name)
    folder = Path(entry.location)
    if entry.source == "hub" or not folder.is_dir():
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(entry.location, local_files_only=True,
                                            allow_patterns=registry.HUB_PATTERNS))
        except Exception:
            return None, "not on this disk (a Hub id that is not in the local cache)"
    size = folder_bytes(folder)
    base = registry.adapter_base(actor, entry)
    if base:
        base_size = folder_bytes(base)
        return size + base_size, (f"includes its base model ({base_size / 2**20:.1f} MB): the adapter alone is "
                                  f"{size / 2**20:.1f} MB")
    return size, ""


# ---------------------------------------------------------------- peak memory (a process per model)
def probe_memory(actor: Actor, name: str, task_type: str, texts: list[str], batch_size: int = 32,
                 device: str | None = None) -> Memory:
    """Peak memory of `name` loading and running `texts` at `batch_size`, in a fresh process (see memprobe)."""
    request = {"actor": actor.to_dict(), "model": name, "task_type": task_type, "texts": list(texts),
               "batch_size": batch_size, "device": device}
    root = Path(__file__).resolve().parent.parent.parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p),
               LLM_LAB_WARMUP="0", TOKENIZERS_PARALLELISM="false")
    try:
        proc = subprocess.run([sys.executable, "-m", "llm_lab.compress.memprobe"], input=json.dumps(request),
                              capture_output=True, text=True, timeout=MEMPROBE_TIMEOUT_S, env=env, cwd=str(root))
    except subprocess.TimeoutExpired:
        return Memory(error=f"the memory probe did not finish within {MEMPROBE_TIMEOUT_S} s")
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if not lines:
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
        return Memory(error=f"the memory probe failed (exit {proc.returncode}): " + " ".join(tail))
    out = json.loads(lines[-1])
    if out.get("error"):
        return Memory(error=out["error"])
    return _build(Memory, out)


# ---------------------------------------------------------------- speed (interleaved rounds in this process)
def speeds(actor: Actor, suite, spec, names: list[str], *, repeats: int, batch_size: int, device: str | None,
           progress=None, log=None) -> dict:
    """{name: Speed} of every model on the speed task `spec` (the same texts for all), in this process, never
    from the cache, in interleaved rounds: a warm-up round first (the first model run in a process otherwise
    pays for what the later ones find ready: thread pools, kernels and buffers made per input shape), then
    `repeats` rounds, each timing every model once (the order turning round by round), so a burst of load from
    elsewhere on the machine falls on all models alike; each figure is the median over the rounds. A model
    whose timing fails gets `Speed(error=…)`; the others go on. `progress(done, message)` counts in models
    (0 to len(names)) and may raise JobCancelled."""
    import numpy as np

    from ..bench import runner

    log = log or (lambda line: None)
    one_round = replace(spec, repeats=1)
    timings: dict = {name: [] for name in names}
    failed: dict = {}
    rounds = repeats + 1
    for k in range(rounds):
        turn = names[k % len(names):] + names[:k % len(names)]
        for j, name in enumerate(turn):
            if name in failed:
                continue
            what = "warming up" if k == 0 else f"round {k}/{repeats}"
            if progress:
                progress(len(names) * (k * len(names) + j) / (rounds * len(names)),
                         f"speed of {name} ({what}): latency at batch 1, throughput at batch {batch_size}")
            try:
                r = runner.run_task(actor, suite, one_round, name, use_cache=False, device=device)
            except (JobCancelled, KeyboardInterrupt):
                raise
            except Exception as exc:  # this model's speed fails; the evaluation goes on
                failed[name] = str(exc)
                log(f"{name}: speed failed: {exc}")
                continue
            if k:
                timings[name].append(r)
    out = {}
    for name in names:
        runs = timings[name]
        if name in failed or not runs:
            out[name] = Speed(error=failed.get(name, "not measured"))
            continue
        median = lambda key: float(np.median([r.metrics[key] for r in runs]))
        settings = runs[0].repro.settings
        speed = out[name] = Speed(latency_p50_ms=median("latency_p50_ms"), latency_p95_ms=median("latency_p95_ms"),
                                  throughput=median("examples_per_s"),
                                  batch_size=runs[0].stats.get("batch_size", batch_size),
                                  examples=len(runs[0].per_example), repeats=len(runs),
                                  device=settings.get("device", ""), dtype=settings.get("dtype", ""))
        log(f"{name}: p50 {speed.latency_p50_ms:.2f} ms, p95 {speed.latency_p95_ms:.2f} ms, "
            f"{speed.throughput:.1f} examples/s")
    return out


# ---------------------------------------------------------------- warnings
def _busy() -> str | None:
    """A note when other work kept the CPUs busy (load average above half the cores): timings then vary a lot,
    a model whose threads wait for each other (PyTorch's) most of all."""
    try:
        load, cores = os.getloadavg()[0], os.cpu_count() or 1
    except (AttributeError, OSError):
        return None
    if load <= 0.5 * cores:
        return None
    return (f"The machine was busy while the models were timed (load average {load:.1f} on {cores} cores): speed "
            "figures vary with what else runs, PyTorch's (whose threads wait for each other) most of all. Time "
            "again when it is idle before trusting a speed-up or a slowdown.")


def _pct(a: float, b: float) -> str:
    return f"{100 * (a / b - 1):+.0f}%"


def slower_warning(variant: ModelReport, parent: ModelReport) -> str | None:
    """A warning when `variant` is slower than its parent beyond timing noise (SLOWER_TOLERANCE)."""
    v, p = variant.speed, parent.speed
    if not v or not p or v.error or p.error:
        return None
    what = []
    if v.latency_p50_ms and p.latency_p50_ms and v.latency_p50_ms > p.latency_p50_ms * (1 + SLOWER_TOLERANCE):
        what.append(f"latency p50 {v.latency_p50_ms:.2f} ms against {p.latency_p50_ms:.2f} ms "
                    f"({_pct(v.latency_p50_ms, p.latency_p50_ms)})")
    if v.throughput and p.throughput and v.throughput < p.throughput * (1 - SLOWER_TOLERANCE):
        what.append(f"throughput {v.throughput:.1f} against {p.throughput:.1f} examples/s "
                    f"({_pct(v.throughput, p.throughput)})")
    if not what:
        return None
    return (f"{variant.name} is slower than its parent {parent.name} on this machine: " + "; ".join(what) + ". "
            "A compressed model is not always faster (int8 on a small or memory-bound model, an unfused graph).")


def mixed_devices(models: list[ModelReport]) -> str | None:
    """A note when the models were not timed on one device (on a GPU machine, device None puts a torch model on
    the GPU and an ONNX Runtime variant on the CPU): the speed figures then compare devices as much as
    compression, and the parent's predictions are those of its dtype on its device."""
    where = {m.name: f"{m.speed.device} ({m.speed.dtype})" for m in models
             if m.speed and not m.speed.error and m.speed.device}
    devices = {m.speed.device for m in models if m.name in where}
    if len(devices) < 2:
        return None
    return ("The models did not run on one device: " + ", ".join(f"{n} on {w}" for n, w in where.items())
            + ". Speed and agreement compare the devices as well as the compression: evaluate with device cpu (or "
            "cuda, leaving out variants that run on the CPU only) to compare them alike.")


def larger_warning(variant: ModelReport, parent: ModelReport) -> str | None:
    if variant.size_bytes and parent.size_bytes and variant.size_bytes > parent.size_bytes:
        return (f"{variant.name} is larger on disk than its parent: {variant.size_bytes / 2**20:.1f} MB against "
                f"{parent.size_bytes / 2**20:.1f} MB.")
    return None

