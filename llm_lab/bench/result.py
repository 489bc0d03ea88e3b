"""What a benchmark task produces: a `TaskResult` (with its `Headline` and `Repro`), and its JSON form.

The runner builds one per (model, task), `cache` stores `to_dict()` and loads with `from_dict()`,
and the leaderboard, figures, report, explain jobs and pages read its fields. `from_dict` also reads
results stored before these classes existed: a headline with `lower_is_better` instead of
`higher_is_better`, error results without `repro`/`stats`, keys that are no longer fields (kept in
`extra` and written back unchanged).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace


def _known(cls, values: dict) -> tuple[dict, dict]:
    names = {f.name for f in fields(cls)}
    return ({k: v for k, v in values.items() if k in names}, {k: v for k, v in values.items() if k not in names})


@dataclass
class Headline:
    """The one number a task is ranked by, its interval and which way is better."""

    name: str
    value: float | None = None
    low: float | None = None
    high: float | None = None
    higher_is_better: bool = True
    confidence: float | str | None = None   # 0.95, or "min-max" for speed repeats
    n_resamples: int | None = None
    n: int | None = None                    # examples behind the value (repeats for speed)
    method: str | None = None               # how the interval was made ("Wilson score interval", "BCa bootstrap", ...)

    @property
    def lower_is_better(self) -> bool:
        return not self.higher_is_better

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict | None) -> "Headline | None":
        """None for an error result's empty headline; the old `lower_is_better` key is understood."""
        if not values or not values.get("name"):
            return None
        known, _ = _known(cls, values)
        if "higher_is_better" not in values:
            if "lower_is_better" in values:
                known["higher_is_better"] = not values["lower_is_better"]
            else:
                from .. import metrics

                known["higher_is_better"] = metrics.higher_is_better(values["name"])
        return cls(**known)


@dataclass
class Repro:
    """Everything needed to reproduce a result: model, dataset and task fingerprints, seed, environment."""

    model: str = ""
    model_source: str = ""
    model_location: str = ""
    model_fingerprint: str = ""
    head: str | None = None
    head_is_new: bool = False
    dataset: str = ""
    dataset_hash: str = ""
    dataset_fingerprint: str = ""
    split: str | None = None            # the split scored: "test", "validation", ... or "all" (every row; also
    rows: int = 0                       # what None meant before splits were recorded); rows: how many scored
    dataset_rows: int = 0               # rows in the whole dataset (0: not recorded)
    task_definition: dict = field(default_factory=dict)
    task_hash: str = ""
    suite: str = ""
    suite_version: str = ""
    suite_digest: str = ""
    seed: int = 0
    settings: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict | None) -> "Repro | None":
        if not values:
            return None
        return cls(**_known(cls, values)[0])


@dataclass
class TaskResult:
    """One (model, task) of a suite run: ok (metrics, headline, per-example rows) or an error."""

    key: str
    model: str
    suite: str
    task: str
    type: str
    status: str = "ok"                   # ok | error
    error: str | None = None
    suite_version: str = ""
    suite_digest: str = ""
    metrics: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)
    headline: Headline | None = None
    per_example: list = field(default_factory=list)
    labels: list | None = None
    notes: list = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    intervals: dict = field(default_factory=dict)   # metric -> stats.intervals.Interval as a dict
    seconds: float | None = None
    created_at: float = 0.0
    cached: bool = False
    repro: Repro | None = None
    extra: dict = field(default_factory=dict)   # stored keys this version does not know (kept, written back)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def label(self) -> str:
        return f"{self.model} / {self.task}"

    @property
    def scored(self) -> str:
        """Which rows the result scored, in words: "demo-reviews: test split, 15 of 143 rows" (or "" when unknown)."""
        r = self.repro
        if not r or not r.dataset:
            return ""
        split = r.split or "all"
        what = "all rows" if split == "all" else f"{split} split"
        count = f"{r.rows} of {r.dataset_rows} rows" if r.dataset_rows else f"{r.rows} rows"
        return f"{r.dataset}: {what}, {count}"

    @property
    def n(self) -> int | None:
        """How many examples the result scored (None when not recorded)."""
        if self.headline and self.headline.n:
            return self.headline.n
        if self.repro and self.repro.rows:
            return self.repro.rows
        return len(self.per_example) or None

    def interval(self, metric: str) -> dict:
        """{value, low, high, n, method} of one metric: its stored interval, the headline's, or the value alone
        (results stored before every metric had one)."""
        if metric in (self.intervals or {}):
            return dict(self.intervals[metric])
        h = self.headline
        if h and h.name == metric:
            return {"value": h.value, "low": h.low, "high": h.high, "n": self.n, "method": h.method}
        return {"value": (self.metrics or {}).get(metric), "low": None, "high": None, "n": self.n, "method": None}

    def summary(self) -> "TaskResult":
        """The same result without its per-example rows (what the store's summary column holds)."""
        return replace(self, per_example=[])

    def to_dict(self, per_example: bool = True) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("headline", "repro", "extra")}
        out["headline"] = self.headline.to_dict() if self.headline else {}
        out["repro"] = self.repro.to_dict() if self.repro else None
        if not per_example:
            out.pop("per_example")
        return {**self.extra, **out}

    @classmethod
    def from_dict(cls, values: dict) -> "TaskResult":
        known, extra = _known(cls, values)
        known.pop("extra", None)
        known["headline"] = Headline.from_dict(values.get("headline"))
        known["repro"] = Repro.from_dict(values.get("repro"))
        for name in ("metrics", "details", "stats", "per_example", "notes", "intervals"):
            if known.get(name) is None:
                known.pop(name, None)
        return cls(**known, extra=extra)
