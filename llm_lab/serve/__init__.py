"""`python -m llm_lab serve MODEL`: a registry model over HTTP, OpenAI-compatible.

- `protocol`: the wire format: request checks (OpenAI's fields, their limits, OpenAI-style error bodies) and
  the response and stream-chunk shapes.
- `batcher`: dynamic batching: requests that arrive within a short window (or until the batch is full) share
  one `model.generate` (left padding) or one classifier/encoder forward.
- `app`: the FastAPI application: the routes, API-key check, body limit, Prometheus metrics.
- `cli`: the command's options and the uvicorn start.

This module stays light (no FastAPI, no torch): the Models and Train pages import `command` from it.
"""
import os
import shlex
from pathlib import Path

DEFAULT_PORT = 8000


def command(name: str, head: str | None = None, port: int = DEFAULT_PORT) -> str:
    """The shell command that serves registry model `name` (with `head` when it is not the model's own). When
    this process keeps its models under an LLM_LAB_HOME of its own, the command names it: a terminal without
    it would look in ~/.llm_lab, not find the model, and try the Hugging Face Hub instead."""
    home = os.environ.get("LLM_LAB_HOME")
    parts = []
    if home and Path(home).expanduser() != Path.home() / ".llm_lab":
        parts.append("LLM_LAB_HOME=" + shlex.quote(home))
    parts += ["python", "-m", "llm_lab", "serve", shlex.quote(name), "--port", str(port)]
    if head:
        parts += ["--head", shlex.quote(head)]
    return " ".join(parts)
