"""Attribution drift: how far a variant's token attributions moved from its parent's.

Layer Integrated Gradients token scores (`explain.attributions`) of the variant and of the parent, for the
parent's predicted class, and their Spearman rank correlation per example (special tokens left out). A model
without gradients (an ONNX Runtime session) gets "not available: …" from the capability check.
"""
from __future__ import annotations

import math

from .. import capabilities as caps
from .report import Drift

IG = "ig"
_SHORT = {caps.GRADIENTS: "no gradients", caps.CLASSIFIER: "not a classifier", caps.TRAINED_HEAD: "a new head"}


def _attribution_gap(loaded) -> str | None:
    """None when layer IG applies to `loaded`; else "not available: …" from the capability check."""
    from ..explain import specs

    needs = specs.get_method(IG).requirements
    lacking = caps.missing(needs, loaded)
    if not lacking:
        return None
    short = ", ".join(_SHORT.get(c, c) for c in sorted(lacking))
    return f"not available: {short} ({caps.message(needs, loaded.entry.name, loaded.head, lacking)})"


def _spearman(a, b) -> float | None:
    import warnings

    from scipy.stats import spearmanr

    if len(a) < 3:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho = spearmanr(a, b).statistic
    return None if rho is None or math.isnan(rho) else float(rho)


def attribution_drift(parent_loaded, variant_loaded, examples: list[dict], n_steps: int = 32,
                      parent_cache: dict | None = None, progress=None) -> Drift:
    """Spearman rank correlation of layer-IG token scores (variant vs parent) per example, for the parent's
    predicted class; special tokens ([CLS], [SEP]) are left out. `examples`: {"id", "text"}."""
    import numpy as np

    from ..explain import attributions

    for loaded in (parent_loaded, variant_loaded):
        gap = _attribution_gap(loaded)
        if gap:
            who = "the parent" if loaded is parent_loaded else "this variant"
            return Drift("not available", gap if loaded is variant_loaded else f"{gap} — {who}", n_steps)
    cache = parent_cache if parent_cache is not None else {}
    rows = []
    for i, ex in enumerate(examples):
        if ex["id"] not in cache:
            cache[ex["id"]] = attributions.attribute(parent_loaded, ex["text"], IG, n_steps=n_steps)
        a = cache[ex["id"]]
        target = a.target_label
        labels = variant_loaded.labels
        if target not in labels:
            rows.append({"id": ex["id"], "text": ex["text"][:120], "target": target, "spearman": None,
                         "tokens": len(a.tokens), "note": f"the variant has no label {target!r}"})
            continue
        b = attributions.attribute(variant_loaded, ex["text"], IG, target=labels.index(target), n_steps=n_steps)
        if b.tokens != a.tokens:
            rows.append({"id": ex["id"], "text": ex["text"][:120], "target": target, "spearman": None,
                         "tokens": len(a.tokens), "note": "the variant's tokenizer splits the text differently"})
            continue
        keep = [j for j, s in enumerate(a.special) if not s]
        rho = _spearman([a.scores[j] for j in keep], [b.scores[j] for j in keep])
        rows.append({"id": ex["id"], "text": ex["text"][:120], "target": target, "tokens": len(keep),
                     "spearman": None if rho is None else round(rho, 4)})
        if progress:
            progress(i + 1, len(examples))
    values = [r["spearman"] for r in rows if r["spearman"] is not None]
    if not values:
        return Drift("error", "no example had enough tokens to rank", n_steps, rows)
    return Drift("ok", "", n_steps, rows, float(np.mean(values)), float(np.median(values)), float(min(values)))

