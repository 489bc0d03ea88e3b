"""`python -m llm_lab backup`: a copy of LLM_LAB_HOME that can be restored, taken while the server runs.

The SQLite databases (the store, the job queue) are copied first, with SQLite's backup API: a consistent
snapshot even while they are written, their WAL included. The files come after them: datasets, models, job
checkpoints, suites... are written whole before the store names them, so every file the snapshot refers to
is in the archive. Left out: SQLite's side files, the worker's lock and pid, earlier backups, and the Hugging
Face download cache (downloaded again on demand) unless `--with-cache`.

Restore: stop the server and the worker, unpack the archive into an empty LLM_LAB_HOME, start them again.
With LLM_LAB_DATABASE_URL (PostgreSQL) the tables are not in LLM_LAB_HOME: take `pg_dump` first, then this
archive, and restore both (the command says so).
"""
from __future__ import annotations

import os
import sqlite3
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from . import paths, store

SQLITE_MAGIC = b"SQLite format 3\x00"
SKIPPED_NAMES = {"worker.lock", "worker.pid", "worker.json"}
SKIPPED_SUFFIXES = ("-wal", "-shm", "-journal")
BACKUP_DIR = "backups"
CACHE_DIRS = ("huggingface",)


def register(subparsers) -> None:
    p = subparsers.add_parser("backup", help="write a restorable .tar.gz of LLM_LAB_HOME (safe while the server runs)")
    p.add_argument("--out", help=f"the archive to write; '-' for standard output "
                                 f"(default: LLM_LAB_HOME/{BACKUP_DIR}/llm-lab-DATE-TIME.tar.gz)")
    p.add_argument("--with-cache", action="store_true", help="include the Hugging Face download cache")
    p.set_defaults(func=run)


def run(args) -> int:
    args.actor.require("admin", "back up the server")
    to_stdout = args.out == "-"
    if to_stdout and sys.stdout.isatty():
        print("error: --out - writes a binary archive: redirect it to a file", file=sys.stderr)
        return 2
    out = None if to_stdout else Path(args.out) if args.out else \
        paths.subdir(BACKUP_DIR) / time.strftime("llm-lab-%Y%m%d-%H%M%S.tar.gz")
    names = write(sys.stdout.buffer if to_stdout else out, with_cache=args.with_cache)
    print(f"backed up {len(names)} files of {paths.home()}" + ("" if to_stdout else f" to {out}"), file=sys.stderr)
    if store.database_url():  # the tables are not under LLM_LAB_HOME: PostgreSQL's own tools back them up
        print(f"note: the tables are on PostgreSQL ({store.redact(store.database_url())}), not in this archive: "
              "back them up with `pg_dump --format=custom` taken BEFORE this archive (then every file a row names "
              "is in it), and restore both.", file=sys.stderr)
    return 0


def _is_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    except OSError:
        return False


def _members(home: Path, with_cache: bool, out: Path | None) -> list[Path]:
    skipped_dirs = {home / BACKUP_DIR} | ({home / d for d in CACHE_DIRS} if not with_cache else set())
    found = []
    for root, dirs, files in os.walk(home):
        dirs[:] = sorted(d for d in dirs if Path(root, d) not in skipped_dirs)
        for name in sorted(files):
            path = Path(root, name)
            if name in SKIPPED_NAMES or name.endswith(SKIPPED_SUFFIXES) or (out is not None and path == out):
                continue
            found.append(path)
    return found


def write(out, with_cache: bool = False) -> list[str]:
    """Write the archive to `out` (a path, or a binary stream); return the names in it, relative to the home."""
    home = paths.home()
    out_path = Path(out).resolve() if isinstance(out, (str, Path)) else None
    members = _members(home, with_cache, out_path)
    databases = [p for p in members if _is_sqlite(p)]
    files = [p for p in members if p not in databases]
    names = []
    opened = tarfile.open(out_path, "w:gz") if out_path else tarfile.open(fileobj=out, mode="w|gz")
    with opened as archive, tempfile.TemporaryDirectory() as tmp:
        for path in databases:  # first: what they name is already whole on disk
            copy = Path(tmp) / path.name
            source, target = sqlite3.connect(path), sqlite3.connect(copy)
            try:
                source.backup(target)
            finally:
                target.close()
                source.close()
            archive.add(copy, arcname=str(path.relative_to(home)))
            copy.unlink()
            names.append(str(path.relative_to(home)))
        for path in files:
            try:
                archive.add(path, arcname=str(path.relative_to(home)), recursive=False)
            except FileNotFoundError:  # deleted since the walk (a finished job's temporary file)
                continue
            names.append(str(path.relative_to(home)))
    return names
