"""Did the evaluation rows leak into training? Exact and near duplicates by normalised word n-gram overlap.

    report = contamination.check(eval_ids, eval_texts, train_ids, train_texts, training="demo-reviews (train)")
    report.exact, report.near, report.note("minilm-sentiment")

Texts are normalised (lower case, punctuation removed, white space collapsed) and cut into word n-grams
(n = 8 by default; a text of fewer than n words is one "gram", the whole normalised text). An evaluation row is
an **exact** duplicate when its normalised text equals a training row's, a **near** duplicate when at least
`threshold` (default 0.5) of its n-grams occur anywhere in the training rows. Training n-grams are kept as a
dict from a 64-bit hash to the first row that has it, so a check is one pass over each side.

`training_rows(actor, entry)` finds the rows a model trained by LLM Lab learnt from, from what training
recorded (the model's registry entry, or llm_lab_training.json in its folder); `named_rows` a dataset a user names.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import LabError

DEFAULT_N = 8
DEFAULT_THRESHOLD = 0.5
MAX_FLAGGED = 200          # flagged rows kept in the record (the counts cover every row)
_PUNCT = re.compile(r"[^\w\s]|_", re.UNICODE)
_SPACE = re.compile(r"\s+")


class ContaminationError(LabError):
    pass


def normalise(text) -> str:
    """Lower case, punctuation removed, runs of white space made one space."""
    return _SPACE.sub(" ", _PUNCT.sub(" ", str(text).lower())).strip()


def _hash(gram: str) -> int:
    return int.from_bytes(hashlib.blake2b(gram.encode(), digest_size=8).digest(), "little")


def ngrams(normalised: str, n: int = DEFAULT_N) -> list[int]:
    """Hashes of the word n-grams of a normalised text (the whole text when it has fewer than n words)."""
    words = normalised.split()
    if not words:
        return []
    if len(words) < n:
        return [_hash(" ".join(words))]
    return [_hash(" ".join(words[i:i + n])) for i in range(len(words) - n + 1)]


@dataclass
class Flagged:
    """One evaluation row found in the training data."""

    id: int                 # the evaluation row's id
    kind: str               # exact | near
    overlap: float          # share of its n-grams found in the training rows (1.0 for an exact duplicate)
    train_id: int | None    # the training row it matches (for a near duplicate: the one sharing most n-grams)
    text: str = ""
    train_text: str = ""


@dataclass
class ContaminationReport:
    checked: int
    exact: int
    near: int
    threshold: float
    n: int
    training: str                       # what was checked against, in words
    training_rows: int
    source: str = "named"               # trained (the model's own training rows) | named (a dataset the task names)
    flagged: list[Flagged] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.exact or self.near)

    def note(self, model: str = "", rows: str = "evaluation rows") -> str:
        """One sentence for the result's notes: "3 of 50 test rows also appear in the training data of X (...)
        (exact), 1 near-duplicate (≥50% of its 8-grams)"."""
        where = f"the training data of {model} ({self.training})" if self.source == "trained" and model \
            else self.training
        if self.clean:
            text = (f"Contamination check: none of the {self.checked} {rows} appear in {where} (exact, or near: "
                    f"≥{self.threshold:.0%} of a row's {self.n}-grams).")
        else:
            plural = "s" if self.near != 1 else ""
            text = (f"{self.exact} of {self.checked} {rows} also appear in {where} (exact), {self.near} "
                    f"near-duplicate{plural} (≥{self.threshold:.0%} of its {self.n}-grams).")
        return " ".join([text] + list(self.caveats))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "ContaminationReport":
        values = dict(values)
        values["flagged"] = [Flagged(**f) for f in values.get("flagged", [])]
        return cls(**values)


def check(eval_ids, eval_texts, train_ids, train_texts, *, n: int = DEFAULT_N, threshold: float = DEFAULT_THRESHOLD,
          training: str = "the training data", source: str = "named") -> ContaminationReport:
    """Each evaluation row against the training rows: exact duplicates, and near ones at `threshold`."""
    if not 0 < threshold <= 1:
        raise ContaminationError(f"The contamination threshold must be in (0, 1]; got {threshold}.")
    if n < 1:
        raise ContaminationError(f"The n-gram size must be at least 1; got {n}.")
    train_texts = [str(t) for t in train_texts]
    train_ids = list(train_ids)
    exact_of: dict[str, int] = {}
    gram_of: dict[int, int] = {}
    for pos, text in enumerate(train_texts):
        norm = normalise(text)
        if not norm:
            continue
        exact_of.setdefault(norm, pos)
        for g in ngrams(norm, n):
            gram_of.setdefault(g, pos)
    report = ContaminationReport(checked=0, exact=0, near=0, threshold=float(threshold), n=int(n), training=training,
                                 training_rows=len(train_texts), source=source)
    for row_id, text in zip(eval_ids, eval_texts):
        report.checked += 1
        norm = normalise(text)
        if not norm:
            continue
        if norm in exact_of:
            report.exact += 1
            _flag(report, row_id, "exact", 1.0, exact_of[norm], text, train_ids, train_texts)
            continue
        grams = ngrams(norm, n)
        hits = [gram_of[g] for g in grams if g in gram_of]
        # k/m >= threshold, compared in integers where possible so 4 of 8 at 0.5 is not lost to rounding
        if hits and len(hits) >= threshold * len(grams) - 1e-9:
            report.near += 1
            best = Counter(hits).most_common(1)[0][0]
            _flag(report, row_id, "near", len(hits) / len(grams), best, text, train_ids, train_texts)
    return report


