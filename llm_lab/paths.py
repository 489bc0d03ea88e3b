"""Where LLM Lab keeps its files: LLM_LAB_HOME, or ~/.llm_lab."""
import os
from pathlib import Path


def home() -> Path:
    root = Path(os.environ.get("LLM_LAB_HOME") or Path.home() / ".llm_lab").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def subdir(*parts: str) -> Path:
    path = home().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
