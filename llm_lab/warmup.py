"""Import the model stack (torch, transformers and its model-loading code) in a background thread.

Opening the first model in a server process waits mostly for imports: torch, then transformers and what
its model classes pull in (torch._dynamo, torch.distributed, accelerate), about 4 s of one core on a
2-core CPU; loading MiniLM's weights takes 0.1 s. `start()` begins those imports in a daemon thread,
once per process, so they run while the process would otherwise wait: after a page has rendered, while
its visitor reads it. The dashboard starts it when a page has run (app.py); nothing else does.

Imports in two threads: Python locks each module while it runs, so a module two threads ask for is run
once and the second waits. Two threads that each hold part of a circular import would stop each other
(Python then raises a deadlock error in one of them), and transformers imports circularly. So code that
imports transformers in the dashboard's script thread calls `wait()` first (`registry` before every model
load, `train.resources` before its model skeletons): it returns at once when no warm-up runs, else when
the warm-up is done, and the two threads never walk transformers at the same time. A failed import ends
the warm-up quietly; the import that needs the module raises the error where it is handled.

`LLM_LAB_WARMUP=0` turns it off.
"""
from __future__ import annotations

import importlib
import os
import threading

MODULES = (
    "torch",
    "transformers",
    "transformers.models.auto.tokenization_auto",
    "transformers.models.auto.modeling_auto",
    "transformers.modeling_utils",
    "transformers.masking_utils",
    # the architectures of the built-in models (MiniLM is a BERT, tiny-gpt and small-gpt are GPT-2s)
    "transformers.models.bert.modeling_bert",
    "transformers.models.bert.tokenization_bert",
    "transformers.models.gpt2.modeling_gpt2",
    "transformers.models.gpt2.tokenization_gpt2",
    "peft",  # the shipped minilm-sentiment is a LoRA adapter
)
WAIT_LIMIT_S = 300.0  # wait() never hangs a page for good: past this the caller goes on and imports itself

_lock = threading.Lock()
_thread: threading.Thread | None = None
_started = threading.Event()


def enabled() -> bool:
    return os.environ.get("LLM_LAB_WARMUP", "1").strip().lower() not in ("0", "false", "no", "off")


def start(modules: tuple[str, ...] = MODULES) -> threading.Thread | None:
    """Start importing `modules` in a daemon thread, once per process (a later call returns the same thread).
    None when turned off (`LLM_LAB_WARMUP=0`)."""
    global _thread
    if not enabled():
        return None
    with _lock:
        if _thread is None:
            _thread = threading.Thread(target=_import_all, args=(tuple(modules),), name="llm-lab-warmup",
                                       daemon=True)
            _thread.start()
            _started.set()
        return _thread


def wait(timeout: float = WAIT_LIMIT_S) -> None:
    """Return when no warm-up is importing (at once when none was started)."""
    thread = _thread
    if thread is not None and thread is not threading.current_thread():
        thread.join(timeout)


def wait_started(timeout: float) -> bool:
    """Wait up to `timeout` seconds for someone to start the warm-up; whether it was started."""
    return _started.wait(timeout)


def running() -> bool:
    thread = _thread
    return thread is not None and thread.is_alive()


def _import_all(modules: tuple[str, ...]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - e.g. an optional package missing: whoever needs it gets the error
            return
