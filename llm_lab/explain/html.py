"""Self-contained HTML of text coloured by attribution (no scripts, no CDN)."""
import html as _html

import numpy as np


def color(value: float, scale: float) -> str:
    """Diverging scale: red for negative, white at 0, green for positive (alpha by magnitude)."""
    if not scale or not np.isfinite(value):
        return "rgba(255,255,255,0)"
    a = min(1.0, abs(value) / scale)
    return f"rgba(34,139,34,{a:.3f})" if value >= 0 else f"rgba(220,20,60,{a:.3f})"


def legend(scale: float) -> str:
    return ('<div style="font:12px sans-serif;margin-top:6px">'
            f'<span style="background:{color(-scale, scale)};padding:2px 6px">−{scale:.3g} against</span> '
            '<span style="padding:2px 6px;border:1px solid #ddd">0</span> '
            f'<span style="background:{color(scale, scale)};padding:2px 6px">+{scale:.3g} for the target</span></div>')


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


def document(fragments: list[str], title: str = "LLM Lab attributions") -> str:
    body = "<hr>".join(fragments)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_html.escape(title)}</title></head>"
            f"<body style='font-family:sans-serif;max-width:1000px;margin:20px auto'>"
            f"<h2>{_html.escape(title)}</h2>{body}</body></html>")
