"""Peak memory of one model, measured in a fresh process: `python -m llm_lab.compress.memprobe` reads a JSON
request on stdin and prints one JSON line.

Why a process of its own: the job's process holds the parent and every variant at once, and allocators
(glibc's, torch's CPU allocator, ONNX Runtime's arena) keep memory they freed, so the process's peak says
nothing about one model. Here the process imports torch and transformers, settles (garbage collected), and
then resets the kernel's high-water mark of its resident set (writing 5 to /proc/self/clear_refs, Linux ≥ 4.0).
It loads the model through the registry and runs the texts through it at the requested batch size, the way
the evaluation does; the peak is VmHWM (the resident-set high-water mark) minus the resident set before the
model was loaded. It counts everything the model needs in this process: its weights as loaded (a memory-mapped
safetensors file counts once its pages are touched), activations, allocator caches and an ONNX Runtime
session's own arena, which torch's counters never see. Without /proc/self/clear_refs (not Linux) the high-water
mark cannot be reset: `getrusage`'s ru_maxrss after the work minus the resident set before it is reported
instead, which overstates the peak when importing torch had a higher transient peak; the note says which.
On CUDA, torch's own peak allocation (`torch.cuda.max_memory_allocated`) is reported beside it.

Request: {"actor": {...}, "model": NAME, "task_type": "classification" (the benchmark task type whose
needs open the model, as in the evaluation), "texts": [...],
"batch_size": 32, "device": null}. Answer: {"peak_mb", "loaded_mb", "baseline_mb", "cuda_peak_mb", "method"}
or {"error": message}.
"""
from __future__ import annotations

import gc
import json
import resource
import sys
from pathlib import Path

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kb(field: str) -> float | None:
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1])
    except OSError:
        pass
    return None


def _rss_mb() -> float:
    kb = _status_kb("VmRSS")
    if kb is None:  # no /proc: the high-water mark is the best there is
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform == "darwin" else 1)
    return kb / 1024


def _reset_peak() -> bool:
    try:
        CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def _peak_mb(reset: bool) -> float:
    kb = _status_kb("VmHWM") if reset else None
    if kb is None:
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform == "darwin" else 1)
    return kb / 1024


def measure(request: dict) -> dict:
    from llm_lab import registry
    from llm_lab.access import Actor

    actor = Actor.from_dict(request["actor"])
    registry.resolve(actor, request["model"])  # a name that is not there fails before the heavy imports

    import importlib

    import torch

    importlib.import_module("transformers")  # imported before the baseline, like torch

    from llm_lab.bench.suite import TASK_TYPES
    from llm_lab.inference import infer

    needs = TASK_TYPES[request.get("task_type") or "speed"].model_needs
    device = request.get("device")
    cuda = bool(device and str(device).startswith("cuda")) or (device is None and torch.cuda.is_available())
    gc.collect()
    baseline = _rss_mb()
    reset = _reset_peak()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    loaded = registry.load_for(actor, needs, request["model"], device=device)
    gc.collect()
    loaded_mb = _rss_mb() - baseline
    infer(loaded, list(request["texts"]), batch_size=int(request.get("batch_size") or 32))
    peak = _peak_mb(reset) - baseline
    out = {"peak_mb": round(max(peak, loaded_mb), 1), "loaded_mb": round(loaded_mb, 1), "baseline_mb": round(baseline, 1),
           "cuda_peak_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None,
           "method": "VmHWM reset after imports" if reset else "ru_maxrss after the work (could not reset the peak)",
           "device": loaded.device}
    return out


def main() -> int:
    request = json.loads(sys.stdin.read())
    try:
        out = measure(request)
    except Exception as exc:  # the job reports it for this model; the evaluation goes on
        out = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
