"""Text corpora every machine has: what the built-in causal LMs are pretrained on, offline.

Both come with CPython itself, under the PSF License Version 2 (permissive; it asks that the
copyright notice is kept, which the model cards do):
- `pydoc`: the paragraphs of the language reference and library topics (`pydoc_data.topics`).
- `python`: the standard library's own source (code, comments and docstrings), without its test
  suite and the generated tables, plus the pydoc paragraphs repeated `PROSE_REPEATS` times so that
  English prose is not drowned out by code.
"""
import sys
import sysconfig
from pathlib import Path

LICENCE = "PSF License Version 2 (Python Software Foundation), shipped with CPython"
PROSE_REPEATS = 4
# Parts of the standard library that are not ordinary Python: tests, IDLE, 2to3's grammar tables,
# codec tables, vendored wheels and installed third-party packages.
SKIP_DIRS = {"test", "tests", "idlelib", "lib2to3", "turtledemo", "encodings", "ensurepip", "site-packages",
             "dist-packages", "__pycache__", "lib-dynload", "tkinter", "pydoc_data", "unittest"}
MAX_FILE_BYTES = 200_000  # larger files are data tables (e.g. _pydecimal is kept, unicode tables are not)


def pydoc_corpus() -> list[str]:
    """Paragraphs of the CPython reference docs: text on every machine, no download."""
    from pydoc_data.topics import topics

    paragraphs = []
    for key in sorted(topics):
        paragraphs += [p.strip() for p in topics[key].split("\n\n") if len(p.strip()) > 40]
    return paragraphs


def stdlib_sources() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for path in sorted(root.rglob("*.py")):
        parts = set(path.relative_to(root).parts[:-1])
        if parts & SKIP_DIRS or any(p.startswith("config-") for p in parts) or path.name.startswith("_sysconfigdata"):
            continue
        if path.stat().st_size <= MAX_FILE_BYTES:
            files.append(path)
    return files


def python_corpus() -> list[str]:
    """One document per standard-library module, then the pydoc prose (repeated)."""
    docs = []
    for path in stdlib_sources():
        text = path.read_text(encoding="utf-8", errors="replace").strip()
        if len(text) > 200:
            docs.append(text)
    return docs + pydoc_corpus() * PROSE_REPEATS


CORPORA = {"pydoc": pydoc_corpus, "python": python_corpus}


def describe(name: str) -> str:
    what = {"pydoc": "the Python reference documentation (pydoc_data topics)",
            "python": f"the Python {sys.version_info.major}.{sys.version_info.minor} standard library's source "
                      f"and docstrings plus the reference documentation ×{PROSE_REPEATS}"}[name]
    return f"{what}; licence: {LICENCE}"
