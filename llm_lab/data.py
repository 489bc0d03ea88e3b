"""Datasets: parse an upload, map columns to roles, clean, split, store with a content hash.

Roles are what the rest of LLM Lab reads: `text`, `label`, `text_pair`, `prompt`,
`reference`. A stored dataset is a Parquet file with one column per mapped role plus
`id` and `split`, the original upload beside it, and a row in the store with its
content hash, its column mapping and its cleaning recipe, so any result can name
exactly what it was computed on.
"""
from __future__ import annotations
import hashlib
import io
import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path



class _Pandas:
    """pandas, imported on first use: listing datasets (the home page) should not pay ~0.5 s for it."""

    def __getattr__(self, name):
        import pandas

        return getattr(pandas, name)


pd = _Pandas()

from . import access, audit, paths, settings, store
from .access import LOCAL, SYSTEM, Actor, scope
from .errors import DataError, DiskFullError
from .text_utils import natural_key

ROLES = ("text", "label", "text_pair", "prompt", "reference")
FORMATS = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "jsonl", ".parquet": "parquet",
           ".txt": "text", ".text": "text"}
DEMO_DIR = Path(__file__).parent / "demo_data"

store.register_schema("datasets", [
    """
    CREATE TABLE datasets (
        name TEXT PRIMARY KEY, created_at REAL NOT NULL, source_file TEXT NOT NULL,
        content_hash TEXT NOT NULL, fingerprint TEXT NOT NULL, roles TEXT NOT NULL,
        recipe TEXT NOT NULL, rows INTEGER NOT NULL, splits TEXT NOT NULL, label_names TEXT,
        report TEXT, description TEXT DEFAULT '');
    """,
    access.owned_columns("datasets"),
    # names are unique per workspace, not across the server; each row says where its files are (relative to
    # LLM_LAB_HOME): rows from before stay in datasets/<name>, where they were written
    """
    CREATE TABLE datasets_by_workspace (
        name TEXT NOT NULL, created_at REAL NOT NULL, source_file TEXT NOT NULL,
        content_hash TEXT NOT NULL, fingerprint TEXT NOT NULL, roles TEXT NOT NULL,
        recipe TEXT NOT NULL, rows INTEGER NOT NULL, splits TEXT NOT NULL, label_names TEXT,
        report TEXT, description TEXT DEFAULT '',
        workspace TEXT NOT NULL DEFAULT 'default', created_by TEXT NOT NULL DEFAULT 'local', folder TEXT,
        PRIMARY KEY (workspace, name));
    INSERT INTO datasets_by_workspace (name, created_at, source_file, content_hash, fingerprint, roles, recipe, rows,
        splits, label_names, report, description, workspace, created_by, folder)
        SELECT name, created_at, source_file, content_hash, fingerprint, roles, recipe, rows, splits, label_names,
            report, description, workspace, created_by, 'datasets/' || name FROM datasets;
    DROP TABLE datasets;
    ALTER TABLE datasets_by_workspace RENAME TO datasets;
    CREATE INDEX datasets_workspace ON datasets(workspace)
    """,
])


MAX_JSON_DEPTH = 32  # records are 2 levels deep (the list, an object); nested values add a few
# A dataset uses a few columns (its roles: text, label, text_pair, prompt, reference, and some to keep); a frame
# of a million columns costs gigabytes in pandas whatever it holds (a 15 MB JSON object of 1M keys: 3.3 GB)
MAX_COLUMNS = 1_000
# What one text cell costs once read, beyond its characters: the Python string object (about 50 bytes) and the
# frame's pointer to it. A 30 MB CSV of 6M short distinct cells took 470 MB: counted against upload_max_mb.
CELL_BYTES = 64


def max_upload_bytes() -> int:
    """The setting upload_max_mb in bytes: the largest upload, and the most data one may decode to.
    The older variable LLM_LAB_MAX_UPLOAD_MB still works where LLM_LAB_UPLOAD_MAX_MB is not set."""
    legacy = os.environ.get("LLM_LAB_MAX_UPLOAD_MB")
    if legacy is not None and os.environ.get("LLM_LAB_UPLOAD_MAX_MB") is None:
        return int(float(settings.parse("upload_max_mb", legacy)) * 2**20)
    return int(float(settings.get("upload_max_mb")) * 2**20)


def max_upload_rows() -> int:
    """The setting upload_max_rows: the most rows an upload may hold, counted while it is read."""
    return int(settings.get("upload_max_rows"))


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 2**10:.1f} KB"


def _too_many_rows(filename: str, rows: int | None, limit: int) -> DataError:
    count = f"{rows:,} rows" if rows is not None else f"more than {limit:,} rows"
    return DataError(f"{filename} has {count}; an upload may hold at most {limit:,} (setting upload_max_rows). "
                     f"Upload a sample of at most {limit:,} rows, or ask an admin to raise upload_max_rows.")


def _too_much_data(filename: str, size: int, limit: int, how: str, at_least: bool = False) -> DataError:
    return DataError(f"{filename} holds {'at least ' if at_least else ''}{_size(size)} of data {how}; the limit is "
                     f"{_size(limit)} (setting upload_max_mb). Upload a sample, or ask an admin to raise upload_max_mb.")


def _file_too_large(filename: str, size: int, limit: int) -> DataError:
    return DataError(f"{filename} is {_size(size)}; the limit is {_size(limit)} (setting upload_max_mb). "
                     "Upload a sample, or ask an admin to raise upload_max_mb.")


# ---------------------------------------------------------------- reading
def read_file(path: str | Path) -> bytes:
    """The bytes of a file to import (`data import`), refused by its size on disk before a byte is read: a 3 GB
    file is not read into memory only to be refused."""
    path = Path(path)
    size, limit = path.stat().st_size, max_upload_bytes()
    if size > limit:
        raise _file_too_large(path.name, size, limit)
    return path.read_bytes()


