"""Where LLM Lab keeps its files: LLM_LAB_HOME, or ~/.llm_lab."""
import os
from pathlib import Path


def home_path() -> Path:
    """LLM_LAB_HOME, without creating it."""
    return Path(os.environ.get("LLM_LAB_HOME") or Path.home() / ".llm_lab").expanduser()


def home() -> Path:
    root = home_path()
    if not root.is_dir():  # only when missing: a read on a full disk must not write
        root.mkdir(parents=True, exist_ok=True)
    return root


def subdir(*parts: str) -> Path:
    path = home().joinpath(*parts)
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
    return path


def workspace_dir(kind: str, workspace: str) -> Path:
    """Where a workspace keeps its folders of one kind ("datasets", "models").

    The default workspace keeps the folders it had before workspaces existed (<home>/<kind>); another
    workspace has its own, <home>/<kind>/@<workspace>. Dataset and model names start with a letter or a
    digit, so "@…" never meets a default-workspace folder. A workspace name that is not a plain folder name
    (an e-mail with unusual characters) gets a folder named by its hash instead.
    """
    import hashlib
    import re

    if workspace == "default":  # access.DEFAULT_WORKSPACE (paths is imported before access)
        return subdir(kind)
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,199}", workspace or ""):
        return subdir(kind, "@" + workspace)
    return subdir(kind, "@_" + hashlib.sha256(str(workspace).encode()).hexdigest()[:24])
