"""Slices: the groups of examples a result can be cut by, and which group every example is in.

A task's `slices` is a list of definitions:

    slices:
      - {column: label}                       # each value of a categorical column is a slice
      - {length: [50, 200]}                   # text length in characters: "<50", "50–200", "≥200"
      - {length: [100], of: prompt, name: prompt_length}
      - {name: long_negative, where: "label == 'negative' and len(text) >= 100"}   # "yes" / "no"

The runner stores each example's values in its per-example row as `row["slice"] = {slice name: value}`
(values are text); `per_slice(rows, name)` groups row indices by value for per-slice metrics.

`where` expressions are parsed here, never evaluated by Python or pandas: `DataFrame.query(engine="python")`
runs arbitrary code, and even numexpr accepts function calls and attribute access. The grammar is
comparisons `column OP value` (OP: == != < <= > >=, or `in` / `not in` a list of values), `len(column)` as the
only call, joined by and / or / not and parentheses; columns must exist in the dataset. Python's `ast` gives
the parse tree, and only those node types are accepted.
"""
from __future__ import annotations

import ast
import operator
import re

import numpy as np
import pandas as pd

from ..errors import LabError

MAX_CATEGORIES = 50          # a column with more distinct values is not categorical (a text column, an id)
MAX_EXPRESSION = 500         # characters of a `where` expression
MISSING = "(missing)"
SLICE_KEYS = {"name", "column", "length", "of", "where"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,59}")


class SliceError(LabError):
    pass


# ---------------------------------------------------------------- definitions
def check(specs) -> list[dict]:
    """Validate a task's `slices` (SliceError naming the slice and what is wrong); returns them with names."""
    if not isinstance(specs, list):
        raise SliceError("`slices` is a list such as [{column: label}, {length: [50, 200]}].")
    out, seen = [], set()
    for i, spec in enumerate(specs):
        try:
            named = _check_one(spec)
        except SliceError as exc:
            raise SliceError(f"slice {i + 1}: {exc}") from None
        if named["name"] in seen:
            raise SliceError(f"slice {i + 1}: the name {named['name']!r} is used twice; give one a `name`.")
        seen.add(named["name"])
        out.append(named)
    return out


def _check_one(spec) -> dict:
    if not isinstance(spec, dict):
        raise SliceError("each slice is a mapping: {column: NAME}, {length: [50, 200]} or {name: X, where: ...}.")
    unknown = set(spec) - SLICE_KEYS
    if unknown:
        raise SliceError(f"unknown key(s) {', '.join(sorted(map(str, unknown)))}; a slice has "
                         f"{', '.join(sorted(SLICE_KEYS))}.")
    kinds = [k for k in ("column", "length", "where") if k in spec]
    if len(kinds) != 1:
        raise SliceError("give exactly one of `column`, `length` or `where`.")
    kind = kinds[0]
    if "of" in spec and kind != "length":
        raise SliceError("`of` (the column whose length is measured) goes with `length`.")
    if kind == "column":
        if not isinstance(spec["column"], str) or not spec["column"]:
            raise SliceError("`column` names a column of the dataset, e.g. {column: label}.")
        default = spec["column"]
    elif kind == "length":
        edges = spec["length"]
        if (not isinstance(edges, list) or not edges or
                not all(isinstance(e, int) and not isinstance(e, bool) and e > 0 for e in edges) or
                any(a >= b for a, b in zip(edges, edges[1:]))):
            raise SliceError("`length` is a list of increasing whole numbers of characters, e.g. [50, 200].")
        if "of" in spec and (not isinstance(spec["of"], str) or not spec["of"]):
            raise SliceError("`of` names the column whose length is measured, e.g. text.")
        default = "length" if "of" not in spec else f"length of {spec['of']}"
    else:
        if "name" not in spec:
            raise SliceError("a `where` slice needs a `name`.")
        if not isinstance(spec["where"], str) or not spec["where"].strip():
            raise SliceError("`where` is an expression such as \"label == 'negative' and len(text) > 100\".")
        parse_where(spec["where"])
        default = spec["name"]
    name = spec.get("name", default)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise SliceError(f"slice name {name!r}: use letters, digits, spaces, '.', '_' or '-' (at most 60).")
    return dict(spec, name=name)


def length_buckets(edges: list[int]) -> list[str]:
    """Bucket names for edges [50, 200]: "<50", "50–200", "≥200" (a bucket holds its lower edge)."""
    names = [f"<{edges[0]}"]
    names += [f"{a}–{b}" for a, b in zip(edges, edges[1:])]
    return names + [f"≥{edges[-1]}"]


# ---------------------------------------------------------------- where expressions
_COMPARE = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
            ast.In: "in", ast.NotIn: "not in"}


def parse_where(text: str) -> ast.AST:
    """The checked parse tree of a `where` expression (SliceError when it leaves the grammar)."""
    if len(text) > MAX_EXPRESSION:
        raise SliceError(f"the `where` expression is longer than {MAX_EXPRESSION} characters.")
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        raise SliceError(f"`where` is not a valid expression ({exc.msg}).") from None
    _check_node(tree)
    return tree


def _check_node(node) -> None:
    if isinstance(node, ast.BoolOp):
        for value in node.values:
            _check_node(value)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        _check_node(node.operand)
    elif isinstance(node, ast.Compare):
        if len(node.ops) != 1:
            raise SliceError("write one comparison at a time: `a > 1 and a < 5`, not `1 < a < 5`.")
        op = type(node.ops[0])
        if op not in _COMPARE:
            raise SliceError(f"use ==, !=, <, <=, >, >=, in or not in (not {ast.unparse(node)!r}).")
        _operand_column(node.left)
        right = node.comparators[0]
        if op in (ast.In, ast.NotIn):
            if not isinstance(right, (ast.List, ast.Tuple)) or not all(_is_literal(e) for e in right.elts):
                raise SliceError(f"`in` takes a list of values, e.g. label in ['a', 'b'] ({ast.unparse(node)!r}).")
        elif not _is_literal(right):
            raise SliceError(f"compare a column with a number or a quoted text ({ast.unparse(node)!r}).")
    else:
        raise SliceError(f"{ast.unparse(node)!r} is not allowed here: write comparisons such as "
                         "label == 'negative' or len(text) > 100, joined by and / or / not.")


