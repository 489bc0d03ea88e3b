"""Datasets: every bad file gets its own message and leaves nothing behind; roles, cleaning, split, hash, storage."""
import hashlib
import io
import json
from pathlib import Path

import pandas as pd
import pytest

from llm_lab.access import LOCAL
from llm_lab import data, paths, store
from llm_lab.errors import DataError

BAD = Path(__file__).parent / "bad_files"
DEMO = Path(data.__file__).parent / "demo_data"

# file in tests/bad_files -> (roles to map, or None to guess; words the message must contain)
EXPECTED = {
    "empty.csv": (None, ["is empty", "header row"]),
    "whitespace_only.txt": (None, ["is empty"]),
    "binary.csv": (None, ["binary file", "UTF-8 CSV"]),
    "latin1.csv": (None, ["not UTF-8", "0xe8", "position 19", "Re-save it with UTF-8"]),
    "utf16.csv": (None, ["UTF-16", "UTF-8"]),
    "ragged_long_row.csv": (None, ["line 3 has 4 fields, the header has 2", "Quote fields"]),
    "ragged_short_row.csv": (None, ["line 3 has 1 fields, the header has 2"]),
    "not_records.json": (None, ["JSON object, not records", "JSON Lines"]),
    "list_of_strings.json": (None, ["JSON but not records"]),
    "broken.jsonl": (None, ["not valid JSON Lines", "line 1, column 36"]),
    "missing_mapped_column.csv": ({"text": "review", "label": "sentiment"},
                                  ["no column 'review' (mapped to text)", "'sentiment' (mapped to label)",
                                   "columns are: body, stars"]),
    "one_class.csv": (None, ["single class ('positive')", "at least two classes"]),
    "not_parquet.parquet": (None, ["not a Parquet file", "PAR1"]),
    "truncated.parquet": (None, ["could not be read as Parquet", "damaged or cut short"]),
    "spreadsheet.xlsx": (None, ["unsupported file type .xlsx", ".csv"]),
    "header_only.csv": (None, ["has no rows"]),
    "empty_texts.csv": (None, ["no rows are left after cleaning", "3 empty"]),
}


def _nothing_stored(name: str) -> None:
    assert store.query("SELECT name FROM datasets WHERE name=?", (name,)) == []
    folder = paths.home() / "datasets"
    leftovers = [p.name for p in folder.iterdir()] if folder.exists() else []
    assert not [p for p in leftovers if name in p], leftovers  # no folder, no .partial- folder


def test_every_bad_file_has_an_expectation():
    assert sorted(p.name for p in BAD.iterdir()) == sorted(EXPECTED)


@pytest.mark.parametrize("filename", sorted(EXPECTED))
def test_bad_file_gets_its_message_and_leaves_nothing(filename):
    roles, fragments = EXPECTED[filename]
    raw = (BAD / filename).read_bytes()
    with pytest.raises(DataError) as err:
        data.import_dataset(LOCAL, "bad-one", filename, raw, roles)
    message = str(err.value)
    for fragment in fragments:
        assert fragment in message, message
    assert "Traceback" not in message
    _nothing_stored("bad-one")


def test_file_over_the_size_limit(monkeypatch):
    raw = (DEMO / "reviews.csv").read_bytes()
    monkeypatch.setenv("LLM_LAB_MAX_UPLOAD_MB", str(len(raw) / 2 / 2**20))  # the older name of upload_max_mb
    with pytest.raises(DataError, match=r"reviews.csv is \d+\.\d KB; the limit is \d+\.\d KB.*upload_max_mb"):
        data.import_dataset(LOCAL, "too-big", "reviews.csv", raw)
    _nothing_stored("too-big")
    monkeypatch.setenv("LLM_LAB_MAX_UPLOAD_MB", "1")
    assert data.import_dataset(LOCAL, "fits", "reviews.csv", raw).rows == 143