def read_table(filename: str, data: bytes) -> pd.DataFrame:
    """Parse an uploaded file into a DataFrame, or raise DataError saying what is wrong."""
    suffix = Path(filename).suffix.lower()
    if suffix not in FORMATS:
        raise DataError(f"{filename}: unsupported file type {suffix or '(none)'}. "
                        f"Use one of {', '.join(sorted(FORMATS))}.")
    fmt = FORMATS[suffix]
    max_bytes, max_rows = max_upload_bytes(), max_upload_rows()
    if len(data) > max_bytes:
        raise _file_too_large(filename, len(data), max_bytes)
    if not data.strip():
        raise DataError(f"{filename} is empty. Upload a file with a header row and at least one example.")
    if fmt == "parquet":
        return _check_rows(filename, _read_parquet(filename, data, max_rows, max_bytes), max_rows)
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(f"{filename} is UTF-16 text; LLM Lab reads UTF-8. Re-save it with UTF-8 encoding "
                        "(in Excel: 'CSV UTF-8').")
    if b"\x00" in data[:8192]:
        raise DataError(f"{filename} looks like a binary file, not {fmt.upper()} text. "
                        "Export it as UTF-8 CSV, JSON Lines or Parquet.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{filename} is not UTF-8 text (byte 0x{data[exc.start]:02x} at position {exc.start}). "
                        "Re-save it with UTF-8 encoding (in Excel: 'CSV UTF-8').") from exc
    reader = {"csv": _read_delimited, "tsv": _read_delimited, "json": _read_json,
              "jsonl": _read_json, "text": _read_lines}[fmt]
    frame = _check_rows(filename, reader(filename, text, fmt, max_rows), max_rows)
    if frame.empty or len(frame.columns) == 0:
        raise DataError(f"{filename} has no rows. It needs a header row and at least one example.")
    frame.columns = [str(c).strip() for c in frame.columns]
    if len(set(frame.columns)) != len(frame.columns):
        raise DataError(f"{filename} has repeated column names: {list(frame.columns)}. Rename them.")
    return frame


def _check_shape(filename: str, rows: int, columns: int, text_columns: int | None = None,
                 exact: bool = True) -> None:
    """Refuse a table wider than MAX_COLUMNS, or whose text cells would cost more than upload_max_mb once read
    (CELL_BYTES each), before the frame is built. `exact` False: `rows` is an upper bound (lines of a file)."""
    if columns > MAX_COLUMNS:
        raise DataError(f"{filename} has {columns:,} columns; LLM Lab reads at most {MAX_COLUMNS:,} (a dataset uses "
                        "a few: text, label, ...). Keep the columns you need and upload again.")
    cells = rows * (columns if text_columns is None else text_columns)
    if cells * CELL_BYTES > max_upload_bytes():
        raise _too_much_data(filename, cells * CELL_BYTES, max_upload_bytes(),
                             f"once read ({cells:,} cells: {rows:,} rows x {columns:,} columns, about {CELL_BYTES} "
                             "bytes a cell)", at_least=not exact)


def _check_delimited_shape(filename: str, text: str, sep: str, max_rows: int) -> None:
    """Rows x columns of a CSV/TSV before pandas reads it: first from its lines and its header's separators
    (upper bounds, nearly free); only when those are over a limit, exactly, with the csv module one row at a time
    (a quoted field may hold separators and line breaks)."""
    import csv

    end = text.find("\n")
    header = text if end < 0 else text[:end]
    columns = header.count(sep) + 1
    lines = min(text.count("\n") + 1, max_rows + 1)
    if columns <= MAX_COLUMNS and lines * columns * CELL_BYTES <= max_upload_bytes():
        return
    if len(header) > 2**20:  # a megabyte of column names is no header: not worth splitting to count them
        raise DataError(f"{filename}: its first line, the header, is {_size(len(header))} long. The header names the "
                        f"columns (at most {MAX_COLUMNS:,}); check the file, or that it is {sep!r}-separated.")
    reader = csv.reader(_physical_lines(text), delimiter=sep)
    columns = len(next(reader, []))
    rows = 0
    for fields in reader:
        rows += bool(fields)
        if rows > max_rows:
            break
    _check_shape(filename, rows, columns)


