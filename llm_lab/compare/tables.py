"""The results table (one row per input, one column per model), filters, and exports."""
import html
import json
import math
import time

import pandas as pd

from . import diff, statistics
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
            if any(r.get("note") for r in rows):  # an input longer than the model reads: said beside its answer
                frame[f"{name} · input"] = [r.get("note", "") for r in rows]
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
    """The table as CSV, safe to open in a spreadsheet (prompts and outputs are anyone's text)."""
    from ..csv_safe import frame_to_csv

    return frame_to_csv(frame)


def to_json(comparison: Comparison, margin: float | None = None) -> bytes:
    """The whole comparison, plus its "statistics": every number with its interval and n, and the paired
    comparisons (computed from the rows; a saved comparison does not store them)."""
    out = comparison.to_dict()
    out["statistics"] = {"numbers": statistics.model_rows(comparison),
                         "paired": [c.to_dict() for c in statistics.paired_comparisons(comparison, margin)],
                         "no_paired_test": statistics.no_paired_reason(comparison)}
    return json.dumps(out, indent=1, default=str).encode("utf-8")


def numbers_frame(comparison: Comparison) -> pd.DataFrame:
    """Every model's numbers with their 95% interval, n and how the interval was made (a CSV export)."""
    return pd.DataFrame(statistics.model_rows(comparison),
                        columns=["model", "metric", "value", "low", "high", "n", "interval", "shown"])


def pairs_frame(comparison: Comparison, margin: float | None = None) -> pd.DataFrame:
    """The paired comparison of every two models on the labelled inputs (empty without labels)."""
    return pd.DataFrame(statistics.pair_rows(statistics.paired_comparisons(comparison, margin)))


def number(value) -> str:
    """A number as a person reads it: integers as they are, other numbers to 4 significant digits (whole
    from 1,000 up); "–" for none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


# the numbers of the "Models" table: summary key -> column heading (those a comparison has are shown)
_SUMMARY = {
    "generation": {"outputs": "outputs", "new_tokens": "new tokens", "tokens_per_s": "tokens / s",
                   "mean_latency_s": "mean latency (s)", "mean_logprob": "mean log-prob", "truncated": "prompts cut",
                   "exact_match": "exact match", "bleu": "BLEU", "rouge1": "ROUGE-1", "rougeL": "ROUGE-L"},
    "classification": {"outputs": "outputs", "accuracy": "accuracy (gold labels)", "mean_prob": "mean confidence",
                       "wall_s": "run time (s)", "head_is_new": "head untrained"},
}
_SETTINGS = {"do_sample": "decoding", "max_new_tokens": "max new tokens", "temperature": "temperature",
             "top_p": "top-p", "top_k": "top-k (0 = off)", "repetition_penalty": "repetition penalty", "seed": "seed",
             "stop": "stop strings", "batch_size": "batch size", "chat": "chat template", "system": "system prompt"}
_STYLE = ("<style>body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;"
          "margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;text-align:left}"
          "th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}"
          "pre{white-space:pre-wrap;margin:0;font-size:0.92em}small{color:#666}.err{color:#a00}"
          "tr.disagree{background:#fff4d6}</style>")


def _source_text(comparison: Comparison) -> str:
    src = comparison.source or {}
    if src.get("dataset"):
        return (f"a random sample of {src.get('limit') or len(comparison.inputs)} rows of dataset "
                f"{src['dataset']} (split {src.get('split') or 'all'}, seed {src.get('seed', 0)})")
    return "typed inputs" + (", streamed" if src.get("streamed") else "")


def _setting_text(key: str, value, sampling: bool) -> str:
    if key in ("temperature", "top_p", "top_k") and not sampling:
        return "not used (greedy)"
    if key == "do_sample":
        return "sampling" if value else "greedy"
    if key == "stop":
        return ", ".join(repr(s) for s in value) if value else "none"
    if key == "chat":
        return "applied when the model has one" if value else "off: raw prompts"
    if key == "system":
        return value or "the template's own default"
    return number(value)


def _input_cell(row: dict, esc) -> str:
    """An input as the HTML report shows it: a conversation's earlier turns above the prompt the models answer."""
    earlier = "".join(f"<small>{esc(t['role'])}: {esc(t['content'])}</small><br>"
                      for t in (row.get("conversation") or [])[:-1])
    return f"{earlier}<pre>{esc(row['text'])}</pre>"