def _flag(report, row_id, kind, overlap, pos, text, train_ids, train_texts) -> None:
    if len(report.flagged) < MAX_FLAGGED:
        report.flagged.append(Flagged(id=int(row_id), kind=kind, overlap=round(float(overlap), 4),
                                      train_id=int(train_ids[pos]), text=_short(text),
                                      train_text=_short(train_texts[pos])))


def _short(text, n: int = 200) -> str:
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "…"


# ---------------------------------------------------------------- what a model trained on
def training_record(entry) -> dict | None:
    """What LLM Lab recorded when it trained `entry` ({"dataset": {...}, "hyperparameters": {...}}), from the
    registry entry (registered trained models) or llm_lab_training.json in the model's folder (built-in models
    trained by LLM Lab, models written with --out); None for a model LLM Lab did not train."""
    meta = getattr(entry, "meta", None) or {}
    if meta.get("hyperparameters") and meta.get("dataset"):
        return meta
    location = getattr(entry, "location", "") or ""
    if getattr(entry, "source", "") in ("hub", "endpoint") or not location:
        return None
    path = Path(location) / "llm_lab_training.json"
    try:
        record = json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("hyperparameters") and record.get("dataset") else None


def training_rows(actor, entry) -> tuple[list, list, str, list[str]] | None:
    """(ids, texts, description, caveats) of the rows `entry` was trained on, reproduced the way training chose
    them (the train split less the held-out rows, same seed); None when LLM Lab did not train it on a dataset.
    ContaminationError when the recorded dataset cannot be read any more."""
    from .. import data
    from ..train import data_prep
    from ..train.config import TrainConfig

    record = training_record(entry)
    if record is None:
        return None
    cfg = TrainConfig.from_params(record["hyperparameters"])
    recorded = record["dataset"] if isinstance(record["dataset"], dict) else {}
    if not cfg.dataset:  # pretrained on a built-in corpus, not a dataset
        return None
    try:
        info = data.get(actor, cfg.dataset)
    except LabError as exc:
        raise ContaminationError(f"{entry.name} was trained on dataset {cfg.dataset!r}, which cannot be read "
                                 f"here ({exc}); its training data was not checked.") from exc
    caveats = []
    if recorded.get("fingerprint") and recorded["fingerprint"] != info.fingerprint:
        caveats.append(f"Dataset {cfg.dataset!r} changed after {entry.name} was trained on it; its current "
                       "training rows were checked.")
    try:
        if cfg.task == "pretrain":
            frame = data.load_frame(actor, cfg.dataset)
            frame = frame[frame[cfg.text_col].astype(str).str.strip() != ""]
            columns, what = [cfg.text_col], "every row"
        else:
            if cfg.task == "classify":
                roles = (cfg.text_col, cfg.label_col) + ((cfg.pair_col,) if cfg.pair_col else ())
                columns = [cfg.text_col] + ([cfg.pair_col] if cfg.pair_col else [])
            elif data_prep.lm_format(actor, cfg) == "prompt-completion":
                roles = columns = ("prompt", "reference")
            else:
                roles = columns = (cfg.text_col,)
            # the same selection as training: empty rows dropped, the held-out share drawn with the run's seed
            frame, _, _ = data_prep._frames(actor, cfg, tuple(roles))
            held_out = cfg.eval_fraction > 0 and not (info.splits or {}).get("validation")
            what = "train split" + (" less the rows held out for evaluation" if held_out else "")
    except LabError as exc:
        raise ContaminationError(f"The training rows of {entry.name} (dataset {cfg.dataset!r}) could not be "
                                 f"reproduced: {exc}") from exc
    ids, texts = [], []
    for column in columns:  # each text column counts as a training text of that row
        ids += frame["id"].astype(int).tolist()
        texts += frame[column].astype(str).tolist()
    return ids, texts, f"dataset {cfg.dataset!r}, {what}, {len(frame)} rows", caveats


def named_rows(actor, dataset: str, split: str | None, column: str) -> tuple[list, list, str]:
    """(ids, texts, description) of a dataset the task names, optionally one split, from `column`
    (the role the task scores, e.g. text)."""
    from .. import data

    try:
        frame = data.load_frame(actor, dataset, split)
    except LabError as exc:
        raise ContaminationError(f"`contamination`: {exc}") from exc
    if column not in frame.columns:
        raise ContaminationError(f"`contamination`: dataset {dataset!r} has no {column!r} column to compare with; "
                                 f"its columns are {', '.join(c for c in frame.columns if c not in ('id', 'split'))}.")
    if split and frame.empty:
        raise ContaminationError(f"`contamination_split`: dataset {dataset!r} has no rows in split {split!r}.")
    what = f"dataset {dataset!r}" + (f", {split} split" if split else ", all rows") + f", {len(frame)} rows"
    return frame["id"].astype(int).tolist(), frame[column].astype(str).tolist(), what
