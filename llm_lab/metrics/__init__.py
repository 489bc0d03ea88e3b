"""Metrics as Hugging Face `evaluate` modules kept inside the project, loaded by local path.

    from llm_lab import metrics
    metrics.compute("accuracy", [0, 1, 1], [0, 1, 0])          # {"accuracy": 0.666...}
    metrics.compute("bleu", ["the cat"], ["the cat sat"])        # a str reference means one reference
    metrics.bootstrap_ci("f1", preds, refs)                      # {"low": .., "high": .., ...}

Each metric is an `evaluate.Metric` subclass in `modules/<name>/<name>.py` (no `# From:` imports,
so nothing is downloaded); `HF_EVALUATE_OFFLINE=1` is set before evaluate is imported. Loaded
modules are cached per process. `evaluate` is imported lazily, on the first `compute`.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

from .bootstrap import bootstrap_ci, supports_bootstrap  # noqa: F401

MODULES_DIR = Path(__file__).parent / "modules"
METRICS = (
    "accuracy", "precision", "recall", "f1", "roc_auc", "confusion_matrix",
    "perplexity", "exact_match", "bleu", "chrf", "rouge",
)
ALIASES = {"sacrebleu": "bleu", "chrF": "chrf", "chrf++": "chrf", "auc": "roc_auc", "em": "exact_match", "ppl": "perplexity"}
# Metrics on class labels: string labels are mapped to integers before they reach the module.
LABEL_METRICS = {"accuracy", "precision", "recall", "f1", "confusion_matrix"}
# Which way is better, for every number a task reports (metric modules and the values tasks compute
# beside them: bits per byte, speed). Anything not listed here is higher-is-better.
LOWER_IS_BETTER = frozenset({
    "perplexity", "bits_per_byte", "byte_perplexity", "word_perplexity", "nll",
    "latency_p50_ms", "latency_p95_ms", "peak_memory_mb", "load_seconds", "flip_rate", "failure_rate",
    "ece", "ece_adaptive", "brier", "log_loss",
})


def higher_is_better(name: str | None) -> bool:
    """Whether a larger value of metric `name` is better (perplexity, latency, memory: no)."""
    return name not in LOWER_IS_BETTER

_cache: dict[str, object] = {}
_locks: dict[str, threading.Lock] = {}
_cache_lock = threading.Lock()


def canonical(name: str) -> str:
    key = ALIASES.get(name, ALIASES.get(str(name).lower(), str(name).lower()))
    if key not in METRICS:
        from ..errors import LabError

        raise LabError(f"Unknown metric {name!r}. Available metrics: {', '.join(METRICS)}.")
    return key


def load(name: str):
    """The evaluate module for `name`, loaded once per process from its local folder."""
    key = canonical(name)
    with _cache_lock:
        if key not in _cache:
            os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
            os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
            try:
                import evaluate

                evaluate.load  # noqa: B018 - a stray namespace package named evaluate has no load
            except (ImportError, AttributeError):  # no evaluate (the GPU box): same module code without it
                _cache[key] = _load_without_evaluate(key)
            else:
                _cache[key] = evaluate.load(str(MODULES_DIR / key), keep_in_memory=True)
            _locks[key] = threading.Lock()
    return _cache[key]


def compute(name: str, predictions, references=None, **kw) -> dict:
    """Compute metric `name` on the inputs; keyword arguments go to the module's `_compute`."""
    key = canonical(name)
    predictions = list(predictions)
    references = None if references is None else list(references)
    if references is not None and len(references) != len(predictions):
        from ..errors import LabError

        raise LabError(f"{key}: {len(predictions)} predictions but {len(references)} references; they must match.")
    names = None
    if key in LABEL_METRICS and any(isinstance(v, str) for v in predictions + (references or [])):
        names = sorted({str(v) for v in predictions + references} | {str(v) for v in kw.get("labels") or []})
        if kw.get("labels") is not None:
            names = [str(v) for v in kw["labels"]] + [n for n in names if n not in {str(v) for v in kw["labels"]}]
        index = {n: i for i, n in enumerate(names)}
        predictions = [index[str(v)] for v in predictions]
        references = [index[str(v)] for v in references]
        if kw.get("labels") is not None:
            kw["labels"] = [index[str(v)] for v in kw["labels"]]
    if key in ("bleu", "chrf") and references is not None:
        references = [[r] if isinstance(r, str) else list(r) for r in references]
    if key == "roc_auc":
        predictions = [[1.0 - float(p), float(p)] if not hasattr(p, "__len__") else [float(x) for x in p] for p in predictions]
    module = load(key)
    inputs = {"predictions": predictions}
    if key != "perplexity":
        inputs["references"] = references
    with _locks[key]:
        result = module.compute(**inputs, **kw)
    if names is not None and "labels" in result:
        result["labels"] = [names[i] for i in result["labels"]]
    return result


def _load_without_evaluate(key: str):
    """Import a module file with minimal stand-ins for `evaluate` and `datasets` (GPU box only).

    The stand-ins sit in sys.modules only while the file executes, so a later real import is unaffected.
    """
    import importlib.util
    import sys
    import types

    evaluate_shim = types.ModuleType("evaluate")

    class Metric:
        def compute(self, **kw):
            return self._compute(**kw)

    evaluate_shim.Metric = Metric
    evaluate_shim.MetricInfo = lambda **kw: kw
    datasets_shim = types.ModuleType("datasets")
    datasets_shim.Features = datasets_shim.Value = datasets_shim.Sequence = lambda *a, **k: None
    shims = {"evaluate": evaluate_shim, "datasets": datasets_shim}
    saved = {name: sys.modules.get(name) for name in shims}
    sys.modules.update(shims)
    try:
        spec = importlib.util.spec_from_file_location(f"llm_lab_metric_{key}", MODULES_DIR / key / f"{key}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous
    cls = next(v for v in vars(mod).values() if isinstance(v, type) and issubclass(v, Metric) and v is not Metric)
    return cls()
