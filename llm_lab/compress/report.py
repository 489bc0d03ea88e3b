"""The typed record of a compress-then-evaluate run (`evaluate.evaluate` fills it): a `Report` holds a
`ModelReport` per model (the parent first), each with its `Quality` per task, its `Speed`, `Memory` and
attribution `Drift`, and its paired comparisons with the parent (`stats.PairedComparison`). `Report.to_dict()` is
stored as the evaluation job's result; `Report.from_dict` reads it back, leaving out keys this version does not
know."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from ..stats import equivalence as stats


def _build(cls, values):
    """A dataclass from its dict, leaving out keys this version does not know."""
    if values is None:
        return None
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})



@dataclass
class Quality:
    """One task's outcome for one model: its headline with its 95% interval (Wilson for accuracy, else the
    benchmark's), all metric values."""

    task: str
    type: str
    metric: str | None = None
    value: float | None = None
    low: float | None = None
    high: float | None = None
    higher_is_better: bool = True
    metrics: dict = field(default_factory=dict)
    intervals: dict = field(default_factory=dict)   # metric -> stats.intervals.Interval.to_dict() (95%)
    rows: int = 0
    n: int | None = None                             # examples behind the headline (None: as many as rows)
    method: str = ""                                 # how the headline's interval was made
    scored: str = ""                                 # which rows, in words
    key: str = ""                                    # the benchmark result (per-example rows)
    error: str | None = None
    notes: list = field(default_factory=list)

    def text(self, metric: str | None = None) -> str:
        """"0.900 [0.596, 0.982] n=10": the headline (or `metric`'s interval) with its interval and n."""
        from ..stats.intervals import fmt

        if metric and metric != self.metric:
            ci = self.intervals.get(metric) or {}
            return fmt(ci.get("value", self.metrics.get(metric)), ci.get("low"), ci.get("high"), ci.get("n") or self.rows)
        return fmt(self.value, self.low, self.high, self.n or self.rows)


@dataclass
class Speed:
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    throughput: float | None = None                  # examples/s at `batch_size`
    batch_size: int | None = None
    examples: int = 0
    repeats: int = 0
    device: str = ""
    dtype: str = ""
    error: str | None = None


@dataclass
class Memory:
    peak_mb: float | None = None        # resident-set high-water mark above the process before loading
    loaded_mb: float | None = None      # resident set the loaded model added
    baseline_mb: float | None = None    # the process after importing torch and transformers
    cuda_peak_mb: float | None = None
    method: str = ""
    error: str | None = None


@dataclass
class Drift:
    """How far a variant's token attributions moved from its parent's (layer IG, Spearman per example)."""

    status: str                          # ok | not available | error
    reason: str = ""
    n_steps: int = 0
    examples: list = field(default_factory=list)   # {"id", "text", "target", "spearman", "tokens"}
    mean: float | None = None
    median: float | None = None
    minimum: float | None = None


@dataclass
class ModelReport:
    name: str
    role: str                                       # parent | variant
    parent: str | None = None                       # the registry's parent of this model
    recipe: dict | None = None                      # how it was made (meta["recipe"])
    head: str = ""
    size_bytes: int | None = None
    size_note: str = ""
    quality: list = field(default_factory=list)    # [Quality]
    speed: Speed | None = None
    memory: Memory | None = None
    paired: dict = field(default_factory=dict)     # task -> stats.PairedComparison (variants)
    drift: Drift | None = None
    warnings: list = field(default_factory=list)
    slower: bool = False                            # slower than its parent beyond timing noise (a warning says how)
    error: str | None = None

    def task(self, name: str) -> Quality | None:
        return next((q for q in self.quality if q.task == name), None)

    @classmethod
    def from_dict(cls, values: dict) -> "ModelReport":
        out = _build(cls, values)
        out.quality = [_build(Quality, q) for q in values.get("quality") or []]
        out.speed = _build(Speed, values.get("speed"))
        out.memory = _build(Memory, values.get("memory"))
        out.paired = {k: stats.PairedComparison.from_dict(v) for k, v in (values.get("paired") or {}).items()}
        out.drift = _build(Drift, values.get("drift"))
        return out


@dataclass
class Report:
    """A compress-then-evaluate run: the parent first, then the variants, as `ModelReport`s."""

    parent: str
    variants: list
    source: dict                     # {"dataset", "split", "columns"} or {"suite", "digest"}
    margin: float
    alpha: float
    main_task: str | None            # the task the verdicts, the chart and the drift use
    models: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    created_at: float = 0.0
    run_id: str | None = None        # the benchmark run holding the per-example results
    notes: list = field(default_factory=list)

    def model(self, name: str) -> ModelReport | None:
        return next((m for m in self.models if m.name == name), None)

    @property
    def parent_report(self) -> ModelReport | None:
        return self.model(self.parent)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Report":
        out = _build(cls, values)
        out.models = [ModelReport.from_dict(m) for m in values.get("models") or []]
        return out
