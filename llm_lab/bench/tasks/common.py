"""What every task gets (TaskState) and shares: prompt rendering, label mapping, headline intervals."""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from ...errors import LabError
from ..result import Headline


class TaskError(LabError):
    """A problem with one task (its model, dataset or definition): reported for that task only."""


@dataclass
class TaskState:
    spec: object            # suite.TaskSpec
    loaded: object          # registry.LoadedModel
    frame: object           # pandas DataFrame: id + the task's roles, in id order
    partial: object         # cache.Partial
    progress: object        # fn(done, total, message)
    batch_size: int
    device: str
    notes: list = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    actor: object = None    # who runs it (a task that reads another split of the dataset needs it)


def render(template: str | None, frame, default_role: str) -> list[str]:
    """The text each example sends to the model: the template filled with the example's roles."""
    if not template:
        return frame[default_role].astype(str).tolist()
    fields = sorted(set(re.findall(r"{(\w+)}", template)))
    columns = {f: frame[f].astype(str).tolist() for f in fields}
    out = []
    for i in range(len(frame)):
        text = template
        for f in fields:
            text = text.replace("{" + f + "}", columns[f][i])
        out.append(text)
    return out


def map_labels(dataset_labels: list[str], model_labels: list[str], label_map: dict, head_is_new: bool,
               model_name: str) -> tuple[dict, str]:
    """dataset label -> index of the model's output; and a note when the mapping is not by name."""
    index = {m: i for i, m in enumerate(model_labels)}
    lower = {str(m).lower(): i for i, m in enumerate(model_labels)}
    mapped, unknown = {}, []
    for d in dataset_labels:
        target = str(label_map.get(d, d))
        if target in index:
            mapped[d] = index[target]
        elif target.lower() in lower:
            mapped[d] = lower[target.lower()]
        else:
            unknown.append(d)
    if not unknown:
        return mapped, ""
    generic = all(re.fullmatch(r"LABEL_\d+", str(m)) for m in model_labels)
    if generic and len(model_labels) == len(dataset_labels) and not label_map:
        note = (f"{model_name}'s labels are generic ({', '.join(model_labels)}); dataset labels were mapped by "
                f"position: " + ", ".join(f"{d}→{model_labels[i]}" for i, d in enumerate(dataset_labels)) + ".")
        if head_is_new:
            note += " Its classification head is new (untrained), so these scores are near chance until it is fine-tuned."
        return {d: i for i, d in enumerate(dataset_labels)}, note
    if all(str(d).isdigit() and int(d) < len(model_labels) for d in dataset_labels) and not label_map:
        return {d: int(d) for d in dataset_labels}, "Numeric dataset labels were read as the model's output indices."
    raise TaskError(
        f"The dataset has label(s) {', '.join(repr(u) for u in unknown)} that {model_name} does not know; its labels "
        f"are {', '.join(map(repr, model_labels))}. Add `label_map: {{{unknown[0]}: <model label>}}` to the task, "
        "or fine-tune the model on this dataset.")


def headline(name: str, values: dict, ci=None) -> Headline:
    """The task's headline metric with its interval (a `stats.intervals.Interval`, or a dict with low/high and
    how it was made); which way is better comes from the metrics table."""
    from ... import metrics

    out = Headline(name, values.get(name), higher_is_better=metrics.higher_is_better(name))
    if ci is not None and not isinstance(ci, dict):
        ci = ci.to_dict()
    if ci:
        out = replace(out, low=ci.get("low"), high=ci.get("high"), confidence=ci.get("confidence"),
                      n_resamples=ci.get("n_resamples"), n=ci.get("n"), method=ci.get("method"))
    return out


def short(text, n: int = 300) -> str:
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "…"
