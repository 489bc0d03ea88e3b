"""Startup time: from `streamlit run app.py` to the first rendered page, and to a rendered Models page with
MiniLM loaded; against a bare one-line Streamlit app started the same way in the same run.

Each run starts a fresh server process (new port) with the same LLM_LAB_HOME (demo datasets imported once
before timing; the very first start of a brand-new home is timed separately and printed). A page counts as
rendered when Chromium shows it connected, the script has finished and its title is visible. The Models
page is opened straight after launch as /models?model=minilm: its card shows first, read from MiniLM's files
(timed when "Parameters" shows), while MiniLM loads in the background (timed when "Try it" shows). A new
user meets the Home page first: the last figure opens Home, waits READ_S seconds (reading it), then opens the
same Models link and times it from there (the server has used those seconds to import the model stack).

    python benchmarks/startup.py [--runs N] [--quick]

Last line: ratio=<baseline first page / our first page> (higher is better; 1.0 = as fast as a bare app).
"""
import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
MODEL_READY = 'text="Try it"'  # shown once the model is in memory (its card shows before, read from its files)
READ_S = 3.0  # seconds a visitor spends on the Home page before opening Models
BARE_APP = 'import streamlit as st\nst.title("hello")\n'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(script: str, home: Path, port: int) -> subprocess.Popen:
    env = dict(os.environ, LLM_LAB_HOME=str(home), HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", script, "--server.headless", "true", "--server.port", str(port),
         "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_rendered(page, url: str, started: float, timeout: float = 120, ready: str = "h1") -> float:
    """Load `url` (retrying until the server listens); seconds since `started` when it is rendered."""
    deadline = started + timeout
    while True:
        try:
            page.goto(url, timeout=5000)
            break
        except Exception:
            if time.perf_counter() > deadline:
                raise
            time.sleep(0.05)
    page.wait_for_selector("[data-testid='stApp'][data-test-connection-state='CONNECTED']", timeout=timeout * 1000)
    page.wait_for_selector(ready, timeout=timeout * 1000)
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=timeout * 1000)
    return time.perf_counter() - started


def check_no_exception(page) -> None:
    box = page.locator("[data-testid='stException']")
    if box.count():
        raise RuntimeError("the page shows an exception: " + box.first.inner_text())


def one_run(browser, script: str, home: Path, path: str = "", ready: str = "h1", then: str | None = None):
    """Start a server and open one page straight away: seconds from launch to that page rendered (and, with
    `then`, a pair: also the seconds until `then` shows, e.g. the model the page loads in the background)."""
    port = free_port()
    context = browser.new_context()
    page = context.new_page()
    started = time.perf_counter()
    proc = start(script, home, port)
    try:
        seconds = wait_rendered(page, f"http://127.0.0.1:{port}/{path}", started, ready=ready)
        if then:
            page.wait_for_selector(then, timeout=120_000)
            seconds = (seconds, time.perf_counter() - started)
        check_no_exception(page)
        return seconds
    finally:
        context.close()
        stop(proc)


def home_then_models(browser, home: Path) -> float:
    """Start a server, open Home, read it for READ_S, then open Models with MiniLM: seconds from that click."""
    port = free_port()
    context = browser.new_context()
    page = context.new_page()
    proc = start("app.py", home, port)
    try:
        wait_rendered(page, f"http://127.0.0.1:{port}/", time.perf_counter())
        time.sleep(READ_S)
        seconds = wait_rendered(page, f"http://127.0.0.1:{port}/models?model=minilm", time.perf_counter(),
                                ready=MODEL_READY)
        check_no_exception(page)
        return seconds
    finally:
        context.close()
        stop(proc)


def summary(name: str, values: list[float]) -> str:
    return (f"{name:<34} median {statistics.median(values):6.2f} s   min {min(values):6.2f} s   "
            f"max {max(values):6.2f} s   (n={len(values)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 runs (under a minute)")
    args = parser.parse_args()
    runs = 2 if args.quick else args.runs
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="llm-lab-startup-") as tmp:
        tmp = Path(tmp)
        bare = tmp / "bare_app.py"
        bare.write_text(BARE_APP)
        home = tmp / "home"
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            fresh_first = one_run(browser, "app.py", home)  # new home: imports the demo datasets
            print(f"first start on a brand-new home (imports the demo datasets): {fresh_first:.2f} s", flush=True)
            ours_first, ours_card, ours_models, base_first, after_home = [], [], [], [], []
            for i in range(runs):  # interleaved, so load on the machine hits all four alike
                b = one_run(browser, str(bare), tmp / "bare-home")
                f = one_run(browser, "app.py", home)
                c, m = one_run(browser, "app.py", home, "models?model=minilm", ready='text="Parameters"',
                               then=MODEL_READY)
                h = home_then_models(browser, home)
                base_first.append(b)
                ours_first.append(f)
                ours_card.append(c)
                ours_models.append(m)
                after_home.append(h)
                print(f"run {i + 1}: bare app {b:.2f} s · LLM Lab first page {f:.2f} s · Models page card {c:.2f} s, "
                      f"MiniLM loaded {m:.2f} s · Models page {READ_S:g} s after Home {h:.2f} s", flush=True)
            browser.close()
    print(summary("bare one-line app, first page", base_first))
    print(summary("LLM Lab, first page (Home)", ours_first))
    print(summary("LLM Lab, Models page, card shown", ours_card))
    print(summary("LLM Lab, Models page, MiniLM loaded", ours_models))
    print(summary(f"  the same, {READ_S:g} s after Home", after_home))
    print(f"goals: first page < 3 s, Models page (card) < 6 s (on the 2-core CPU); load average now "
          f"{os.getloadavg()[0]:.1f}")
    print(f"ratio={statistics.median(base_first) / statistics.median(ours_first):.3f}")


if __name__ == "__main__":
    main()