def _physical_lines(text: str):
    """The lines of `text`, each with its line break, one at a time: what the csv module reads (a quoted field
    may span lines) without io.StringIO, which holds 4 bytes per character (120 MB for a 30 MB file)."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end + 1
        yield text[start:end]
        start = end


def _check_rows(filename: str, frame: pd.DataFrame, max_rows: int) -> pd.DataFrame:
    if len(frame) > max_rows:  # each reader stops soon past the cap; this is the exact count, after any reader
        raise _too_many_rows(filename, None, max_rows)
    return frame


def _read_delimited(filename: str, text: str, fmt: str, max_rows: int) -> pd.DataFrame:
    import warnings

    _check_delimited_shape(filename, text, "\t" if fmt == "tsv" else ",", max_rows)
    try:
        with warnings.catch_warnings():  # pandas only warns when the first data row is the ragged one
            warnings.simplefilter("error", pd.errors.ParserWarning)
            # nrows: the parser stops one row past the cap instead of reading a file of any length
            # bytes, not io.StringIO(text), which holds 4 bytes a character: a 68 MB file of 1M rows read with
            # 550 MB more than before it, 360 MB from bytes
            frame = pd.read_csv(io.BytesIO(text.encode("utf-8")), encoding="utf-8", sep="\t" if fmt == "tsv" else ",",
                                dtype=object, index_col=False, keep_default_na=False, on_bad_lines="error",
                                skip_blank_lines=True, nrows=max_rows + 1)
    except (pd.errors.ParserError, pd.errors.ParserWarning) as exc:
        match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        where = (f": line {match.group(2)} has {match.group(3)} fields, the header has {match.group(1)}"
                 if match else "")
        raise DataError(f"{filename}: a row has a different number of fields than the header{where}. "
                        "Quote fields that contain the separator, or fix that row.") from exc
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{filename} has no header row and no data.") from exc
    if len(frame) > max_rows:
        raise _too_many_rows(filename, None, max_rows)
    _check_short_rows(filename, text, fmt, frame)
    return frame


def _check_short_rows(filename: str, text: str, fmt: str, frame: pd.DataFrame) -> None:
    """pandas fills a row with too FEW fields with "" silently; the csv module counts fields per row."""
    import csv

    if frame.empty or not (frame.iloc[:, -1] == "").any():
        return
    reader = csv.reader(_physical_lines(text), delimiter="\t" if fmt == "tsv" else ",")
    width = None
    for fields in reader:
        if not fields:
            continue
        if width is None:
            width = len(fields)
        elif len(fields) < width:
            raise DataError(f"{filename}: a row has a different number of fields than the header: line "
                            f"{reader.line_num} has {len(fields)} fields, the header has {width}. "
                            "Quote fields that contain the separator, or fix that row.")


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
# what str.splitlines splits on, so lines are found one at a time instead of all at once
_LINE = re.compile("[^\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]+")


def _json_shape(text: str) -> tuple[int, int, float]:
    """(deepest nesting, rows, keys per record) of JSON text, from a scan of its brackets, commas and colons
    outside strings, before json.loads builds anything. Rows: the items of a top-level list, or the mean length
    of the columns of an object of lists (an estimate; the frame's length is checked exactly afterwards). Keys
    per record: the mean over the records (objects in a top-level list, or top-level objects as in JSON Lines),
    or the keys of a top-level object: a record of a million keys is refused before json.loads builds it."""
    import numpy as np

    marks = re.sub(r"[^\[\]{},:]+", "", _JSON_STRING.sub("", text))
    codes = np.frombuffer(marks.encode("ascii"), dtype=np.uint8)
    if not len(codes):
        return 0, 0, 0.0
    step = np.isin(codes, (ord("["), ord("{"))).astype(np.int64) - np.isin(codes, (ord("]"), ord("}")))
    depth = np.cumsum(step)  # a bracket's own depth counts its opening; a comma sits at its container's depth
    commas, colons = codes == ord(","), codes == ord(":")
    top = int((commas & (depth == 1)).sum()) + 1
    rows = top if codes[0] == ord("[") else -(-(int((commas & (depth == 2)).sum()) + top) // top)
    record_depth = 2 if codes[0] == ord("[") else 1
    records = int(((codes == ord("{")) & (depth == record_depth)).sum())
    keys = int((colons & (depth == record_depth)).sum()) / max(records, 1)
    return int(depth.max()), rows, keys


def _read_json(filename: str, text: str, fmt: str, max_rows: int) -> pd.DataFrame:
    lines = fmt == "jsonl" or (not text.lstrip().startswith(("[", "{")) or _looks_like_jsonl(text))
    depth, rows, keys = _json_shape(text)
    if depth > MAX_JSON_DEPTH:
        raise _too_deep(filename, depth)
    if keys > MAX_COLUMNS:  # the mean: some record has more keys than that, so the frame more columns
        raise DataError(f"{filename} has records of more than {MAX_COLUMNS:,} fields ({keys:,.0f} on average); "
                        f"LLM Lab reads at most {MAX_COLUMNS:,} columns (a dataset uses a few: text, label, ...). "
                        "Keep the fields you need and upload again.")
    if not lines and rows > max_rows:
        raise _too_many_rows(filename, rows, max_rows)
    try:
        if lines:
            records = []
            for match in _LINE.finditer(text):
                if match.group().strip():
                    if len(records) >= max_rows:
                        raise _too_many_rows(filename, None, max_rows)
                    records.append(json.loads(match.group()))
        else:
            records = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{filename} is not valid JSON{' Lines' if lines else ''}: {exc.msg} "
                        f"at line {exc.lineno}, column {exc.colno}.") from exc
    except RecursionError as exc:  # nesting the scan above did not see: never a RecursionError for the user
        raise _too_deep(filename, None) from exc
    _check_records_shape(filename, records)
    try:
        return _records_frame(filename, records)
    except RecursionError as exc:
        raise _too_deep(filename, None) from exc


def _check_records_shape(filename: str, records) -> None:
    """Rows x columns of parsed JSON records before pandas makes a frame of them: a frame has a column for every
    key any record has, and a cell for every row in each (a small file of records with distinct keys is a huge
    frame)."""
    if isinstance(records, dict):
        first = next(iter(records.values()), [])
        _check_shape(filename, len(first) if isinstance(first, list) else 1, len(records))
    elif isinstance(records, list):
        keys: set = set()
        for record in records:
            if isinstance(record, dict):
                keys.update(record)
                if len(keys) > MAX_COLUMNS:
                    break
        _check_shape(filename, len(records), len(keys))


def _records_frame(filename: str, records) -> pd.DataFrame:
    if isinstance(records, dict):
        if all(isinstance(v, list) for v in records.values()) and len({len(v) for v in records.values()}) == 1:
            return pd.DataFrame(records).astype(object)
        raise DataError(f"{filename} holds a JSON object, not records. Give a list of objects "
                        '([{"text": ..., "label": ...}, ...]) or one object per line (JSON Lines).')
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise DataError(f"{filename} is JSON but not records: every example must be an object such as "
                        '{"text": "...", "label": "..."}.')
    return pd.DataFrame.from_records(records).astype(object)


def _too_deep(filename: str, depth: int | None) -> DataError:
    return DataError(f"{filename} nests JSON {f'{depth} levels' if depth else 'too'} deep; LLM Lab reads flat "
                     f"records (at most {MAX_JSON_DEPTH} levels). Flatten it: one object per example, such as "
                     '{"text": "...", "label": "..."}.')


def _looks_like_jsonl(text: str) -> bool:
    lines = [l for l in text.splitlines() if l.strip()]
    return len(lines) > 1 and all(l.strip().startswith("{") and l.strip().endswith("}") for l in lines[:5])


def _read_lines(filename: str, text: str, fmt: str, max_rows: int) -> pd.DataFrame:
    lines = []
    for match in _LINE.finditer(text):
        if match.group().strip():
            if len(lines) >= max_rows:
                raise _too_many_rows(filename, None, max_rows)
            lines.append(match.group())
    return pd.DataFrame({"text": lines}, dtype=object)


# bytes per value once decoded, by Parquet physical type; a byte array counts its 4-byte offset (its text is
# counted as it is decoded, below)
_DECODED_WIDTH = {"BOOLEAN": 1, "INT32": 4, "INT64": 8, "INT96": 12, "FLOAT": 4, "DOUBLE": 8, "BYTE_ARRAY": 4}


def _decoded_floor(meta) -> int:
    """The least a Parquet file decodes to, from its metadata alone: every column chunk's value count times the
    width of one value. A list column is counted by its values (its chunk's num_values counts every element),
    not by its offsets: a 15 KB file of repeated list elements that decodes to 1.8 GB is caught here."""
    total = 0
    for i in range(meta.num_row_groups):
        group = meta.row_group(i)
        for j in range(group.num_columns):
            chunk = group.column(j)
            width = (meta.schema.column(j).length if chunk.physical_type == "FIXED_LEN_BYTE_ARRAY"
                     else _DECODED_WIDTH.get(chunk.physical_type, 8))
            total += chunk.num_values * max(int(width or 0), 1)
            if chunk.physical_type == "BYTE_ARRAY":
                total += _text_floor(chunk)
    return total


def _text_floor(chunk) -> int:
    """The least text a byte-array column chunk holds: every value lies between the chunk's min and max, so it
    starts with their common prefix (a million copies of one long string: min == max, the whole string each)."""
    stats = chunk.statistics if chunk.is_stats_set else None
    if stats is None or not stats.has_min_max or stats.min is None or stats.max is None:
        return 0
    low, high = (v.encode() if isinstance(v, str) else bytes(v) for v in (stats.min, stats.max))
    prefix = len(os.path.commonprefix([low, high]))
    return prefix * max(chunk.num_values - (stats.null_count or 0), 0)


def _refuse_nested(filename: str, schema) -> None:
    """A column of lists, structs or maps plays no role (every role is one value per cell): refuse the file,
    naming the columns, instead of decoding them (they can be huge) or dropping them unsaid."""
    import pyarrow as pa

    nested = [f"{field.name} ({field.type})" for field in schema if pa.types.is_nested(field.type)]
    if nested:
        raise DataError(f"{filename} has columns that hold lists or records, not one value per cell: "
                        f"{', '.join(nested)}. LLM Lab reads one value per cell; drop those columns or turn them "
                        "into text (e.g. join a list into one string) and upload again.")


def _textual(kind) -> bool:
    """Text or bytes of any Arrow layout (offsets, large offsets, views: a file's stored Arrow schema picks)."""
    import pyarrow as pa

    return (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind)
            or pa.types.is_large_binary(kind) or pa.types.is_string_view(kind) or pa.types.is_binary_view(kind))


def _object_columns(schema) -> list[str]:
    """The columns whose cells become Python objects in the frame: text and bytes, dictionary-encoded or not
    (a file written from pandas categoricals stores its text as dictionaries). All of them are read as
    dictionaries: a view column (string_view) read as it is holds every value at once, so 20,000 copies of one
    100 KB text in a 440-byte file took 926 MB before the first count."""
    import pyarrow as pa

    return [f.name for f in schema
            if _textual(f.type) or (pa.types.is_dictionary(f.type) and _textual(f.type.value_type))]


def check_parquet_size(filename: str, data: bytes) -> None:
    """The checks read_table makes from a Parquet file's metadata alone (rows, uncompressed size, decoded size
    with list columns counted by their values), for a file another reader decodes: an lm-eval task's data file,
    whose list columns (choices) are legitimate there. Raises DataError."""
    try:
        _parquet_metadata(filename, data, max_upload_rows(), max_upload_bytes())
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{filename} could not be read as Parquet; it may be damaged or cut short, "
                        f"so export it again. ({exc})") from exc


def _parquet_metadata(filename: str, data: bytes, max_rows: int, max_bytes: int):
    """The file's metadata, once its rows, its uncompressed size and the least it decodes to are within limits."""
    import pyarrow.parquet as pq

    if not data.startswith(b"PAR1"):
        raise DataError(f"{filename} is not a Parquet file (it lacks the PAR1 header). "
                        "Check the file type, or upload CSV/JSON instead.")
    meta = pq.ParquetFile(io.BytesIO(data)).metadata
    if meta.num_rows > max_rows:
        raise _too_many_rows(filename, meta.num_rows, max_rows)
    stored = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if stored > max_bytes:
        raise _too_much_data(filename, stored, max_bytes, "uncompressed")
    floor = _decoded_floor(meta)
    if floor > max_bytes:
        raise _too_much_data(filename, floor, max_bytes, "once decoded", at_least=True)
    return meta


def _read_parquet(filename: str, data: bytes, max_rows: int, max_bytes: int) -> pd.DataFrame:
    """Parquet compresses well: a few MB can hold a hundred million rows. The row count and the data's
    uncompressed size come from the file's metadata, checked before anything is decoded; then it is decoded
    a batch at a time, text kept dictionary-encoded (each distinct value once), counting what it decodes to."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        meta = _parquet_metadata(filename, data, max_rows, max_bytes)
        schema = meta.schema.to_arrow_schema()
        _refuse_nested(filename, schema)
        text = _object_columns(schema)
        _check_shape(filename, meta.num_rows, len(schema), text_columns=len(text))  # text cells become objects
        file = pq.ParquetFile(io.BytesIO(data), read_dictionary=text)
        batches, decoded, pool = [], 0, pa.default_memory_pool()
        for batch in file.iter_batches(batch_size=8192):
            columns = []
            for column in batch.columns:
                if pa.types.is_dictionary(column.type) and _textual(column.type.value_type):
                    lengths = pc.binary_length(column.dictionary)
                    decoded += (pc.sum(pc.take(lengths, column.indices)).as_py() or 0) + 4 * len(column)
                    if decoded > max_bytes:  # counted before the text is materialized
                        raise _too_much_data(filename, decoded, max_bytes, "once decoded", at_least=True)
                    # plain text now, within the cap: the reader hands each batch a dictionary of every value
                    # seen so far, so keeping the batches dictionary-encoded costs O(rows²) (20 MB of distinct
                    # text held 470 MB); the decoded batch keeps only its own values
                    column = column.dictionary_decode()
                else:
                    decoded += column.nbytes
                columns.append(column)
            if decoded > max_bytes:
                raise _too_much_data(filename, decoded, max_bytes, "once decoded", at_least=True)
            batches.append(pa.RecordBatch.from_arrays(columns, names=batch.schema.names))
            del batch
            pool.release_unused()  # the previous batch's dictionary, freed, is not kept by the allocator
        table = pa.Table.from_batches(batches) if batches else file.schema_arrow.empty_table()
        del batches
        frame = table.to_pandas()
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{filename} could not be read as Parquet; it may be damaged or cut short, "
                        f"so export it again. ({exc})") from exc
    for column in frame.columns:  # text as plain Python values, as from CSV
        if isinstance(frame[column].dtype, pd.CategoricalDtype) or str(frame[column].dtype) in ("str", "string"):
            frame[column] = frame[column].astype(object)
    return frame


# ---------------------------------------------------------------- roles
_ROLE_NAMES = {
    "text": ("text", "sentence", "sentence1", "review", "content", "document", "body", "comment", "premise", "utterance"),
    "label": ("label", "labels", "class", "category", "sentiment", "target", "y", "gold", "rating"),
    "text_pair": ("text_pair", "sentence2", "hypothesis", "question2", "pair"),
    "prompt": ("prompt", "question", "instruction", "query", "input", "source"),
    "reference": ("reference", "answer", "output", "completion", "response", "expected", "ground_truth"),
}


def guess_roles(frame: pd.DataFrame) -> dict[str, str]:
    """Guess which column plays which role, from names first, then from types."""
    given = split_column(frame)
    lower = {c.lower().strip(): c for c in frame.columns if c != given}  # a split column plays no role
    roles: dict[str, str] = {}
    for role, names in _ROLE_NAMES.items():
        for n in names:
            if n in lower and lower[n] not in roles.values():
                roles[role] = lower[n]
                break
    free = [c for c in frame.columns if c not in roles.values() and c != given]
    if "text" not in roles and "prompt" not in roles and free:
        lengths = {c: frame[c].astype(str).str.len().mean() for c in free}
        roles["text"] = max(lengths, key=lengths.get)
        free.remove(roles["text"])
    if "label" not in roles and "text" in roles:
        for c in free:
            n = frame[c].nunique()
            if 2 <= n <= min(50, max(2, len(frame) // 2)):
                roles["label"] = c
                break
    return roles


def apply_roles(frame: pd.DataFrame, roles: dict[str, str], filename: str = "the file") -> pd.DataFrame:
    roles = {r: c for r, c in roles.items() if c}
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise DataError(f"Unknown role(s) {sorted(unknown)}; roles are {', '.join(ROLES)}.")
    missing = {r: c for r, c in roles.items() if c not in frame.columns}
    if missing:
        raise DataError(f"{filename} has no column " + ", ".join(f"{c!r} (mapped to {r})" for r, c in missing.items())
                        + f". Its columns are: {', '.join(map(str, frame.columns))}.")
    if "text" not in roles and "prompt" not in roles:
        raise DataError("Map a column to 'text' (or to 'prompt' for generation data): "
                        "LLM Lab needs to know which column holds the text.")
    out = pd.DataFrame({role: frame[col].values for role, col in roles.items()})
    given = split_column(frame)
    if given is not None and given not in roles.values():  # a column mapped to a role is that role's, not a split
        out["split"] = given_splits(frame[given], given, filename).values
    return out


SPLITS = ("train", "validation", "test")


def split_column(frame: pd.DataFrame) -> str | None:
    """The file's column named `split` (any case), which says each row's split instead of a random draw."""
    return next((c for c in frame.columns if str(c).strip().lower() == "split"), None)


def given_splits(values: pd.Series, column: str, filename: str = "the file") -> pd.Series:
    """A `split` column's values, lower-cased, or a DataError when one is not train/validation/test.

    Refused rather than ignored: a column named `split` says the author chose the splits, and a random split
    in its place would put their test rows into training without a word."""
    text = values.map(lambda v: "" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v).strip().lower())
    odd = text[~text.isin(SPLITS)]
    if len(odd):
        shown = ", ".join(repr(v) if v else "(empty)" for v in sorted(set(odd))[:5])
        first = int(odd.index[0]) + 1
        raise DataError(f"{filename}: its column {column!r} gives each row's split, but {len(odd)} row(s) have "
                        f"other values ({shown}; the first is data row {first}). Use only train, validation and "
                        "test there, or rename the column to let LLM Lab draw a random split.")
    return text


# ---------------------------------------------------------------- cleaning and splitting
@dataclass
class Recipe:
    strip: bool = True
    drop_empty: bool = True
    drop_duplicates: bool = True
    max_chars: int | None = None
    train: float = 0.8
    validation: float = 0.1
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def _text_cols(frame):
    return [c for c in ("text", "text_pair", "prompt", "reference") if c in frame.columns]


def clean(frame: pd.DataFrame, recipe: Recipe) -> tuple[pd.DataFrame, dict]:
    frame = frame.copy()
    report = {"rows_in": len(frame), "empty_dropped": 0, "duplicates_dropped": 0, "truncated": 0}
    cols = _text_cols(frame)
    for c in cols + (["label"] if "label" in frame.columns else []):
        frame[c] = frame[c].map(lambda v: "" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v))
        if recipe.strip:
            frame[c] = frame[c].str.strip()
    if recipe.drop_empty:
        empty = (frame[cols] == "").all(axis=1) if cols else pd.Series(False, index=frame.index)
        if "label" in frame.columns:
            empty |= frame["label"] == ""
        report["empty_dropped"] = int(empty.sum())
        frame = frame[~empty]
    if recipe.drop_duplicates:
        dup = frame.duplicated(subset=cols or None)
        report["duplicates_dropped"] = int(dup.sum())
        frame = frame[~dup]
    if recipe.max_chars:
        for c in cols:
            long = frame[c].str.len() > recipe.max_chars
            report["truncated"] += int(long.sum())
            frame[c] = frame[c].str.slice(0, recipe.max_chars)
    report["rows_out"] = len(frame)
    return frame.reset_index(drop=True), report


def split(frame: pd.DataFrame, recipe: Recipe) -> pd.DataFrame:
    """Deterministic train/validation/test split, stratified by label when every class allows it; a `split`
    column the file gave (`apply_roles`) is kept as it is, and the recipe's fractions are not used."""
    if "split" in frame.columns:
        return frame.copy()
    from sklearn.model_selection import train_test_split  # ~1 s to import: only for a split drawn here

    if not 0 < recipe.train <= 1 or recipe.validation < 0 or recipe.train + recipe.validation > 1:
        raise DataError("Split fractions must satisfy 0 < train ≤ 1 and train + validation ≤ 1.")
    frame = frame.copy()
    frame["split"] = "train"
    rest = 1 - recipe.train
    if rest <= 0 or len(frame) < 3:
        return frame
    labels = frame["label"] if "label" in frame.columns else None
    stratify = labels if labels is not None and labels.value_counts().min() >= 2 else None
    idx_train, idx_rest = _split_indices(frame.index, rest, recipe.seed, stratify, train_test_split)
    frame.loc[idx_rest, "split"] = "test"
    if recipe.validation > 0 and len(idx_rest) >= 2:
        val_share = recipe.validation / rest
        if val_share >= 1 - 1e-9:
            frame.loc[idx_rest, "split"] = "validation"
        else:
            sub = stratify.loc[idx_rest] if stratify is not None else None
            if sub is not None and sub.value_counts().min() < 2:
                sub = None
            _, idx_val = _split_indices(idx_rest, val_share, recipe.seed, sub, train_test_split)
            frame.loc[idx_val, "split"] = "validation"
    return frame


def _split_indices(index, share, seed, stratify, train_test_split):
    index = list(index)  # a whole count, so float error (0.3/0.30000000000000004) never empties a side
    n_test = min(len(index) - 1, max(1, round(share * len(index))))
    try:
        return train_test_split(index, test_size=n_test, random_state=seed, stratify=stratify)
    except ValueError:  # too few rows per class for stratification at this size
        return train_test_split(index, test_size=n_test, random_state=seed)


# ---------------------------------------------------------------- storing
@dataclass
class DatasetInfo:
    name: str
    created_at: float
    source_file: str
    content_hash: str
    fingerprint: str
    roles: dict
    recipe: dict
    rows: int
    splits: dict
    label_names: list | None
    report: dict = field(default_factory=dict)
    description: str = ""
    workspace: str = access.DEFAULT_WORKSPACE
    location: str = ""      # its folder, relative to LLM_LAB_HOME (stored in the row)

    @property
    def folder(self) -> Path:
        return paths.home() / self.location if self.location else dataset_dir(self.name, self.workspace)


def dataset_dir(name: str, workspace: str = access.DEFAULT_WORKSPACE) -> Path:
    """Where a new dataset `name` of `workspace` is written: <home>/datasets/<name> in the default workspace,
    <home>/datasets/@<workspace>/<name> in another (paths.workspace_dir). A stored one's is `DatasetInfo.folder`."""
    return paths.workspace_dir("datasets", workspace) / name


def _free_folder(actor: Actor, name: str, keep: Path | None = None) -> Path:
    """The folder a dataset being saved moves into: its usual place, else `NAME~2`, `NAME~3`, … Call it inside
    the transaction that records the row (so no other save is between its rename and its commit).

    A folder that some row names (a dataset of another workspace stored before names were per workspace, or
    `keep`, the folder of the dataset being replaced) is never touched. A folder there that no row names is
    what a save killed between its rename and its commit, or a delete killed before its files were gone, left
    behind: it is removed and the place reused."""
    taken = {r["folder"] for r in scope(SYSTEM).select("datasets", "folder IS NOT NULL", columns="folder")}
    n = 1
    folder = dataset_dir(name, actor.workspace)
    while _relative(folder) in taken or (keep is not None and folder == keep):
        n += 1
        folder = dataset_dir(f"{name}~{n}", actor.workspace)
    if folder.is_symlink() or folder.is_file():
        folder.unlink()
    elif folder.exists():
        shutil.rmtree(folder)
    return folder


def _folder_of(row: dict) -> Path:
    return paths.home() / row["folder"] if row.get("folder") else dataset_dir(row["name"], row["workspace"])


def _complete(row: dict) -> bool:
    """Whether a row's files are there. A save moves its folder into place before it records the row, so
    only a row written by an older LLM Lab killed midway (or files deleted by hand) lacks them."""
    return (_folder_of(row) / "data.parquet").is_file()


def _relative(folder: Path) -> str:
    return Path(folder).relative_to(paths.home()).as_posix()


def check_name(name: str) -> str:
    name = (name or "").strip()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}", name):
        raise DataError(f"Dataset name {name!r}: use 1-80 letters, digits, '.', '_' or '-', starting with a letter or digit.")
    return name


