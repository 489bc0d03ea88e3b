"""Invariance (CheckList): perturb each input in ways that should not matter and count how often the prediction flips.

Each example gets every built-in perturbation that applies to it (`perturb.KINDS`, or those the task lists in
`perturbations`) and every user template that matches; the original and perturbed texts are classified in one
pass (`classification.predict_probs`, so an interrupted run resumes). The flip rate of each kind is a proportion
over independent examples (Wilson interval); the overall rate pools several perturbations of one example, which
are not independent, so its interval is a BCa bootstrap over examples (`clustered_rate`).
"""
from __future__ import annotations

import numpy as np

from ...stats import intervals
from .. import perturb
from .classification import predict_probs
from .common import TaskError, headline, render, short


def run(state) -> dict:
    spec, frame = state.spec, state.frame
    shown = label_names(state)
    kinds = [p for p in spec.perturbations if isinstance(p, str)] if spec.perturbations else list(perturb.KINDS)
    templates = [perturb.Template.from_spec(p) for p in spec.perturbations if isinstance(p, dict)]
    cases = make_cases(frame, lambda text, row_id: perturb.perturbations(text, row_id, spec.seed, kinds, templates))
    if not cases:
        raise TaskError(f"None of the perturbations ({', '.join(kinds + [t.name for t in templates])}) changes any "
                        f"of the {len(frame)} examples: there is nothing to compare. Add a template that matches "
                        "the texts, e.g. `perturbations: [{find: good, replace: great}]`.")
    before, after = classify_cases(state, cases)
    rows_of = np.array([c[0] for c in cases])
    pred_before, pred_after = before.argmax(axis=1), after.argmax(axis=1)
    flipped = pred_before[rows_of] != pred_after
    names = [c[1] for c in cases]
    overall = clustered_rate(rows_of, flipped, spec.seed)
    by_kind = rates_by(names, rows_of, flipped, spec.seed)
    applied = set(names)
    unused = [k for k in kinds + [t.name for t in templates] if k not in applied]
    if unused:
        state.notes.append(f"Perturbation(s) {', '.join(unused)} changed none of the {len(frame)} examples "
                           "(nothing to swap or match); they are left out of the flip rate.")
    rows = []
    for j, (i, kind, new_text) in enumerate(cases):
        row = {"id": int(frame["id"].iloc[i]), "kind": kind, "text": short(frame["text"].iloc[i]),
               "perturbed": short(new_text), "prediction": shown[int(pred_before[i])],
               "perturbed_prediction": shown[int(pred_after[j])],
               "confidence": round(float(before[i, pred_before[i]]), 4),
               "perturbed_confidence": round(float(after[j, pred_after[j]]), 4), "flipped": bool(flipped[j])}
        if "label" in frame.columns:
            row["label"] = str(frame["label"].iloc[i])
        rows.append(row)
    values = {"flip_rate": overall.value}
    details = {"flip_rate": overall.to_dict(), "by_kind": by_kind, "seed": spec.seed, "examples": len(frame),
               "examples_perturbed": int(len(set(rows_of.tolist()))), "pairs": len(cases), "kinds": sorted(applied)}
    return {"metrics": values, "details": details, "per_example": rows, "labels": shown,
            "headline": headline("flip_rate", values, overall), "intervals": {"flip_rate": overall.to_dict()}}


def label_names(state) -> list[str]:
    """The model's output names; the task has checked it is a classifier."""
    labels = list(state.loaded.labels or [])
    if not labels:
        raise TaskError(f"{state.loaded.entry.name} has no classification head (it is loaded as "
                        f"{state.loaded.head}).")
    return labels


def make_cases(frame, edits) -> list[tuple[int, str, str]]:
    """[(row position, kind, edited text)] for every edit `edits(text, id)` gives, rows in frame order."""
    cases = []
    for i, (row_id, text) in enumerate(zip(frame["id"].tolist(), frame["text"].astype(str).tolist())):
        for kind, new_text in edits(text, int(row_id)):
            cases.append((i, kind, new_text))
    return cases


def classify_cases(state, cases) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities of the original rows (n, k) and of each case's edited text (cases, k), in one run
    of the model so a resumed run reuses both; the prompt template is filled after the edit."""
    frame, spec = state.frame, state.spec
    positions = [c[0] for c in cases]
    edited = frame.iloc[positions].reset_index(drop=True).copy()
    edited["text"] = [c[2] for c in cases]
    texts = render(spec.prompt, frame, "text") + render(spec.prompt, edited, "text")
    pairs = None
    if "text_pair" in frame.columns:
        original_pairs = frame["text_pair"].astype(str).tolist()
        pairs = original_pairs + [original_pairs[p] for p in positions]
    probs = predict_probs(state, texts, pairs)
    return probs[:len(frame)], probs[len(frame):]


def clustered_rate(rows_of: np.ndarray, hits: np.ndarray, seed: int = 0) -> intervals.Interval:
    """The share of cases that hit, with an honest interval when one example has several cases.

    One case per example: a proportion of independent trials (Wilson). Several: the ratio of summed hits to
    summed cases, BCa-bootstrapped over examples (cases of one example move together); when every example has
    the same share (no flip anywhere, say) no resample varies, and the interval is Wilson's with the examples as
    the trials: 0 flips over 14 examples gives [0, 0.22], never [0, 0]."""
    rows_of, hits = np.asarray(rows_of), np.asarray(hits, dtype=float)
    _, cluster = np.unique(rows_of, return_inverse=True)
    if cluster.max() + 1 == len(hits):
        return intervals.of_proportion(hits)
    stats = np.column_stack([np.bincount(cluster, weights=hits), np.bincount(cluster).astype(float)])
    point, low, high, _ = intervals.bca(stats, lambda sums: sums[:, 0] / sums[:, 1], seed=seed)
    method, examples, resamples = "BCa bootstrap over examples (the cases of one example are not independent)", \
        len(stats), 1000
    if low == high:
        low, high = intervals.wilson(round(point * examples), examples)
        method, resamples = "Wilson interval over examples (every resample equal)", None
    return intervals.Interval(point, low, high, int(len(hits)), method, n_resamples=resamples)


def rates_by(names: list[str], rows_of: np.ndarray, hits: np.ndarray, seed: int = 0) -> dict:
    """{kind: interval dict with `hits` and `examples`} per perturbation kind or template, in first-seen order."""
    names = np.asarray(names, dtype=object)
    out = {}
    for name in dict.fromkeys(names.tolist()):
        mask = names == name
        rate = clustered_rate(rows_of[mask], hits[mask], seed)
        out[name] = dict(rate.to_dict(), hits=int(np.sum(hits[mask])),
                         examples=int(len(set(rows_of[mask].tolist()))))
    return out
