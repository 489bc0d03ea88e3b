"""Faithfulness of an attribution (ferret's AOPC comprehensiveness and sufficiency).

For each fraction k in `FRACTIONS` the top-k% tokens by attribution (at least one; special tokens
never count and are never removed) are deleted from the input:
- comprehensiveness = mean over k of p(target | x) − p(target | x without the top-k)   (higher = better)
- sufficiency       = mean over k of p(target | x) − p(target | only the top-k kept)  (lower = better)
All perturbed inputs of one text go through the model in one batch.
"""
import math

import numpy as np

FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5)


def perturbations(ids: list[int], scores, special: list[bool], fractions=FRACTIONS):
    """(kind, k, ids) for every deletion the two metrics need."""
    candidates = [i for i in range(len(ids)) if not special[i]]
    order = sorted(candidates, key=lambda i: -float(scores[i]))
    out = []
    for frac in fractions:
        k = max(1, math.ceil(frac * len(candidates))) if candidates else 0
        top = set(order[:k])
        out.append(("comprehensiveness", frac, [t for i, t in enumerate(ids) if i not in top]))
        out.append(("sufficiency", frac, [t for i, t in enumerate(ids) if i in top or special[i]]))
    return out


def aopc(predict, ids: list[int], scores, special: list[bool], target: int, fractions=FRACTIONS) -> dict:
    """`predict(list_of_id_lists) -> probs (n, classes)`. Returns both metrics and the curves."""
    perts = perturbations(ids, scores, special, fractions)
    probs = predict([ids] + [p[2] for p in perts])
    full = float(probs[0, target])
    curves = {"comprehensiveness": [], "sufficiency": []}
    for (kind, frac, _), row in zip(perts, probs[1:]):
        curves[kind].append(full - float(row[target]))
    return {"comprehensiveness": float(np.mean(curves["comprehensiveness"])),
            "sufficiency": float(np.mean(curves["sufficiency"])),
            "curves": curves, "fractions": list(fractions), "p_full": full}


def for_attribution(loaded, attribution, fractions=FRACTIONS) -> dict:
    """Both metrics for an `attributions.Attribution` of `loaded`."""
    from . import text as textmod
    from .attributions import predict_proba_ids

    enc = textmod.encode(loaded, attribution.text)
    ids = enc.input_ids[0].tolist()
    with loaded.lock:
        return aopc(lambda batch: predict_proba_ids(loaded, batch), ids, attribution.scores, enc.special,
                    attribution.target, fractions)


def most_faithful(rows: list[dict]) -> str | None:
    """The method with the best comprehensiveness − sufficiency (rows: {method, comprehensiveness, sufficiency})."""
    if not rows:
        return None
    return max(rows, key=lambda r: r["comprehensiveness"] - r["sufficiency"])["method"]
