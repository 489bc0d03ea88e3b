"""Leaderboard tables, the per-example drill-down and exports (CSV, JSON) from stored results."""
from __future__ import annotations

import json

import pandas as pd

from ..explain.links import attribution_link
from . import cache


def fmt(value, low=None, high=None) -> str:
    if value is None:
        return "—"
    digits = 3 if abs(value) < 10 else 1
    text = f"{value:.{digits}f}"
    if low is not None and high is not None:
        text += f" ± {max(value - low, high - value):.{digits}f}"
    return text


def long_table(summaries: list[dict]) -> pd.DataFrame:
    """One row per (model, task): headline metric, interval, status, timing, cache hit."""
    rows = []
    for s in summaries:
        h = s.get("headline") or {}
        rows.append({"model": s["model"], "task": s["task"], "type": s["type"], "status": s["status"],
                     "metric": h.get("name"), "value": h.get("value"), "low": h.get("low"), "high": h.get("high"),
                     "lower_is_better": h.get("lower_is_better", False), "seconds": s.get("seconds"),
                     "cached": s.get("cached", False), "error": s.get("error"), "key": s["key"],
                     "notes": " ".join(s.get("notes") or [])})
    return pd.DataFrame(rows, columns=["model", "task", "type", "status", "metric", "value", "low", "high",
                                       "lower_is_better", "seconds", "cached", "error", "key", "notes"])


def wide_table(summaries: list[dict]) -> pd.DataFrame:
    """Models × tasks: "value ± half-width" per cell (or the error), plus the numbers for sorting."""
    long = long_table(summaries)
    if long.empty:
        return pd.DataFrame()
    long = long.drop_duplicates(["model", "task"], keep="last")
    out = pd.DataFrame({"model": sorted(long["model"].unique(), key=list(long["model"]).index)})
    for task in dict.fromkeys(long["task"]):
        sub = long[long["task"] == task].set_index("model")
        metric = next((m for m in sub["metric"] if isinstance(m, str) and m), "")
        col = f"{task} · {metric}" if metric else task
        out[col] = [fmt(sub.at[m, "value"], sub.at[m, "low"], sub.at[m, "high"]) if m in sub.index and
                    sub.at[m, "status"] == "ok" else ("error" if m in sub.index else "") for m in out["model"]]
        out[f"{col} (value)"] = [sub.at[m, "value"] if m in sub.index else None for m in out["model"]]
    return out


def text_table(summaries: list[dict]) -> str:
    """The leaderboard as plain text (the CLI prints it)."""
    wide = wide_table(summaries)
    if wide.empty:
        return "(no results)"
    shown = wide[[c for c in wide.columns if not c.endswith("(value)")]]
    widths = {c: max(len(c), *(len(str(v)) for v in shown[c])) for c in shown.columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in shown.columns)]
    lines.append("  ".join("-" * widths[c] for c in shown.columns))
    lines += ["  ".join(str(v).ljust(widths[c]) for c, v in row.items()) for _, row in shown.iterrows()]
    errors = [f"  {s['model']} / {s['task']}: {s['error']}" for s in summaries if s["status"] != "ok"]
    return "\n".join(lines + (["", "errors:"] + errors if errors else []))


def drilldown(results: list[dict], task: str, show: str = "all") -> pd.DataFrame:
    """Per-example rows of one task across models: show "all", "errors" (any model wrong) or
    "disagreements" (models predict differently). Each model gets prediction, correct and a link."""
    picked = [r for r in results if r["task"] == task and r["status"] == "ok" and r.get("per_example")]
    if not picked:
        return pd.DataFrame()
    base = None
    for r in picked:
        dataset = r.get("repro", {}).get("dataset", "")
        frame = pd.DataFrame(r["per_example"])
        keep = [c for c in ("id", "text", "label") if c in frame.columns]
        cols = {c: f"{r['model']}: {c}" for c in frame.columns if c not in keep}
        part = frame.rename(columns=cols)
        part[f"{r['model']}: attributions"] = [attribution_link(r["model"], dataset=dataset, example=i)
                                                   for i in frame["id"]]
        base = part if base is None else base.merge(part.drop(columns=[c for c in ("text", "label") if c in part]),
                                                    on="id", how="outer")
    pred_cols = [c for c in base.columns if c.endswith(": prediction")]
    correct_cols = [c for c in base.columns if c.endswith(": correct")]
    if show == "errors":  # tasks without right/wrong (perplexity, speed) have no errors to show
        base = base[~base[correct_cols].fillna(False).astype(bool).all(axis=1)] if correct_cols else base.iloc[:0]
    elif show == "disagreements":  # needs predictions of at least two models
        base = base[base[pred_cols].astype(str).nunique(axis=1) > 1] if len(pred_cols) > 1 else base.iloc[:0]
    return base.reset_index(drop=True)


def full_results(keys: list[str]) -> list[dict]:
    return [r for r in (cache.load_result(k) for k in keys) if r]


def export_csv(summaries: list[dict]) -> bytes:
    return long_table(summaries).to_csv(index=False).encode()


def export_json(results: list[dict]) -> bytes:
    return json.dumps({"results": results}, indent=1, default=str).encode()
