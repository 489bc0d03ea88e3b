"""One module per task type; each exposes `run(state) -> dict` (see common.TaskState)."""
import importlib


def module(task_type: str):
    return importlib.import_module(f"{__name__}.{task_type}")