def test_failure_while_writing_leaves_no_row_and_no_folder(monkeypatch):
    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", broken)
    with pytest.raises(OSError):
        data.import_dataset(LOCAL, "half", "reviews.csv", (DEMO / "reviews.csv").read_bytes())
    _nothing_stored("half")


def test_bad_name_and_duplicate_name():
    raw = b"text,label\na,x\nb,y\nc,x\nd,y\n"
    with pytest.raises(DataError, match="Dataset name"):
        data.import_dataset(LOCAL, "../escape", "t.csv", raw)
    data.import_dataset(LOCAL, "twice", "t.csv", raw)
    with pytest.raises(DataError, match="exists already"):
        data.import_dataset(LOCAL, "twice", "t.csv", raw)
    assert data.import_dataset(LOCAL, "twice", "t.csv", raw + b"e,x\n", replace=True).rows == 5


# ---------------------------------------------------------------- reading every format
def _formats():
    frame = pd.DataFrame({"sentence": ["good", "bad", "fine", "great"], "label": ["pos", "neg", "neu", "pos"]})
    buf = io.BytesIO()
    frame.to_parquet(buf)
    return {
        "d.csv": frame.to_csv(index=False).encode(),
        "d.tsv": frame.to_csv(index=False, sep="\t").encode(),
        "d.json": frame.to_json(orient="records").encode(),
        "d.jsonl": frame.to_json(orient="records", lines=True).encode(),
        "d.parquet": buf.getvalue(),
    }


@pytest.mark.parametrize("filename", sorted(_formats()))
def test_each_format_reads_the_same_table(filename):
    table = data.read_table(filename, _formats()[filename])
    assert list(table.columns) == ["sentence", "label"]
    assert table["sentence"].tolist() == ["good", "bad", "fine", "great"]
    assert data.guess_roles(table) == {"text": "sentence", "label": "label"}


def test_text_file_is_one_example_per_line():
    table = data.read_table("d.txt", b"first line\n\nsecond line\r\nthird\n")
    assert table["text"].tolist() == ["first line", "second line", "third"]


def test_quoted_commas_and_newlines_are_not_ragged():
    table = data.read_table("q.csv", b'text,label\n"a, b and c",x\n"two\nlines",y\n')
    assert table["text"].tolist() == ["a, b and c", "two\nlines"]


# ---------------------------------------------------------------- roles
def test_role_guessing_from_names_and_types():
    assert data.guess_roles(pd.DataFrame({"prompt": ["q"], "reference": ["a"]})) == {
        "prompt": "prompt", "reference": "reference"}
    assert data.guess_roles(pd.DataFrame({"premise": ["p"], "hypothesis": ["h"], "label": ["x"]})) == {
        "text": "premise", "text_pair": "hypothesis", "label": "label"}
    # no known names: the longest column is the text, a low-cardinality column the label
    frame = pd.DataFrame({"a": ["x", "y", "x", "y", "x", "y"], "b": [f"a long sentence number {i}" for i in range(6)]})
    assert data.guess_roles(frame) == {"text": "b", "label": "a"}
    # a unique-per-row column is not a label
    frame = pd.DataFrame({"id": [str(i) for i in range(6)], "body": [f"sentence {i} here" for i in range(6)]})
    assert data.guess_roles(frame) == {"text": "body"}


def test_no_text_role_is_refused():
    with pytest.raises(DataError, match="Map a column to 'text'"):
        data.prepare("t.csv", b"text,label\na,x\nb,y\n", {"label": "label"})


# ---------------------------------------------------------------- cleaning
def test_cleaning_counts():
    frame = pd.DataFrame({"text": ["  a  ", "a", "", "b", "   ", "long text here", "b"],
                          "label": ["x", "x", "y", "y", "x", "y", "y"]})
    out, report = data.clean(frame, data.Recipe(max_chars=4))
    assert report == {"rows_in": 7, "empty_dropped": 2, "duplicates_dropped": 2, "truncated": 1, "rows_out": 3}
    assert out["text"].tolist() == ["a", "b", "long"]
    kept, report = data.clean(frame, data.Recipe(strip=False, drop_empty=False, drop_duplicates=False))
    assert report["rows_out"] == 7 and kept["text"][0] == "  a  "
    # without stripping, "  a  " and "a" differ and the whitespace-only row is not empty
    _, report = data.clean(frame, data.Recipe(strip=False))
    assert report["empty_dropped"] == 1 and report["duplicates_dropped"] == 1


