"""CSV that is safe to open in a spreadsheet: every CSV LLM Lab writes goes through here.

A cell whose text starts with `=`, `+`, `-`, `@`, a tab or a carriage return is read by Excel, LibreOffice and
Google Sheets as a formula (`=HYPERLINK(...)`, `+cmd|...`, `@SUM(...)`): a prompt, a model output or a dataset
name typed by anyone would run in the spreadsheet of the teammate who opens the export (CSV injection). OWASP's
advice is followed: such a cell gets a leading single quote, which the spreadsheet shows as text.

Lines end in CRLF (RFC 4180), so a carriage return inside a cell is quoted like a newline: with `\n` endings
Python's csv writer leaves it bare, and a spreadsheet would start a new row there, whose first cell could be a
formula.

Only text cells change (and column names, which are text too): numbers stay numbers, so a score of -0.25
is still the number -0.25 in the spreadsheet; only the text "-0.25" (a string cell) gets the quote.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Iterable

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell(value):
    """`value` as a spreadsheet must see it: text that starts like a formula gets a leading `'`."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def frame_to_csv(frame) -> bytes:
    """A DataFrame as UTF-8 CSV bytes (no index), its text cells and column names neutralised."""
    safe = frame.copy()
    safe.columns = [cell(str(c)) for c in safe.columns]
    for name in safe.columns:
        column = safe[name]
        if column.dtype == object or str(column.dtype) in ("string", "str", "category"):
            safe[name] = column.map(cell, na_action="ignore").astype(object)
    return safe.to_csv(index=False, lineterminator="\r\n").encode("utf-8")


def rows_to_csv(header: list, rows: Iterable[Iterable]) -> str:
    """Rows (lists of cells) under `header` as CSV text, every text cell neutralised."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([cell(str(h)) for h in header])
    for row in rows:
        writer.writerow([cell(v) for v in row])
    return out.getvalue()