def prepare(filename: str, data: bytes, roles: dict | None = None, recipe: Recipe | None = None,
            raw: pd.DataFrame | None = None) -> tuple[pd.DataFrame, dict, dict]:
    """Parse, map, clean and split without storing: what the page previews. Returns (frame, roles, report).
    `raw` is `read_table(filename, data)` when the caller has it already (the page keeps it per upload)."""
    recipe = recipe or Recipe()
    raw = read_table(filename, data) if raw is None else raw
    roles = {r: c for r, c in (roles or guess_roles(raw)).items() if c}
    frame = apply_roles(raw, roles, filename)
    frame, report = clean(frame, recipe)
    if frame.empty:
        raise DataError(f"{filename}: no rows are left after cleaning ({report['empty_dropped']} empty, "
                        f"{report['duplicates_dropped']} duplicates). Check the column mapping.")
    if "label" in frame.columns and frame["label"].nunique() < 2:
        only = frame["label"].iloc[0]
        raise DataError(f"The label column {roles['label']!r} has a single class ({only!r}). A classifier needs "
                        "at least two classes: map another column to 'label', or leave 'label' unmapped.")
    given = split_column(raw)
    if given is not None and given not in roles.values():
        report["split_column"] = given  # the splits are the file's: the recipe's fractions were not used
    frame = split(frame, recipe)
    frame.insert(0, "id", range(len(frame)))
    return frame, roles, report