def _output_cell(comparison: Comparison, row: dict, esc) -> str:
    """One model's answer to one input: the text (or label) and its numbers, rounded."""
    if comparison.mode == "generation":
        facts = [f"{number(row['new_tokens'])} tokens", f"{number(row['latency_s'])} s",
                 f"{number(row['tokens_per_s'])} tok/s", f"log-prob {number(row['mean_logprob'])}",
                 f"stopped: {row['stop_reason']}"]
        facts += [f"{label} {number(row[key])}" for key, label in
                  (("exact_match", "exact match"), ("bleu", "BLEU"), ("rougeL", "ROUGE-L")) if key in row]
        note = f"<br><small>⚠ {esc(row['note'])}</small>" if row.get("note") else ""
        return f"<pre>{esc(row['text']) or '<i>(empty)</i>'}</pre><small>{esc(' · '.join(facts))}</small>{note}"
    probs = ", ".join(f"{label} {number(p)}" for label, p in sorted(row["probs"].items(), key=lambda kv: -kv[1]))
    note = f"<br><small>⚠ {esc(row['note'])}</small>" if row.get("note") else ""
    return f"<b>{esc(row['label'])}</b> ({row['prob']:.1%})<br><small>{esc(probs)}</small>{note}"


INTERVALS_NOTE = ("<p><small>Numbers: value [95% interval] n = inputs behind it. Accuracy, exact match and "
                  "agreement: Wilson score interval; mean confidence, log-prob, BLEU and ROUGE: BCa bootstrap over "
                  "the inputs.</small></p>")


