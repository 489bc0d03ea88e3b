"""The model-stack warm-up: imports in a background thread, once per process, and a model load waits for it."""
import subprocess
import sys
import threading
from types import SimpleNamespace

from llm_lab import registry, warmup
from llm_lab.access import LOCAL

from .conftest import ROOT, app_test, no_exceptions


def test_warm_up_imports_the_model_stack_in_a_thread_once():
    """In a fresh interpreter: nothing of the stack is imported before; after start() and wait() all of it is,
    by a thread that is not the caller; a second start() starts no second thread."""
    code = (
        "import sys, threading; from llm_lab import warmup\n"
        "assert not any(m in sys.modules for m in warmup.MODULES)\n"
        "first = warmup.start(); assert first is not threading.current_thread() and first.daemon\n"
        "assert warmup.start() is first\n"
        "warmup.wait(); assert not warmup.running()\n"
        "missing = [m for m in warmup.MODULES if m not in sys.modules]\n"
        "print('missing', missing)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "missing []" in out.stdout


def test_warm_up_can_be_turned_off(monkeypatch):
    monkeypatch.setattr(warmup, "_thread", None)
    monkeypatch.setenv("LLM_LAB_WARMUP", "0")
    assert warmup.start(("json",)) is None and not warmup.running()
    warmup.wait()  # nothing to wait for: returns at once


def test_a_model_load_waits_until_the_warm_up_is_done(monkeypatch, tiny_bert):
    """registry never imports transformers while the warm-up thread imports (two threads inside transformers'
    circular imports can stop each other): a load that starts during the warm-up finishes after it."""
    gate, importing, events = threading.Event(), threading.Event(), []

    def held_import(name):  # a warm-up import that lasts until the test opens the gate
        importing.set()
        assert gate.wait(120)

    monkeypatch.setattr(warmup, "_thread", None)
    monkeypatch.setattr(warmup, "importlib", SimpleNamespace(import_module=held_import))
    registry.forget()
    warmup.start(("anything",))
    assert importing.wait(60)

    def load():
        registry.load(LOCAL, str(tiny_bert), head="classifier", dtype="float32")
        events.append("loaded")

    loader = threading.Thread(target=load)
    loader.start()
    loader.join(3)  # time enough to load a tiny model if the load did not wait
    events.append("warm-up done")
    gate.set()
    loader.join(120)
    assert events == ["warm-up done", "loaded"]
    assert not warmup.running()


def test_app_under_apptest_starts_no_warm_up(monkeypatch):
    monkeypatch.setattr(warmup, "_thread", None)
    at = app_test("app.py").run()
    no_exceptions(at)
    assert warmup._thread is None
