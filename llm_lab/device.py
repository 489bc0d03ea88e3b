"""Pick the device and dtype: CUDA, then Apple MPS, then CPU; bf16 on CUDA. Tell out-of-memory
errors apart (`is_out_of_memory`) and give memory back after one (`free_memory`).

torch is imported on first use, not with this module: the home page can say "CPU" for a
CPU-only torch build without paying for the torch import.
"""
import gc
import importlib.metadata
import os
import re
import sys

DTYPE_NAMES = ("float32", "bfloat16", "float16")


def pick_device(override: str | None = None) -> str:
    import torch

    if override and override != "auto":
        if not re.fullmatch(r"(cpu|mps|cuda|xpu)(:\d+)?", override):
            from .errors import ModelError

            raise ModelError(f"Unknown device {override!r}; choose auto, cpu, cuda (or cuda:N) or mps.")
        return override
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(device: str, override: str | None = None):
    import torch

    if override and override != "auto":
        return getattr(torch, override) if override in DTYPE_NAMES else _bad_dtype(override)
    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def is_out_of_memory(exc: BaseException) -> bool:
    """True for an out-of-memory error of any device.

    `torch.OutOfMemoryError` (alias `torch.cuda.OutOfMemoryError`) and its subclasses, told by
    class name so torch need not be imported, and any error whose message says "out of memory"
    (CUDA errors raised as RuntimeError, "MPS backend out of memory", cuDNN/cuBLAS allocation
    failures).
    """
    if any("OutOfMemory" in cls.__name__ for cls in type(exc).__mro__):
        return True
    return "out of memory" in str(exc).lower()


def free_memory(device: str | None = None) -> None:
    """Collect garbage and return cached CUDA memory (for `device` "cuda…", or None: whenever CUDA is in use)."""
    gc.collect()
    if device is None or str(device).startswith("cuda"):
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()


def memory_bytes(device: str) -> int | None:
    """All the memory `device` has: a CUDA GPU's own, otherwise the machine's (the CPU's, and Apple's unified
    memory), within a container's cgroup limit when there is one. None when it cannot be told."""
    if str(device).startswith("cuda"):
        import torch

        index = int(device.split(":", 1)[1]) if ":" in device else torch.cuda.current_device()
        return int(torch.cuda.get_device_properties(index).total_memory)
    total = None
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        pass
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = open(limit_file).read().strip()
        except OSError:
            continue
        if text.isdigit():  # "max" (v2) means no limit; v1 writes a huge number for none
            total = min(total, int(text)) if total else int(text)
        break
    return total


def _bad_dtype(name: str):
    from .errors import ModelError

    raise ModelError(f"Unknown dtype {name!r}; choose auto, {', '.join(DTYPE_NAMES)}.")


def _cpu_only_build() -> str | None:
    """The torch version when it is a CPU-only build (no CUDA, no MPS possible), without importing torch."""
    if "torch" in sys.modules or sys.platform == "darwin":
        return None
    try:
        version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None
    return version if version.endswith("+cpu") else None


def describe() -> dict:
    """What the home page shows: the device a model would load on, by name."""
    cpu_build = _cpu_only_build()
    if cpu_build:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return {"device": "cpu", "name": "CPU", "memory_gb": None, "torch": cpu_build, "threads": cores}
    import torch

    device = pick_device()
    info = {"device": device, "name": "CPU", "memory_gb": None, "torch": torch.__version__}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(name=props.name, memory_gb=round(props.total_memory / 2**30, 1), count=torch.cuda.device_count())
    elif device == "mps":
        info["name"] = "Apple GPU (MPS)"
    else:
        info["threads"] = torch.get_num_threads()
    return info
