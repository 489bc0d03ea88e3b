"""Pick the device and dtype: CUDA, then Apple MPS, then CPU; bf16 on CUDA."""
import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pick_device(override: str | None = None) -> str:
    if override and override != "auto":
        return override
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(device: str, override: str | None = None) -> torch.dtype:
    if override and override != "auto":
        return DTYPES[override]
    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def describe() -> dict:
    """What the home page shows: the device a model would load on, by name."""
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