def _is_literal(node) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        node = node.operand
    return isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str)) \
        and not isinstance(node.value, bool)


def _literal(node):
    if isinstance(node, ast.UnaryOp):
        return -node.operand.value
    return node.value


def _operand_column(node) -> tuple[str, bool]:
    """(column name, whether it is len(column)) of a comparison's left side."""
    if isinstance(node, ast.Name):
        return node.id, False
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "len"
            and len(node.args) == 1 and not node.keywords and isinstance(node.args[0], ast.Name)):
        return node.args[0].id, True
    raise SliceError(f"the left side of a comparison is a column or len(column), not {ast.unparse(node)!r}.")


def evaluate_where(frame: pd.DataFrame, text: str) -> np.ndarray:
    """A boolean mask over `frame`'s rows for a `where` expression."""
    return _mask(frame, parse_where(text))


def _mask(frame: pd.DataFrame, node) -> np.ndarray:
    if isinstance(node, ast.BoolOp):
        masks = [_mask(frame, v) for v in node.values]
        combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        out = masks[0]
        for m in masks[1:]:
            out = combine(out, m)
        return out
    if isinstance(node, ast.UnaryOp):
        return ~_mask(frame, node.operand)
    column, is_len = _operand_column(node.left)
    if column not in frame.columns:
        raise SliceError(f"`where` names column {column!r}, which the dataset does not have; its columns are "
                         f"{', '.join(map(str, frame.columns))}.")
    series = frame[column]
    if is_len:
        series = series.fillna("").astype(str).str.len()  # a missing cell has length 0, as in `length` slices
    op = _COMPARE[type(node.ops[0])]
    right = node.comparators[0]
    if op in ("in", "not in"):
        wanted = [_literal(e) for e in right.elts]
        hit = _matches(series, wanted)
        return ~hit if op == "not in" else hit
    value = _literal(right)
    if op in ("==", "!="):
        hit = _matches(series, [value])
        return ~hit if op == "!=" else hit
    left = pd.to_numeric(series, errors="coerce") if isinstance(value, (int, float)) else series.astype(str)
    compare = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}[op]
    return compare(left, value).to_numpy(dtype=bool)  # a missing or non-numeric cell compares False


def _matches(series: pd.Series, values: list) -> np.ndarray:
    """Whether each cell equals one of `values`: numbers compare as numbers, the rest as text (a CSV's "1" and
    a YAML 1 are the same label)."""
    as_text = series.astype(str).to_numpy()
    hit = np.isin(as_text, [str(v) for v in values])
    numbers = [v for v in values if isinstance(v, (int, float))]
    if numbers:
        numeric = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)
        hit |= np.isin(numeric, np.asarray(numbers, dtype=float))
    return hit & series.notna().to_numpy()


# ---------------------------------------------------------------- values per example
def slice_values(frame: pd.DataFrame, specs: list[dict], text_column: str = "text") -> list[dict]:
    """{slice name: value} for every row of `frame` (the scored rows, with the dataset's columns), one dict a row.

    Column slices give the cell as text (MISSING for an empty one), length slices their bucket name, `where`
    slices "yes" or "no". SliceError names a missing column or a column with too many values to be a slice."""
    out = [{} for _ in range(len(frame))]
    for spec in check(specs):
        for row, value in zip(out, _values(frame, spec, text_column)):
            row[spec["name"]] = value
    return out


def _values(frame: pd.DataFrame, spec: dict, text_column: str) -> list[str]:
    columns = ", ".join(str(c) for c in frame.columns if c != "id")
    if "column" in spec:
        column = spec["column"]
        if column not in frame.columns:
            raise SliceError(f"slice {spec['name']!r}: the dataset has no column {column!r}; its columns are {columns}.")
        series = frame[column]
        distinct = series.nunique(dropna=True)
        if distinct > MAX_CATEGORIES:
            raise SliceError(f"slice {spec['name']!r}: column {column!r} has {distinct} distinct values; a slice "
                             f"column needs at most {MAX_CATEGORIES} (use `length` or `where` for text).")
        return [MISSING if pd.isna(v) or str(v) == "" else str(v) for v in series.tolist()]
    if "length" in spec:
        column = spec.get("of", text_column)
        if column not in frame.columns:
            raise SliceError(f"slice {spec['name']!r}: the dataset has no column {column!r} to measure; its columns "
                             f"are {columns}.")
        names = length_buckets(spec["length"])
        lengths = frame[column].fillna("").astype(str).str.len().to_numpy()
        return [names[i] for i in np.searchsorted(spec["length"], lengths, side="right")]
    try:
        mask = evaluate_where(frame, spec["where"])
    except SliceError as exc:
        raise SliceError(f"slice {spec['name']!r}: {exc}") from None
    return ["yes" if m else "no" for m in mask]


def per_slice(per_example_rows: list[dict], slice_name: str) -> dict[str, list[int]]:
    """{slice value: indices of the rows in it} for one slice, values in first-seen order. Rows without that
    slice (a result computed before slices were defined) are left out."""
    groups: dict[str, list[int]] = {}
    for i, row in enumerate(per_example_rows):
        value = (row.get("slice") or {}).get(slice_name)
        if value is not None:
            groups.setdefault(value, []).append(i)
    return groups
