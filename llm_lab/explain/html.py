"""Self-contained HTML of text coloured by attribution (no scripts, no CDN)."""
import html as _html

import numpy as np


def color(value: float, scale: float) -> str:
    """Diverging scale: red for negative, white at 0, green for positive (alpha by magnitude)."""
    if not scale or not np.isfinite(value):
        return "rgba(255,255,255,0)"
    a = min(1.0, abs(value) / scale)
    return f"rgba(34,139,34,{a:.3f})" if value >= 0 else f"rgba(220,20,60,{a:.3f})"


_CHIP = "padding:2px 6px;display:inline-block;white-space:nowrap;margin:1px 0"


def legend(scale: float) -> str:
    """The colour key; each entry stays on one line (a narrow column wraps between entries, not inside one)."""
    return ('<div style="font:12px sans-serif;margin-top:6px">'
            f'<span style="background:{color(-scale, scale)};{_CHIP}">−{scale:.3g} against</span> '
            f'<span style="border:1px solid #ddd;{_CHIP}">0</span> '
            f'<span style="background:{color(scale, scale)};{_CHIP}">+{scale:.3g} for the target</span></div>')


def colored_tokens(tokens: list[str], scores, title: str = "", scale: float | None = None, skip=None) -> str:
    """An HTML fragment: each token a <span> with its score in the tooltip."""
    scores = np.asarray(scores, dtype=float)
    skip = skip or [False] * len(tokens)
    shown = [s for s, k in zip(scores, skip) if not k and np.isfinite(s)]
    scale = scale or (float(np.max(np.abs(shown))) if shown else 1.0) or 1.0
    parts = []
    for tok, s, k in zip(tokens, scores, skip):
        label = _html.escape(tok)
        style = "color:#888" if k else f"background:{color(s, scale)}"
        parts.append(f'<span title="{s:+.4f}" style="{style};padding:1px 2px;margin:1px;border-radius:3px;'
                     f'display:inline-block;font-family:monospace">{label}</span>')
    head = f"<div style='font:600 13px sans-serif;margin-bottom:4px'>{_html.escape(title)}</div>" if title else ""
    return f"<div>{head}<div style='line-height:1.9'>{''.join(parts)}</div>{legend(scale)}</div>"


def _rows(pairs) -> str:
    cells = "".join(f"<tr><th style='text-align:left;padding:2px 12px 2px 0;vertical-align:top'>{_html.escape(k)}</th>"
                    f"<td style='padding:2px 0'>{_html.escape(str(v))}</td></tr>" for k, v in pairs)
    return f"<table style='font:13px sans-serif;border-collapse:collapse;margin:8px 0'>{cells}</table>"


def metadata(a, faith: dict | None = None) -> list[tuple[str, str]]:
    """What produced an attribution (an `attributions.Attribution`), as (name, value) rows."""
    label, prob = a.predicted
    rows = [("Model", a.model), ("Head", a.head or "classifier"), ("Predicted", f"{label} (p = {prob:.4f})"),
            ("Target attributed", f"{a.target_label} (p = {a.f_input:.4f})" if a.f_input is not None
             else a.target_label),
            ("Method", f"{a.method_name} [{a.method}]")]
    if a.baseline:
        rows.append(("Baseline", a.baseline + (f" (p(target) = {a.f_baseline:.4f})" if a.f_baseline is not None
                                               else "")))
    if a.settings:
        rows.append(("Settings", ", ".join(f"{k} = {v}" for k, v in a.settings.items())))
    advice = a.delta_advice()
    if advice is not None:
        rows.append(("Convergence delta", f"{a.delta:+.3e}"))
        rows.append(("What the delta says", advice.text))
    if faith:
        rows.append(("Faithfulness", f"comprehensiveness {faith['comprehensiveness']:.4f} ↑, "
                                     f"sufficiency {faith['sufficiency']:.4f} ↓"))
    rows += [("Text", a.text)] if a.text else []
    rows += [("Note", n) for n in a.notes]
    return rows


def attribution_document(a, faith: dict | None = None) -> str:
    """A self-contained HTML report of one classification attribution: what produced it, then the coloured text.
    Everything from the model or the user (names, labels, the text, tokens) is escaped."""
    body = _rows(metadata(a, faith)) + colored_tokens(a.tokens, a.scores, skip=a.special)
    return document([body], f"{a.model} · {a.method_name}")


def document(fragments: list[str], title: str = "LLM Lab attributions") -> str:
    body = "<hr>".join(fragments)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_html.escape(title)}</title></head>"
            f"<body style='font-family:sans-serif;max-width:1000px;margin:20px auto'>"
            f"<h2>{_html.escape(title)}</h2>{body}</body></html>")
