"""The layers of the project, checked (the same rules the before-stop hook prints): pages in views/ are thin UI that
import no torch, transformers or captum; llm_lab/ never imports streamlit; no pages/ folder beside app.py (that name
turns on Streamlit's old multipage mode, which runs a page without app.py's router)."""
import re

from tests.conftest import ROOT

HEAVY = re.compile(r"^\s*(import|from) (torch|transformers|captum)\b", re.M)
STREAMLIT = re.compile(r"^\s*(import|from) streamlit\b", re.M)


def test_pages_import_no_model_stack():
    offenders = [p.name for p in [ROOT / "app.py", *sorted((ROOT / "views").glob("*.py"))]
                 if HEAVY.search(p.read_text())]
    assert not offenders, f"the work belongs in llm_lab/: {offenders}"


def test_the_backend_never_imports_streamlit():
    offenders = [p.relative_to(ROOT).as_posix() for p in (ROOT / "llm_lab").rglob("*.py")
                 if STREAMLIT.search(p.read_text())]
    assert not offenders, offenders


def test_no_pages_folder_beside_the_router():
    assert (ROOT / "views" / "home.py").is_file() and not (ROOT / "pages").exists()