def test_demo_reviews_cleaning_report_matches_the_file():
    raw = pd.read_csv(DEMO / "reviews.csv")
    info = data.get(LOCAL, "demo-reviews")
    stripped = raw["review"].str.strip()
    assert info.report["rows_in"] == len(raw)
    assert info.report["duplicates_dropped"] == int(stripped.duplicated().sum())
    assert info.rows == stripped.nunique()


# ---------------------------------------------------------------- splitting
def _labelled(n=300, seed=1):
    import random

    rng = random.Random(seed)
    labels = ["a"] * (n // 2) + ["b"] * (n // 3) + ["c"] * (n - n // 2 - n // 3)
    rng.shuffle(labels)
    return pd.DataFrame({"text": [f"example {i}" for i in range(n)], "label": labels})


def test_split_is_deterministic_and_stratified():
    frame = _labelled()
    recipe = data.Recipe(train=0.7, validation=0.15, seed=3)
    first, second = data.split(frame, recipe), data.split(frame, recipe)
    assert first["split"].tolist() == second["split"].tolist()
    other = data.split(frame, data.Recipe(train=0.7, validation=0.15, seed=4))
    assert other["split"].tolist() != first["split"].tolist()
    sizes = first["split"].value_counts()
    assert sizes["train"] == 210 and sizes["validation"] == 45 and sizes["test"] == 45
    overall = frame["label"].value_counts(normalize=True)
    for name in ("train", "validation", "test"):
        share = first.loc[first["split"] == name, "label"].value_counts(normalize=True)
        for label in overall.index:
            assert abs(share[label] - overall[label]) < 0.03, (name, label)


@pytest.mark.parametrize("train,validation", [(0.7, 0.3), (0.85, 0.15), (0.8, 0.2), (1.0, 0.0), (0.05, 0.05)])
def test_split_fractions_that_add_up_to_one_never_fail(train, validation):
    out = data.split(_labelled(40), data.Recipe(train=train, validation=validation))
    counts = out["split"].value_counts().to_dict()
    assert sum(counts.values()) == 40
    assert abs(counts.get("train", 0) - round(40 * train)) <= 1
    assert abs(counts.get("validation", 0) - round(40 * validation)) <= 1


def test_bad_fractions_are_refused():
    with pytest.raises(DataError, match="Split fractions"):
        data.split(_labelled(20), data.Recipe(train=0.9, validation=0.3))


def test_tiny_classes_fall_back_to_a_plain_split():
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(10)], "label": ["a"] * 9 + ["b"]})
    out = data.split(frame, data.Recipe())
    assert len(out) == 10 and set(out["split"]) <= {"train", "validation", "test"}


# ---------------------------------------------------------------- storing
def test_import_stores_hash_roles_recipe_and_files():
    raw = (DEMO / "reviews.csv").read_bytes()
    recipe = data.Recipe(seed=7, max_chars=200)
    info = data.import_dataset(LOCAL, "rev", "reviews.csv", raw, {"text": "review", "label": "sentiment"}, recipe)
    assert info.content_hash == hashlib.sha256(raw).hexdigest()
    again = data.get(LOCAL, "rev")
    assert again.roles == {"text": "review", "label": "sentiment"}
    assert again.recipe == recipe.as_dict()
    assert again.label_names == ["negative", "neutral", "positive"]
    assert again.fingerprint == info.fingerprint
    files = sorted(p.name for p in data.dataset_dir("rev").iterdir())
    assert files == ["data.parquet", "meta.json", "original.csv"]
    assert (data.dataset_dir("rev") / "original.csv").read_bytes() == raw
    assert json.loads((data.dataset_dir("rev") / "meta.json").read_text())["content_hash"] == info.content_hash
    # a different recipe on the same bytes: same content hash, different fingerprint
    other = data.import_dataset(LOCAL, "rev2", "reviews.csv", raw, {"text": "review", "label": "sentiment"},
                                data.Recipe(seed=8, max_chars=200))
    assert other.content_hash == info.content_hash and other.fingerprint != info.fingerprint


