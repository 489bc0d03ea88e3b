"""One module per task type; each exposes `run(state) -> dict` (see common.TaskState)."""
import importlib

TYPES = ("classification", "language_modeling", "generation", "multiple_choice", "speed")


def module(task_type: str):
    return importlib.import_module(f"{__name__}.{task_type}")