def _paired_html(comp: Comparison, margin: float | None, esc) -> str:
    """The paired comparison of every two models (or why there is none), as a section of the HTML report."""
    reason = statistics.no_paired_reason(comp)
    if reason:
        return f"<h2>Which model is better?</h2><p>{esc(reason)}</p>"
    found = statistics.paired_comparisons(comp, margin)
    rows = statistics.pair_rows(found)
    head = "".join(f"<th>{esc(h)}</th>" for h in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{esc(number(v))}</td>" for v in row.values()) + "</tr>" for row in rows)
    verdicts = "".join(f"<li>{esc(row['verdict'])}</li>" for row in rows)
    return (f"<h2>Which model is better?</h2><p>Paired on the same {found[0].n} labelled inputs: McNemar's exact "
            f"test of the flips, p-values {esc(found[0].adjustment)}-adjusted across the pairs; interval of B − A: "
            f"paired bootstrap.</p><ul>{verdicts}</ul><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>"
            "</table>")


def to_html(comparison: Comparison, margin: float | None = None) -> bytes:
    """A standalone, readable page: what was compared (models, settings, where the inputs came from), each
    model's numbers, and a table of inputs × models with every output and its numbers (rounded to 4
    significant digits). Every text a user or a model wrote is HTML-escaped. For two generation models
    each row is followed by the word-level diff of their outputs."""
    esc = lambda v: html.escape("" if v is None else str(v))  # noqa: E731
    comp, models = comparison, comparison.models
    gen = comp.mode == "generation"
    title = comp.title or "Comparison"
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(comp.created_at)) if comp.created_at else ""
    meta = " · ".join(x for x in (f"comparison {comp.id}" if comp.id else "", comp.mode,
                                  f"{len(comp.inputs)} inputs from {_source_text(comp)}", when) if x)

    # the models and their numbers (those with an interval: "value [low, high] n=…")
    found = statistics.model_intervals(comp)
    keys = [k for k in _SUMMARY[comp.mode]
            if any(k in (comp.summary.get(m) or {}) or k in found.get(m, {}) for m in models)]
    info_keys = [k for k in ("device", "dtype") if any(comp.outputs[m].info.get(k) for m in models)]
    head = "".join(f"<th>{esc(h)}</th>" for h in ["model", *info_keys, *(_SUMMARY[comp.mode][k] for k in keys)])
    body = []
    for m in models:
        s, out = comp.summary.get(m) or {}, comp.outputs[m]
        if out.error:
            body.append(f"<tr><td>{esc(m)}</td><td class='err' colspan='{len(info_keys) + len(keys)}'>"
                        f"error: {esc(out.error)}</td></tr>")
            continue
        cells = [f"<td>{esc(out.info.get(k, ''))}</td>" for k in info_keys]
        shown = found.get(m, {})
        cells += [f"<td class='n'>{esc(shown[k].text() if k in shown else number(s.get(k)))}</td>" for k in keys]
        body.append(f"<tr><td>{esc(m)}</td>{''.join(cells)}</tr>")
    model_table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"

    settings = ""
    if gen and comp.settings:
        sampling = bool(comp.settings.get("do_sample"))
        rows = "".join(f"<tr><th>{esc(label)}</th><td>{esc(_setting_text(k, comp.settings[k], sampling))}</td></tr>"
                       for k, label in _SETTINGS.items() if k in comp.settings)
        settings = f"<h2>Generation settings (shared by all models)</h2><table>{rows}</table>"
    agreement = ""
    agree = statistics.agreement_intervals(comp)
    if agree:
        pairs = "".join(f"<li>{esc(pair)}: {esc(ci.text())}</li>" for pair, ci in agree.items() if pair != "all")
        agreement = (f"<p>All models agree on {agree['all'].value:.0%} of the inputs ({esc(agree['all'].text())}; rows "
                     f"where they disagree are tinted). Each pair:</p><ul>{pairs}</ul>")
    paired_section = _paired_html(comp, margin, esc)

    # inputs x models
    gold = "reference" if gen else "label"
    has_gold = any(gold in r for r in comp.inputs)
    head = "".join(f"<th>{esc(h)}</th>" for h in ["#", "input", *([("reference" if gen else "gold label")] if has_gold else []),
                                                   *models])
    show_diff = gen and len(models) >= 2 and not any(comp.outputs[m].error for m in models[:2])
    body = []
    for i, row in enumerate(comp.inputs):
        cells = [f"<td>{esc(row['id'])}</td>", f"<td>{_input_cell(row, esc)}</td>"]
        if has_gold:
            cells.append(f"<td><pre>{esc(row.get(gold, ''))}</pre></td>")
        for m in models:
            out = comp.outputs[m]
            cells.append("<td class='err'>error</td>" if out.error else f"<td>{_output_cell(comp, out.rows[i], esc)}</td>")
        disagree = comp.agreement is not None and i < len(comp.agreement.rows) and not comp.agreement.rows[i]
        body.append(f"<tr{' class=disagree' if disagree else ''}>{''.join(cells)}</tr>")
        if show_diff:
            a, b = comp.outputs[models[0]].rows[i]["text"], comp.outputs[models[1]].rows[i]["text"]
            body.append(f'<tr><td></td><td colspan="{len(cells) - 1}"><small>word diff {esc(models[0])} → '
                        f"{esc(models[1])} ({diff.similarity(a, b):.0%} in common):</small>{diff.inline_html(a, b)}"
                        "</td></tr>")
    outputs = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"

    doc = (f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>{diff.STYLE}{_STYLE}"
           f"</head><body><h1>{esc(title)}</h1><p>{esc(meta)}</p><h2>Models</h2>{model_table}{INTERVALS_NOTE}{settings}"
           f"{agreement}{paired_section}"
           f"<h2>Outputs</h2>{outputs}<p><small>Made by LLM Lab. Numbers are rounded to 4 significant digits; "
           "the JSON export has them in full.</small></p></body></html>")
    return doc.encode("utf-8")


def highlight_disagreements(frame: pd.DataFrame):
    """A Styler that tints the rows where the models disagree (classification tables)."""
    if "agree" not in frame:
        return frame
    tint = lambda row: ["background-color: #fff4d6" if not row["agree"] else ""] * len(row)
    return frame.style.apply(tint, axis=1).format(precision=3)