def import_dataset(actor: Actor, name: str, filename: str, data: bytes, roles: dict | None = None,
                   recipe: Recipe | None = None, description: str = "", replace: bool = False,
                   raw: pd.DataFrame | None = None) -> DatasetInfo:
    """Store a dataset whole, or not at all, in the actor's workspace (audited as dataset.upload).
    `raw` is `read_table(filename, data)` when the caller has it already. A full disk is a DiskFullError
    saying where and what to do."""
    try:
        info = _import(actor, name, filename, data, roles, recipe, description, replace, raw)
        audit.record(actor, "dataset.upload", info.name, {"file": info.source_file, "bytes": len(data),
                                                          "rows": info.rows, "content_hash": info.content_hash,
                                                          "replaced": bool(replace)})
    except (OSError, *store.DatabaseError) as exc:
        if isinstance(exc, DiskFullError) or not store.is_storage_full(exc):
            raise
        raise DiskFullError(store.storage_full_message(f"{Path(filename).name} was not saved")) from exc
    return info


def _exists_already(name: str) -> DataError:
    return DataError(f"A dataset named {name!r} exists already. Choose another name or delete it first.")


def _import(actor: Actor, name: str, filename: str, data: bytes, roles: dict | None, recipe: Recipe | None,
            description: str, replace: bool, raw: pd.DataFrame | None) -> DatasetInfo:
    """The save, in an order a kill at any point leaves consistent: the files are written into a staging
    folder (`.NAME.partial-*`, swept by a later save once no process holds it); then, inside one transaction,
    the folder moves into place and the row is recorded; a replaced dataset's old folder is removed after the
    commit. Killed before the commit, the row is not there and the moved folder is reclaimed by the next save
    of the name; after it, the dataset is complete. A row whose folder is missing (written by an older version
    killed midway) is listed nowhere and its name can be saved again."""
    actor.require("write", "upload datasets")
    name = check_name(name)
    recipe = recipe or Recipe()
    existing = _own_row(actor, name)
    if existing and _complete(existing) and not replace:
        raise _exists_already(name)
    frame, roles, report = prepare(filename, data, roles, recipe, raw)
    content_hash = hashlib.sha256(data).hexdigest()
    fingerprint = hashlib.sha256(json.dumps(
        {"content": content_hash, "roles": roles, "recipe": recipe.as_dict()}, sort_keys=True).encode()).hexdigest()
    labels = sorted(frame["label"].unique().tolist(), key=natural_key) if "label" in frame.columns else None
    replaced = None
    with store.staged_dir(paths.workspace_dir("datasets", actor.workspace), name) as tmp:
        frame.to_parquet(tmp / "data.parquet", index=False)
        (tmp / ("original" + Path(filename).suffix.lower())).write_bytes(data)
        moved = None
        try:
            with store.transaction() as conn:
                mine = "name=? AND workspace=?"
                row = scope(actor).one("datasets", mine, (name, actor.workspace))
                if row and _complete(row):
                    if not replace:
                        raise _exists_already(name)
                    replaced = _folder_of(row)
                    scope(actor).delete("datasets", mine, (name, actor.workspace), conn=conn)
                elif row:  # an older version's save killed midway: its row names files that are not there
                    scope(SYSTEM).delete("datasets", mine, (name, actor.workspace), conn=conn)
                folder = _free_folder(actor, name, keep=replaced)
                info = DatasetInfo(name, store.now(), Path(filename).name, content_hash, fingerprint, roles,
                                   recipe.as_dict(), len(frame), frame["split"].value_counts().to_dict(), labels,
                                   report, description, actor.workspace, _relative(folder))
                (tmp / "meta.json").write_text(json.dumps(asdict(info), indent=2, default=str))
                try:
                    scope(actor).insert("datasets", dict(
                        name=name, created_at=info.created_at, source_file=info.source_file,
                        content_hash=content_hash, fingerprint=fingerprint, roles=store.to_json(roles),
                        recipe=store.to_json(info.recipe), rows=info.rows, splits=store.to_json(info.splits),
                        label_names=store.to_json(labels), report=store.to_json(report), description=description,
                        folder=info.location), conn=conn)
                except store.IntegrityError as exc:  # replace=True on a dataset the actor may not delete
                    raise DataError(f"A dataset named {name!r} exists already and is not yours to replace. "
                                    "Choose another name.") from exc
                os.replace(tmp, folder)  # the last step before COMMIT
                moved = folder
        except BaseException:
            if moved is not None:  # the commit failed (a full disk): the folder no row names goes again
                _remove_unnamed(moved)
            raise
    if replaced is not None and replaced != folder:
        shutil.rmtree(replaced, ignore_errors=True)
    return info


