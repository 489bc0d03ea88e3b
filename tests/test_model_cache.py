"""Loaded models stay within the registry's bounded cache (LLM_LAB_MAX_MODELS), whoever asked for them: the Models
page's background loads (ui/backend.model_ready) keep no model alive past it."""
import gc
import shutil
import types
import weakref
from concurrent.futures import wait

import pytest

from llm_lab import registry

CAP = 2
MODELS = 5  # more distinct models than the cache holds


@pytest.fixture
def folders(tiny_bert, tmp_path):
    """MODELS copies of the tiny BERT, each its own folder: distinct models to the registry."""
    out = []
    for i in range(MODELS):
        folder = tmp_path / f"tb-{i}"
        shutil.copytree(tiny_bert, folder)
        out.append(str(folder))
    return out


@pytest.fixture
def loaded_models(monkeypatch):
    """Weak references to every model the registry loads during the test."""
    refs = []
    real = registry._load_uncached

    def recording(*args, **kwargs):
        loaded = real(*args, **kwargs)
        refs.append((weakref.ref(loaded), weakref.ref(loaded.model)))
        return loaded

    monkeypatch.setattr(registry, "_load_uncached", recording)
    monkeypatch.setattr(registry, "MAX_CACHED", CAP)
    registry.forget()
    yield refs
    registry.forget()


def _alive(refs) -> int:
    gc.collect()
    return sum(1 for loaded, model in refs if loaded() is not None or model() is not None)


@pytest.fixture
def background(monkeypatch):
    """ui/backend's background loads as the Models page runs them outside AppTest (no warm-up thread here)."""
    from ui import backend

    monkeypatch.setattr(backend, "st_config", types.SimpleNamespace(get_option=lambda name: False))
    monkeypatch.setattr(backend, "warmup", types.SimpleNamespace(
        enabled=lambda: True, wait_started=lambda timeout: True, start=lambda: None, wait=lambda: None))
    monkeypatch.setattr(backend, "_loads", {})  # this test's loads only, none left for the next test
    return backend


def test_background_loads_keep_no_model_past_the_registrys_cap(background, folders, loaded_models):
    for folder in folders:
        background.model_ready(folder, head="classifier")
    wait(list(background._loads.values()), timeout=300)
    assert len(background._loads) == MODELS
    assert all(f.done() and f.exception() is None for f in background._loads.values())
    assert len(loaded_models) == MODELS  # each loaded once, in the background
    assert all(background.model_ready(folder, head="classifier") for folder in folders)  # each load has ended

    assert _alive(loaded_models) <= CAP
    cached = {id(v.model) for v in registry._cache.values()}
    assert all(model() is None or id(model()) in cached for _, model in loaded_models)  # the ones alive: cached
    registry.forget()
    assert _alive(loaded_models) == 0


def test_a_model_the_cache_let_go_is_loaded_again_when_the_page_asks(background, folders, loaded_models):
    first = folders[0]
    background.model_ready(first, head="classifier")
    wait(list(background._loads.values()), timeout=120)
    registry.forget()  # as if later loads had pushed it out of the cache
    assert background.model_ready(first, head="classifier")  # its load has ended; the page then opens it …
    loaded = registry.load(background.actor(), first, head="classifier")  # … through the registry, as model() does
    assert loaded.head == "classifier" and len(loaded_models) == 2


def test_a_failed_background_load_counts_as_done_and_keeps_nothing(background, folders, loaded_models, monkeypatch):
    def broken(*args, **kwargs):
        raise MemoryError("no room")  # not a ModelError: whatever a load raises

    monkeypatch.setattr(registry, "_load_uncached", broken)
    background.model_ready(folders[0], head="classifier")
    wait(list(background._loads.values()), timeout=120)
    assert background.model_ready(folders[0], head="classifier")  # done: the page's own load shows the error
    with pytest.raises(MemoryError, match="no room"):
        registry.load(background.actor(), folders[0], head="classifier")


def test_pages_opening_many_models_keep_no_more_than_the_cap(background, folders, loaded_models, monkeypatch):
    """`backend.model` (what every page calls) holds no cache of its own beside the registry's."""
    from llm_lab.access import LOCAL

    monkeypatch.setattr(background, "actor", lambda: LOCAL)
    for folder in folders:
        assert background.model(folder, head="classifier").entry.location == folder
    assert len(loaded_models) == MODELS and _alive(loaded_models) <= CAP
    registry.forget()
    assert _alive(loaded_models) == 0
