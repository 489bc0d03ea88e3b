"""The results table (one row per input, one column per model), filters, and exports."""
import html
import json

import pandas as pd

from . import diff
from .runs import Comparison


def table(comparison: Comparison, details: bool = False) -> pd.DataFrame:
    """One row per input; per model its output (text, or label) — plus its numbers when `details`."""
    inputs = comparison.inputs
    frame = pd.DataFrame({"id": [r["id"] for r in inputs], "input": [r["text"] for r in inputs]})
    if any("reference" in r for r in inputs):
        frame["reference"] = [r.get("reference") for r in inputs]
    if any("label" in r for r in inputs):
        frame["gold label"] = [r.get("label") for r in inputs]
    gen = comparison.mode == "generation"
    for name in comparison.models:
        out = comparison.outputs[name]
        if out.error:
            frame[name] = f"⚠ error: {out.error}"
            continue
        rows = out.rows
        frame[name] = [r["text"] if gen else r["label"] for r in rows]
        if not gen:
            frame[f"{name} · p"] = [round(r["prob"], 4) for r in rows]
        if details and gen:
            frame[f"{name} · tokens"] = [r["new_tokens"] for r in rows]
            frame[f"{name} · logprob"] = [None if r["mean_logprob"] is None else round(r["mean_logprob"], 4) for r in rows]
            frame[f"{name} · tok/s"] = [round(r["tokens_per_s"], 1) for r in rows]
            for key in ("exact_match", "bleu", "rougeL"):
                if any(key in r for r in rows):
                    frame[f"{name} · {key}"] = [r.get(key) for r in rows]
    if not gen and comparison.agreement:
        frame["agree"] = comparison.agreement.rows
    return frame


def filter_rows(frame: pd.DataFrame, search: str = "", disagreements_only: bool = False) -> pd.DataFrame:
    out = frame
    if disagreements_only and "agree" in out:
        out = out[~out["agree"].astype(bool)]
    if search:
        mask = out.astype(str).apply(lambda col: col.str.contains(search, case=False, regex=False)).any(axis=1)
        out = out[mask]
    return out


def to_csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode("utf-8")


def to_json(comparison: Comparison) -> bytes:
    return json.dumps(comparison.to_dict(), indent=1, default=str).encode("utf-8")


def to_html(comparison: Comparison, frame: pd.DataFrame | None = None) -> bytes:
    """A standalone page: title, settings, per-model summary, and the table (every cell escaped).

    For two generation models each row also shows the word-level diff of their outputs.
    """
    frame = table(comparison, details=True) if frame is None else frame
    esc = lambda v: html.escape("" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v))
    head = "".join(f"<th>{esc(c)}</th>" for c in frame.columns)
    body = []
    models = comparison.models
    show_diff = comparison.mode == "generation" and len(models) >= 2 and not any(
        comparison.outputs[m].error for m in models[:2])
    for _, row in frame.iterrows():
        cells = "".join(f"<td>{esc(v)}</td>" for v in row.tolist())
        body.append(f"<tr>{cells}</tr>")
        if show_diff:
            pos = int(row.name)
            a, b = comparison.outputs[models[0]].rows[pos]["text"], comparison.outputs[models[1]].rows[pos]["text"]
            body.append(f'<tr><td colspan="{len(frame.columns)}"><small>diff {esc(models[0])} → {esc(models[1])}:'
                        f"</small>{diff.inline_html(a, b)}</td></tr>")
    summary = "".join(f"<li><b>{esc(m)}</b>: {esc(json.dumps(s, default=str))}</li>"
                      for m, s in (comparison.summary or {}).items())
    title = comparison.title or "Comparison"
    doc = (f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}"
           f"</title>{diff.STYLE}<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}"
           f"td,th{{border:1px solid #ccc;padding:4px;vertical-align:top}}</style></head><body>"
           f"<h1>{esc(title)}</h1>"
           f"<p>id {esc(comparison.id or '')} · settings {esc(json.dumps(comparison.settings or {}))}</p>"
           f"<ul>{summary}</ul><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
           f"</body></html>")
    return doc.encode("utf-8")


def highlight_disagreements(frame: pd.DataFrame):
    """A Styler that tints the rows where the models disagree (classification tables)."""
    if "agree" not in frame:
        return frame
    tint = lambda row: ["background-color: #fff4d6" if not row["agree"] else ""] * len(row)
    return frame.style.apply(tint, axis=1).format(precision=3)