def _remove_unnamed(folder: Path) -> None:
    """Remove `folder` unless a row names it (checked holding the write lock, so no save is midway)."""
    try:
        with store.transaction():
            if not scope(SYSTEM).one("datasets", "folder=?", (_relative(folder),), columns="name"):
                shutil.rmtree(folder, ignore_errors=True)
    except (OSError, *store.DatabaseError):
        pass  # the next save of this name reclaims it


def _own_row(actor: Actor, name: str) -> dict | None:
    """The dataset `name` of the actor's current workspace (where new ones go), if there is one."""
    return scope(actor).one("datasets", "name=? AND workspace=?", (name, actor.workspace))


def _info(row: dict) -> DatasetInfo:
    return DatasetInfo(row["name"], row["created_at"], row["source_file"], row["content_hash"], row["fingerprint"],
                       store.from_json(row["roles"], {}), store.from_json(row["recipe"], {}), row["rows"],
                       store.from_json(row["splits"], {}), store.from_json(row["label_names"]),
                       store.from_json(row["report"], {}), row["description"] or "",
                       row.get("workspace") or access.DEFAULT_WORKSPACE, row.get("folder") or "")


def list_datasets(actor: Actor) -> list[DatasetInfo]:
    """The actor's workspace's datasets, then the shipped demo datasets it does not shadow (read-only there)."""
    ensure_demos()
    own = [_info(r) for r in scope(actor).select("datasets", order="created_at") if _complete(r)]
    names = {d.name for d in own}
    return own + [_info(r) for r in _demo_rows(actor) if r["name"] not in names and _complete(r)]