def test_load_frame_columns_and_splits():
    raw = b"sentence,label\n" + b"".join(f"sentence {i},{'ab'[i % 2]}\n".encode() for i in range(50))
    info = data.import_dataset(LOCAL, "lf", "s.csv", raw)
    frame = data.load_frame(LOCAL, "lf")
    assert list(frame.columns) == ["id", "text", "label", "split"]
    assert frame["id"].tolist() == list(range(50))
    assert frame["text"][3] == "sentence 3"
    test = data.load_frame(LOCAL, "lf", "test")
    assert len(test) == info.splits["test"] == 5 and set(test["split"]) == {"test"}
    assert sorted(test["label"].value_counts().tolist()) == [2, 3]
    data.require(info, "text", "label")
    with pytest.raises(DataError, match="no column mapped to reference"):
        data.require(info, "text", "reference")


def test_delete_removes_row_and_folder():
    data.import_dataset(LOCAL, "gone", "t.csv", b"text,label\na,x\nb,y\nc,x\n")
    data.delete(LOCAL, "gone")
    _nothing_stored("gone")
    with pytest.raises(DataError, match="No dataset named 'gone'"):
        data.get(LOCAL, "gone")


def test_demo_datasets_are_there_once():
    names = [d.name for d in data.list_datasets(LOCAL)]
    assert names.count("demo-reviews") == names.count("demo-prompts") == names.count("demo-docs") == 1
    data.delete(LOCAL, "demo-docs")
    assert "demo-docs" not in [d.name for d in data.list_datasets(LOCAL)]  # a deleted demo stays deleted
    prompts = data.load_frame(LOCAL, "demo-prompts")
    assert {"prompt", "reference"} <= set(prompts.columns) and len(prompts) >= 40
    assert data.get(LOCAL, "demo-reviews").label_names == ["negative", "neutral", "positive"]


# ---------------------------------------------------------------- a save killed midway
_KILLED_SAVE = r"""
import os, signal, sys
from llm_lab import data
from llm_lab.access import LOCAL

when, real = sys.argv[1], os.replace


def replace(src, dst, *args, **kwargs):  # the moment the dataset's folder moves into place
    if ".partial-" in str(src) and os.path.basename(str(dst)).startswith("crash"):
        if when == "after-move":
            real(src, dst, *args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst, *args, **kwargs)


os.replace = replace
data.import_dataset(LOCAL, "crash", "t.csv", sys.stdin.buffer.read())
"""


def _rows_csv(n: int) -> bytes:
    return b"text,label\n" + b"".join(f"example {i},{'ab'[i % 2]}\n".encode() for i in range(n))


