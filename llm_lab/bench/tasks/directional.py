"""Directional expectations (CheckList): an edit that should make a known label more likely.

    directional:
      - {append: " I hated it.", expect: negative}
      - {find: good, replace: awful, expect: negative}

Every template that applies to an example makes one case; a case fails when the probability of its expected
label did not increase (p_after <= p_before). A model already certain of the label (p = 1.0 in float) cannot
increase it and counts as a failure; `saturated` in the details says how many cases started at p ≥ 0.999, so a
reader can tell that from a real failure. The failure rate per template is a Wilson interval over its examples,
the overall rate a BCa bootstrap over examples (`invariance.clustered_rate`).
"""
from __future__ import annotations

import numpy as np

from .. import perturb
from .common import TaskError, headline, map_labels, short
from .invariance import classify_cases, clustered_rate, label_names, make_cases, rates_by

SATURATED = 0.999


def run(state) -> dict:
    spec, frame = state.spec, state.frame
    shown = label_names(state)
    templates = [(perturb.Template.from_spec({k: v for k, v in t.items() if k != "expect"}), str(t["expect"]))
                 for t in spec.directional]
    expected = expected_outputs([e for _, e in templates], state)
    by_name = {t.name: (t, e) for t, e in templates}
    if len(by_name) != len(templates):
        raise TaskError("Two directional templates have the same name; give each a distinct `name`.")
    cases = make_cases(frame, lambda text, row_id: [(t.name, new) for t, _ in templates
                                                    if (new := t.apply(text)) is not None])
    if not cases:
        raise TaskError(f"None of the directional templates changes any of the {len(frame)} examples: there is "
                        "nothing to compare. Use `append`/`prepend`, or a `find` that occurs in the texts.")
    before, after = classify_cases(state, cases)
    rows_of = np.array([c[0] for c in cases])
    target = np.array([expected[by_name[c[1]][1]] for c in cases])
    p_before = before[rows_of, target]
    p_after = after[np.arange(len(cases)), target]
    failed = p_after <= p_before
    names = [c[1] for c in cases]
    overall = clustered_rate(rows_of, failed, spec.seed)
    unused = [t.name for t, _ in templates if t.name not in set(names)]
    if unused:
        state.notes.append(f"Directional template(s) {', '.join(unused)} changed none of the {len(frame)} examples; "
                           "they are left out of the failure rate.")
    rows = []
    for j, (i, name, new_text) in enumerate(cases):
        row = {"id": int(frame["id"].iloc[i]), "kind": name, "expect": by_name[name][1],
               "text": short(frame["text"].iloc[i]), "perturbed": short(new_text),
               "prediction": shown[int(before[i].argmax())], "perturbed_prediction": shown[int(after[j].argmax())],
               "p_expected": round(float(p_before[j]), 6), "perturbed_p_expected": round(float(p_after[j]), 6),
               "change": round(float(p_after[j] - p_before[j]), 6), "failed": bool(failed[j])}
        if "label" in frame.columns:
            row["label"] = str(frame["label"].iloc[i])
        rows.append(row)
    values = {"failure_rate": overall.value}
    details = {"failure_rate": overall.to_dict(), "by_template": rates_by(names, rows_of, failed, spec.seed),
               "expect": {t.name: e for t, e in templates}, "saturated": int(np.sum(p_before >= SATURATED)),
               "mean_change": float(np.mean(p_after - p_before)), "examples": len(frame),
               "examples_changed": int(len(set(rows_of.tolist()))), "pairs": len(cases)}
    return {"metrics": values, "details": details, "per_example": rows, "labels": shown,
            "headline": headline("failure_rate", values, overall), "intervals": {"failure_rate": overall.to_dict()}}


def expected_outputs(expects: list[str], state) -> dict[str, int]:
    """{expected label: the model output it is}, by the task's label_map, the model's names, or the dataset's
    labels by position when the model's are generic (`common.map_labels`)."""
    dataset_labels = list(expects)
    if "label" in state.frame.columns:
        from ...text_utils import natural_key

        dataset_labels = sorted(set(state.frame["label"].astype(str)) | set(expects), key=natural_key)
    try:
        mapping, note = map_labels(dataset_labels, list(state.loaded.labels), state.spec.label_map,
                                   state.loaded.head_is_new, state.loaded.entry.name)
    except TaskError as exc:
        raise TaskError(f"A directional template expects a label the model does not have: {exc}") from exc
    if note:
        state.notes.append(note)
    return {e: mapping[e] for e in expects}