def _demo_rows(actor: Actor, name: str | None = None) -> list[dict]:
    """The demo datasets LLM Lab ships, which every workspace reads like the built-in models (they live in the
    default workspace; only its members and admins change them). Built-in suites name them."""
    actor.require("read", "read datasets")
    if actor.sees_everything or access.DEFAULT_WORKSPACE in actor.workspaces:
        return []  # the scope has them already
    wanted = [n for n in demo_names() if name is None or n == name]  # demos only: nothing else of `default`
    if not wanted:
        return []
    marks = ",".join("?" * len(wanted))
    return scope(SYSTEM).select("datasets", f"workspace=? AND created_by=? AND name IN ({marks})",
                                (access.DEFAULT_WORKSPACE, LOCAL.user, *wanted), order="created_at")


def demo_names() -> list[str]:
    return sorted(json.loads(f.read_text())["name"] for f in DEMO_DIR.glob("*.json")) if DEMO_DIR.exists() else []


def get(actor: Actor, name: str) -> DatasetInfo:
    """The dataset `name` the actor sees; one of its current workspace first (names are unique per workspace),
    else a shipped demo dataset."""
    ensure_demos()
    row = _row(actor, name)
    if row is None:
        names = ", ".join(d.name for d in list_datasets(actor)) or "none yet"
        raise DataError(f"No dataset named {name!r}. Datasets here: {names}.")
    if not _complete(row):
        raise DataError(f"Dataset {name!r} was not saved completely (its files are missing from "
                        f"{_folder_of(row).relative_to(paths.home())}), probably because a save was cut short. "
                        "Import the file again under this name: the broken entry is replaced.")
    return _info(row)


