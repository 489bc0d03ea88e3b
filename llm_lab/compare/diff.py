"""Word-level differences between two outputs, as operations and as highlighted HTML."""
import difflib
import html
import re

_TOKEN = re.compile(r"\s*\S+\s*|\s+")


def words(text: str) -> list[str]:
    """Words with the whitespace after them, so joining the pieces gives the text back."""
    return _TOKEN.findall(text or "")


def word_ops(a: str, b: str) -> list[tuple[str, str, str]]:
    """[(op, a_text, b_text)] with op in equal / delete / insert / replace, compared word by word.

    Whitespace is kept in the pieces (a_text pieces join back to `a`) but is not compared:
    "the  cat" and "the cat" are equal.
    """
    ta, tb = words(a), words(b)
    matcher = difflib.SequenceMatcher(None, [w.strip() for w in ta], [w.strip() for w in tb], autojunk=False)
    return [(op, "".join(ta[i1:i2]), "".join(tb[j1:j2])) for op, i1, i2, j1, j2 in matcher.get_opcodes()]


def similarity(a: str, b: str) -> float:
    """Share of words the two texts have in common (difflib ratio over words; 1.0 = same words)."""
    ka = [w.strip() for w in words(a) if w.strip()]
    kb = [w.strip() for w in words(b) if w.strip()]
    if not ka and not kb:
        return 1.0
    return difflib.SequenceMatcher(None, ka, kb, autojunk=False).ratio()


STYLE = ("<style>.llm-diff{font-family:ui-monospace,monospace;white-space:pre-wrap;line-height:1.6;"
         "padding:.5em;border:1px solid #ddd;border-radius:6px;overflow-wrap:anywhere}"
         ".llm-diff del{background:#ffd7d5;color:#82071e;text-decoration:line-through}"
         ".llm-diff ins{background:#ccffd8;color:#055d20;text-decoration:none}</style>")


def _mark(tag: str, text: str) -> str:
    """<tag> around the words only; the surrounding whitespace stays outside the highlight."""
    core = text.strip()
    if not core:
        return html.escape(text)
    start = text.index(core)
    return f"{html.escape(text[:start])}<{tag}>{html.escape(core)}</{tag}>{html.escape(text[start + len(core):])}"


def side_by_side_html(a: str, b: str) -> tuple[str, str]:
    """Two HTML fragments: `a` with the words only it has struck through, `b` with its own words marked."""
    left, right = [], []
    for op, pa, pb in word_ops(a, b):
        if op == "equal":
            left.append(html.escape(pa))
            right.append(html.escape(pb))
        else:
            if pa:
                left.append(_mark("del", pa))
            if pb:
                right.append(_mark("ins", pb))
    return (f'<div class="llm-diff">{"".join(left)}</div>', f'<div class="llm-diff">{"".join(right)}</div>')


def inline_html(a: str, b: str) -> str:
    """One HTML fragment reading as `b`, with `a`'s removed words struck through in place."""
    out = []
    for op, pa, pb in word_ops(a, b):
        if op == "equal":
            out.append(html.escape(pa))
            continue
        if pa:
            out.append(_mark("del", pa))
        if pb:
            out.append(_mark("ins", pb))
    return f'<div class="llm-diff">{"".join(out)}</div>'