@pytest.mark.parametrize("when", ["at-move", "after-move"])
def test_a_save_killed_midway_lists_nothing_and_the_name_saves_again(when, monkeypatch):
    """SIGKILL at the folder's move (the old order had committed the row by then: a listed dataset without its
    folder, its name refused for good) and right after it (a folder no row names)."""
    import os
    import signal
    import subprocess
    import sys

    killed = subprocess.run([sys.executable, "-c", _KILLED_SAVE, when], input=_rows_csv(10),
                            cwd=Path(__file__).parent.parent, capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    store.reset_connections()
    assert "crash" not in [d.name for d in data.list_datasets(LOCAL)]  # nothing half-written is listed
    with pytest.raises(DataError, match="No dataset named 'crash'"):
        data.get(LOCAL, "crash")

    monkeypatch.setattr(store, "PARTIAL_GRACE_S", 0.0)  # the killed save's staging folder is old enough now
    info = data.import_dataset(LOCAL, "crash", "t.csv", _rows_csv(12))
    assert info.rows == 12 and info.location == "datasets/crash"  # its usual folder, reclaimed: no crash~2
    assert data.load_frame(LOCAL, "crash")["text"].tolist()[:2] == ["example 0", "example 1"]
    assert len(data.load_frame(LOCAL, "crash")) == 12
    assert [d.name for d in data.list_datasets(LOCAL)].count("crash") == 1
    left = sorted(p.name for p in (paths.home() / "datasets").iterdir() if "crash" in p.name)
    assert left == ["crash"], left  # no .crash.partial-* staging folder, no crash~2
    assert sorted(p.name for p in (paths.home() / "datasets" / "crash").iterdir()) == [
        "data.parquet", "meta.json", "original.csv"]
    assert os.environ["LLM_LAB_HOME"] == str(paths.home())


def test_a_row_whose_folder_is_missing_is_not_listed_and_its_name_is_free():
    """What an older version killed between its commit and its move left: a row naming a missing folder."""
    import shutil

    data.import_dataset(LOCAL, "broken", "t.csv", _rows_csv(6))
    shutil.rmtree(data.get(LOCAL, "broken").folder)
    assert "broken" not in [d.name for d in data.list_datasets(LOCAL)]
    with pytest.raises(DataError, match="'broken' was not saved completely .*Import the file again under this name"):
        data.get(LOCAL, "broken")
    info = data.import_dataset(LOCAL, "broken", "t.csv", _rows_csv(8))  # no "exists already"
    assert info.rows == 8 and len(data.load_frame(LOCAL, "broken")) == 8
    assert store.query("SELECT COUNT(*) AS n FROM datasets WHERE name='broken'")[0]["n"] == 1
    # deleting one whose files are missing works too
    shutil.rmtree(data.get(LOCAL, "broken").folder)
    data.delete(LOCAL, "broken")
    _nothing_stored("broken")


def test_a_failed_commit_leaves_no_folder_and_says_the_disk_is_full(monkeypatch):
    """The folder moved into place, then the row's COMMIT fails (a full disk): the folder goes again, the
    connection is not left inside the failed transaction, and the message says which disk is full instead of
    a raw sqlite3/OSError."""
    import sqlite3

    from llm_lab.errors import DiskFullError

    def execute(self, sql, *args):
        if sql == "COMMIT" and (paths.home() / "datasets" / "full").exists():
            raise sqlite3.OperationalError("database or disk is full")
        return sqlite3.Connection.execute(self, sql, *args)

    with monkeypatch.context() as patch:
        patch.setattr(store._Connection, "execute", execute)
        with pytest.raises(DiskFullError) as err:
            data.import_dataset(LOCAL, "full", "t.csv", _rows_csv(6))
    assert f"t.csv was not saved: the disk holding LLM_LAB_HOME ({paths.home()}) is full" in str(err.value)
    assert "Free space on it" in str(err.value)
    assert not store.connect().in_transaction
    _nothing_stored("full")
    assert data.import_dataset(LOCAL, "full", "t.csv", _rows_csv(6)).location == "datasets/full"


def test_a_home_from_before_a_demo_shipped_gets_that_demo_only():
    from llm_lab import paths

    (paths.home() / ".demos-imported").touch()  # an older version's marker: the first three demos were imported
    names = [d.name for d in data.list_datasets(LOCAL)]
    assert names == ["demo-instructions"]  # the three are not imported again (a user may have deleted them)
    assert set((paths.home() / ".demos-imported").read_text().split()) == set(data.demo_names())
    assert [d.name for d in data.list_datasets(LOCAL)] == ["demo-instructions"]  # and only once


def test_demos_are_listed_in_their_order_so_defaults_stay():
    names = [d.name for d in data.list_datasets(LOCAL)]
    assert names == ["demo-docs", "demo-prompts", "demo-reviews", "demo-instructions"]
