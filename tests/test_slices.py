"""Slices: which group every example is in (checked against pandas), a `where` grammar that runs no code,
clear errors, and the runner putting a `slice` dict on every per-example row of every task type."""
import pandas as pd
import pytest

from llm_lab.access import LOCAL
from llm_lab.bench import runner, slices, suite as suites
from tests.test_bench import REVIEWS, binary_reviews, docs  # noqa: F401 (fixtures)

FRAME = pd.DataFrame({
    "id": [1, 2, 3, 4, 5, 6],
    "text": ["a" * 49, "b" * 50, "c" * 199, "d" * 200, "e" * 5, None],
    "label": ["neg", "pos", "neg", "pos", "1", None],
    "score": [1, 2.5, "x", 4, 10, None],
})


def test_column_and_length_slices():
    got = slices.slice_values(FRAME, [{"column": "label"}, {"length": [50, 200]}])
    assert [g["label"] for g in got] == ["neg", "pos", "neg", "pos", "1", slices.MISSING]
    # a bucket holds its lower edge: 49 <50, 50 and 199 in 50–200, 200 ≥200; a missing text has length 0
    assert [g["length"] for g in got] == ["<50", "50–200", "50–200", "≥200", "<50", "<50"]
    assert slices.length_buckets([10]) == ["<10", "≥10"]


@pytest.mark.parametrize("expression", [
    "label == 'neg'", "label != 'neg'", "len(text) >= 50 and label in ['pos', 'neg']",
    "not (label == 'pos' or len(text) < 10)", "score > 2", "score <= 2.5", "label not in ['neg']",
    "label == 1",  # a YAML number and a CSV's "1" are the same label
])
def test_where_matches_pandas_query(expression):
    got = [g["s"] == "yes" for g in slices.slice_values(FRAME, [{"name": "s", "where": expression}])]
    # pandas as the independent reference, on a typed copy (our grammar compares numbers as numbers)
    typed = FRAME.assign(score=pd.to_numeric(FRAME["score"], errors="coerce"),
                         label=FRAME["label"].where(FRAME["label"] != "1", 1),
                         text=FRAME["text"].fillna(""))
    reference = typed.eval(expression.replace("len(text)", "text.str.len()"), engine="python")
    assert got == reference.fillna(False).astype(bool).tolist()


@pytest.mark.parametrize("expression, message", [
    ("__import__('os').system('true') == 0", "left side of a comparison"),
    ("label.__class__ == 'x'", "left side of a comparison"),
    ("open('x')", "is not allowed here"),
    ("label == text", "compare a column with a number or a quoted text"),
    ("1 < score < 3", "one comparison at a time"),
    ("label", "is not allowed here"),
    ("label in 'abc'", "`in` takes a list"),
    ("label ==", "not a valid expression"),
    ("[x for x in ()] == 1", "left side of a comparison"),
])
def test_where_refuses_anything_but_comparisons(expression, message):
    with pytest.raises(slices.SliceError, match=message):
        slices.parse_where(expression)


def test_bad_definitions_say_what_is_wrong():
    for specs, message in [
        ([{"column": "nope"}], "no column 'nope'; its columns are text, label, score"),
        ([{"where": "label == 'x'"}], "needs a `name`"),
        ([{"length": [200, 50]}], "increasing whole numbers"),
        ([{"column": "label"}, {"column": "label"}], "used twice"),
        ([{"column": "label", "length": [5]}], "exactly one"),
        ([{"name": "s", "where": "nope == 1"}], "names column 'nope'"),
    ]:
        with pytest.raises(slices.SliceError, match=message):
            slices.slice_values(FRAME, specs)
    many = pd.DataFrame({"id": range(60), "text": [f"t{i}" for i in range(60)]})
    with pytest.raises(slices.SliceError, match="60 distinct values"):
        slices.slice_values(many, [{"column": "text"}])


def test_per_slice_groups_row_indices():
    rows = [{"id": 1, "slice": {"label": "a"}}, {"id": 2, "slice": {"label": "b"}}, {"id": 1, "slice": {"label": "a"}},
            {"id": 3}]
    assert slices.per_slice(rows, "label") == {"a": [0, 2], "b": [1]}
    assert slices.per_slice(rows, "other") == {}


def test_suite_validates_slices_naming_the_field():
    with pytest.raises(suites.SuiteError, match=r"field `tasks.0.slices`: slice 1: `where` is not a valid"):
        suites.parse("name: s\ntasks:\n  - {name: a, type: classification, dataset: d, "
                     "slices: [{name: x, where: 'label =='}]}\n")


def test_every_per_example_row_carries_its_slices(tiny_bert, tiny_gpt2, binary_reviews, docs):
    s = suites.parse(
        f"name: t\ntasks:\n"
        f"  - name: sent\n    type: classification\n    dataset: {binary_reviews}\n"
        f"    slices: [{{column: label}}, {{length: [20]}}, {{name: long-neg, where: \"label == 'negative' and "
        f"len(text) >= 20\"}}]\n", "test")
    res = runner.run_suite(LOCAL, s, [str(tiny_bert)], use_cache=False)[0]
    assert res.status == "ok", res.error
    texts = dict(REVIEWS)
    for row in res.per_example:
        label, n = texts[row["text"]], len(row["text"])
        assert row["slice"] == {"label": label, "length": "<20" if n < 20 else "≥20",
                                "long-neg": "yes" if label == "negative" and n >= 20 else "no"}
    groups = slices.per_slice(res.per_example, "label")
    assert sorted(groups) == ["negative", "positive"] and sum(map(len, groups.values())) == len(REVIEWS)
    lm_suite = suites.parse(f"name: t\ntasks:\n  - name: ppl\n    type: language_modeling\n    dataset: {docs}\n"
                            "    slices: [{length: [30]}]\n", "test")
    (lm,) = runner.run_suite(LOCAL, lm_suite, [str(tiny_gpt2)], use_cache=False)
    assert lm.status == "ok", lm.error
    assert all(r["slice"]["length"] in ("<30", "≥30") for r in lm.per_example) and lm.per_example


def test_a_slice_on_a_missing_column_is_the_tasks_error(tiny_bert, binary_reviews):
    s = suites.parse(f"name: t\ntasks:\n  - name: sent\n    type: classification\n    dataset: {binary_reviews}\n"
                     "    slices: [{column: topic}]\n", "test")
    (res,) = runner.run_suite(LOCAL, s, [str(tiny_bert)], use_cache=False)
    assert res.status == "error" and "`slices`" in res.error and "no column 'topic'" in res.error