def _row(actor: Actor, name: str) -> dict | None:
    """The row of the dataset `name` the actor sees: its current workspace's first, else any it sees (complete
    ones first), else a shipped demo dataset's; None if there is none."""
    rows = scope(actor).select("datasets", "name=?", (name,)) or _demo_rows(actor, name)
    rows.sort(key=lambda r: (r["workspace"] != actor.workspace, not _complete(r)))
    return rows[0] if rows else None


def load_frame(actor: Actor, name: str, split: str | None = None) -> pd.DataFrame:
    """The stored rows (columns: id, split and the mapped roles), optionally one split."""
    info = get(actor, name)
    frame = pd.read_parquet(info.folder / "data.parquet")
    if split:
        frame = frame[frame["split"] == split].reset_index(drop=True)
    return frame


def require(info: DatasetInfo, *roles: str) -> None:
    """Raise a clear error when a dataset lacks roles a task needs."""
    missing = [r for r in roles if r not in info.roles]
    if missing:
        raise DataError(f"Dataset {info.name!r} has no column mapped to {', '.join(missing)}; "
                        f"it maps {', '.join(info.roles) or 'nothing'}. Re-import it with that column mapped.")


def delete(actor: Actor, name: str) -> None:
    """Delete a dataset's row and files (audited as dataset.delete); one whose files are missing too."""
    ensure_demos()
    found = _row(actor, name)
    if found is None:
        get(actor, name)  # raises "no dataset named …" for a name the actor cannot see
    info = _info(found)
    row = scope(actor).one("datasets", "name=? AND workspace=?", (name, info.workspace), columns="workspace, created_by")
    with store.transaction() as conn:
        if not scope(actor).delete("datasets", "name=? AND workspace=?", (name, info.workspace), conn=conn):
            raise access.PermissionDenied(f"{actor.user} may not delete dataset {name!r}: only its creator or an "
                                          "admin can.")
    shutil.rmtree(info.folder, ignore_errors=True)
    audit.record(actor, "dataset.delete", name, {"rows": info.rows, "content_hash": info.content_hash,
                                                 "created_by": row["created_by"]}, workspace=row["workspace"])


def profile(frame: pd.DataFrame) -> dict:
    """Numbers the preview shows: rows, empties, duplicates, label counts, text lengths."""
    cols = _text_cols(frame)
    main = "text" if "text" in frame.columns else (cols[0] if cols else None)
    lengths = frame[main].astype(str).str.len() if main else pd.Series(dtype=int)
    return {
        "rows": len(frame),
        "empty_rows": int((frame[cols].astype(str).apply(lambda s: s.str.strip()) == "").all(axis=1).sum()) if cols else 0,
        "duplicate_rows": int(frame.duplicated(subset=cols or None).sum()),
        "label_counts": frame["label"].astype(str).value_counts().to_dict() if "label" in frame.columns else {},
        "text_column": main,
        "length_chars": {"min": int(lengths.min()), "median": float(lengths.median()), "max": int(lengths.max())} if len(lengths) else {},
        "split_counts": frame["split"].value_counts().to_dict() if "split" in frame.columns else {},
    }


# ---------------------------------------------------------------- demo datasets
FIRST_DEMOS = ("demo-docs", "demo-prompts", "demo-reviews")  # what an empty marker (older versions) stands for


def ensure_demos() -> None:
    """Import the demo datasets shipped in llm_lab/demo_data once per home folder."""
    marker = paths.home() / ".demos-imported"
    if not DEMO_DIR.exists():
        return
    shipped = demo_names()
    # the marker lists what was imported (an empty one, from before it did, the first three demos): a home made
    # before a demo shipped gets that one, and only that one
    recorded = set(marker.read_text().split() or FIRST_DEMOS) if marker.exists() else set()
    if set(shipped) <= recorded:
        return
    specs = [json.loads(f.read_text()) for f in sorted(DEMO_DIR.glob("*.json"))]
    # imported in their `order` (then by name): lists show demos in import order, and pickers default to the
    # first that fits, so a later demo never displaces an earlier default (demo-prompts for generation tasks)
    for spec in sorted(specs, key=lambda spec: (spec.get("order", 0), spec["name"])):
        if spec["name"] in recorded:
            continue
        data_file = DEMO_DIR / spec["file"]
        row = scope(SYSTEM).one("datasets", "name=? AND workspace=?", (spec["name"], LOCAL.workspace))
        if row and _complete(row):
            continue
        try:
            _import(LOCAL, spec["name"], data_file.name, data_file.read_bytes(), spec.get("roles"),  # not audited:
                    Recipe(**spec.get("recipe", {})), spec.get("description", ""), False, None)  # shipped data
        except DataError as exc:
            if "exists already" not in str(exc):
                raise
    marker.write_text("\n".join(sorted(recorded | set(shipped))) + "\n")
