"""The team server of issue 22 in a real browser: a hosted dashboard and two workers on a private PostgreSQL and
a private redis-server, set up as docker-compose.team.yml does (`db migrate` first, then the dashboard and
`python -m llm_lab worker --queue cpu` twice, all sharing LLM_LAB_HOME, LLM_LAB_DATABASE_URL and
LLM_LAB_QUEUE_URL).

Sixteen people sign in at once (one Chromium context each, driven in lock-step) into two team workspaces and
upload datasets, while two of them, one per team, run a benchmark from the Benchmarks page on a dataset of
their own that has the same name in both workspaces: a job run with the wrong person's rights would score the
other team's rows. Then a worker is killed (SIGKILL) in the middle of a benchmark started from the browser:
the job ends `interrupted` once the worker's heartbeat stops, the person presses Resume, and the other worker
finishes it from the saved per-example outputs with every example scored once.

Everything is checked through the backend on the same store (the test process points LLM_LAB_DATABASE_URL and
LLM_LAB_HOME at the server's) and on the pages (no exception box; Admin → Workers shows both workers).
Heartbeats are short (LLM_LAB_HEARTBEAT_S=0.5) and the timeout is 15 s: with 6 s a worker loading a model
on two cores saturated by sixteen browsers (and other test runs) once went silent for 6 s and its job was
declared lost while it ran. Every wait polls a condition with a deadline.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.conftest import (ROOT, _free_port, _outdir, assert_no_exception_box, need_chromium, screenshot,
                            start_streamlit, stop_streamlit, wait_for, wait_idle)
from tests.hosted import authorize, connected, sign_in, start_sign_in, visit, write_secrets
from tests.servers import postgres_database

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PEOPLE = [f"member{i:02d}@team.example" for i in range(16)]
ADMIN = PEOPLE[0]                                   # an admin through LLM_LAB_ADMINS; the others are editors
TEAMS = {"team-a": PEOPLE[:8], "team-b": PEOPLE[8:]}
SUBMITTERS = {PEOPLE[3]: "team-a", PEOPLE[11]: "team-b"}  # one per team, each benchmarking its own "reviews"
EDITOR_GROUPS = ["llm-lab-editor"]                  # the groups claim the default role map makes editors
HEARTBEAT_S, WORKER_TIMEOUT_S = "0.5", "15"
JOB_TIMEOUT_S = 240


def team_of(email: str) -> str:
    return next(name for name, members in TEAMS.items() if email in members)


def dataset_name(email: str) -> str:
    return "reviews" if email in SUBMITTERS else f"notes-{PEOPLE.index(email):02d}"


def rows_of(email: str) -> int:
    return 8 + PEOPLE.index(email)  # a different size for everyone: a mixed-up dataset shows in its row count


def review_csv(marker: str, rows: int) -> bytes:
    """Reviews whose every text starts with `marker`; all rows in the test split (what the suite builder scores
    by default), labels a classifier can map."""
    lines = ["text,label,split"] + [f"{marker} review {k}: {'great' if k % 2 else 'awful'},"
                                    f"{'positive' if k % 2 else 'negative'},test" for k in range(rows)]
    return ("\n".join(lines) + "\n").encode()


# ---------------------------------------------------------------- the servers
@pytest.fixture(scope="module")
def team_oidc():
    """The mock identity provider, knowing the sixteen people (editors by their groups claim)."""
    import logging

    from oidc_provider_mock import User, run_server_in_thread

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    users = [User(sub=e, claims={"email": e, "email_verified": True, "groups": EDITOR_GROUPS}) for e in PEOPLE]
    with run_server_in_thread(port=_free_port(), user_claims=users) as server:
        yield f"http://127.0.0.1:{server.server_port}"


class Team:
    """The processes of one team server: the dashboard and the workers (only these are ever stopped)."""

    def __init__(self, home: Path, env: dict, url: str, oidc: str):
        self.home, self.env, self.url, self.oidc = home, env, url, oidc
        self.dashboard: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []

    def __getitem__(self, key):  # tests.hosted's helpers read server["url"] and server["oidc"]
        return {"url": self.url, "oidc": self.oidc}[key]

    def start_worker(self) -> subprocess.Popen:
        log = open(self.home / f"worker-{len(self.workers)}.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "llm_lab", "worker", "--queue", "cpu"], cwd=ROOT,
                                env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.workers.append(proc)
        return proc

    def worker_rows(self) -> list[dict]:
        """The workers table, read straight from PostgreSQL (the fixture runs before the test process points
        its own store at this server)."""
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(self.env["LLM_LAB_DATABASE_URL"], row_factory=dict_row) as conn:
            return conn.execute("SELECT id, pid, status FROM workers").fetchall()

    def stop(self) -> None:
        if self.dashboard is not None:
            stop_streamlit(self.dashboard, self.home, "team-streamlit.log")
        for proc in self.workers:  # by their own pids
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=20)
        for log in self.home.glob("worker-*.log"):
            shutil.copy(log, _outdir() / f"team-{log.name}")


def migrate(env: dict) -> None:
    """`python -m llm_lab db migrate`, as the compose file's migrate service runs before anything else."""
    done = subprocess.run([sys.executable, "-m", "llm_lab", "db", "migrate"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def team(team_oidc, postgres_server, redis_server, tmp_path_factory):
    """A hosted dashboard and two CPU workers on a fresh PostgreSQL database and an empty Redis."""
    need_chromium()
    redis_server.flush()
    home = tmp_path_factory.mktemp("team_home")
    port = _free_port()
    secrets_file = write_secrets(tmp_path_factory.mktemp("team_secrets") / "secrets.toml", port, team_oidc)
    with postgres_database(postgres_server) as db_url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_LAB_")}
        env.update(LLM_LAB_HOME=str(home), LLM_LAB_MODE="hosted", LLM_LAB_ADMINS=ADMIN, LLM_LAB_JOBS_INLINE="0",
                   LLM_LAB_EXTERNAL_WORKER="1", LLM_LAB_SECRETS_FILE=str(secrets_file),
                   LLM_LAB_DATABASE_URL=db_url, LLM_LAB_QUEUE_URL=redis_server.url(),
                   LLM_LAB_HEARTBEAT_S=HEARTBEAT_S, LLM_LAB_WORKER_TIMEOUT_S=WORKER_TIMEOUT_S, PYTHONUNBUFFERED="1")
        server = Team(home, env, f"http://127.0.0.1:{port}", team_oidc)
        try:
            migrate(env)
            pids = {server.start_worker().pid, server.start_worker().pid}
            server.dashboard = start_streamlit([sys.executable, "-m", "llm_lab", "dashboard", "--port", str(port)],
                                               home, port, env)
            wait_for(lambda: {r["pid"] for r in server.worker_rows() if r["status"] == "alive"} == pids
                     or _exited(server.workers), timeout=120)
            assert not _exited(server.workers), _exited(server.workers)
            yield server
        finally:
            server.stop()


def _exited(workers: list[subprocess.Popen]) -> list[int]:
    return [p.pid for p in workers if p.poll() is not None]


@pytest.fixture
def lab(team, monkeypatch):
    """The test process's backend on the team server's store, queue and files."""
    from llm_lab import store

    for key, value in team.env.items():
        if key.startswith("LLM_LAB_"):
            monkeypatch.setenv(key, value)
    store.reset_connections()
    yield team
    store.close_pools()


# ---------------------------------------------------------------- the browser side
def open_pages(browser, people: list[str]) -> dict:
    pages = {}
    for email in people:
        context = browser.new_context(viewport={"width": 1280, "height": 1100})
        pages[email] = context.new_page()
        pages[email].set_default_timeout(90_000)
    return pages


def sign_in_all(pages: dict, server: Team) -> None:
    """Everybody opens the app, presses Sign in and authorizes, each step for all before the next."""
    for page in pages.values():
        page.goto(server.url + "/datasets")
    for page in pages.values():
        connected(page)
        start_sign_in(page, server)
    for email, page in pages.items():
        authorize(page, email)
    for email, page in pages.items():
        page.wait_for_url(server.url + "/**")
        connected(page)
        page.locator("[data-testid='stSidebar']").get_by_text(email, exact=False).wait_for()


def make_team_workspaces() -> None:
    """The two team workspaces and their members (those signed in so far), as the operator makes them with
    `python -m llm_lab workspaces create NAME` / `add-member NAME EMAIL` (the local operator's rights)."""
    from llm_lab import accounts, store
    from llm_lab.access import LOCAL

    for name, members in TEAMS.items():
        if not store.query_one("SELECT 1 FROM workspaces WHERE name=?", (name,)):  # a test run alone makes them
            accounts.create_workspace(LOCAL, name)
        for email in members:
            if accounts.get_user(email):
                accounts.add_member(LOCAL, name, email)


def write_files(folder: Path, uploads: dict) -> dict:
    """{email: a CSV file named like the dataset (the Datasets page names a dataset after its file)}."""
    files = {}
    for email, (name, rows) in uploads.items():
        files[email] = folder / str(PEOPLE.index(email)) / f"{name}.csv"
        files[email].parent.mkdir(parents=True, exist_ok=True)
        files[email].write_bytes(review_csv(email, rows))
    return files


def upload_all(pages: dict, server: Team, files: dict) -> None:
    """Each person opens Datasets in their team's workspace and saves their file (named after it), in
    lock-step: everybody's upload and saving overlap on the server."""
    for email, page in pages.items():
        page.goto(f"{server.url}/datasets?ws={team_of(email)}")
    for page in pages.values():
        connected(page)
        page.get_by_text("Stored datasets").wait_for()
        wait_idle(page)
    for email, page in pages.items():
        page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(files[email]))
    for email, page in pages.items():
        page.get_by_text("Column roles").wait_for()
        wait_idle(page)
        expect(page.get_by_label("Name", exact=True)).to_have_value(files[email].stem, timeout=90_000)  # named after its file
        page.get_by_role("button", name="Save dataset").click()
    for email, page in pages.items():
        page.get_by_text(f"Saved {files[email].stem}").wait_for()
        wait_idle(page)
        assert_no_exception_box(page)


def pick(page, label: str, option: str) -> None:
    """Choose `option` in the selectbox labelled exactly `label`."""
    box = page.locator("[data-testid='stSelectbox']").filter(
        has=page.locator("[data-testid='stWidgetLabel']").get_by_text(label, exact=True))
    box.click()
    page.get_by_role("option", name=option, exact=True).click()
    wait_idle(page)


def start_benchmark(page, server: Team, dataset: str) -> None:
    """On Benchmarks: build a one-task suite (classification of `dataset`'s test split) and run it on the
    default model (MiniLM)."""
    visit(page, server, "benchmarks")
    page.get_by_text("Build one", exact=True).click()
    wait_idle(page)
    pick(page, "Task type", "classification")
    pick(page, "Dataset", dataset)
    examples = page.locator("input[aria-label='Examples (0 = all)']")
    examples.fill("0")  # every row of the split (the builder's default caps a task at 200)
    examples.press("Enter")
    wait_idle(page)
    page.get_by_role("button", name="Add task").click()
    wait_idle(page)
    page.get_by_role("button", name="Run benchmark").click()
    page.get_by_text("Runs on worker").or_(page.get_by_text("succeeded")).first.wait_for()


def wait_succeeded(page, email: str) -> None:
    """The job panel (a fragment polling every 2 s) reaches `succeeded` and the page shows the leaderboard."""
    try:
        page.get_by_text(re.compile(r"— (succeeded|failed|cancelled|interrupted)")).first.wait_for(
            timeout=JOB_TIMEOUT_S * 1000)
    finally:
        states = [(j["id"], j["status"], j["worker_id"], j["message"], j["error"]) for j in jobs_of(email)]
    assert page.get_by_text("— succeeded").count(), (email, states)
    page.get_by_role("heading", name="Leaderboard", exact=True).wait_for()
    wait_idle(page)
    assert_no_exception_box(page)


# ---------------------------------------------------------------- what the store holds
def jobs_of(email: str) -> list[dict]:
    from llm_lab import accounts, jobs
    from llm_lab.bench import jobs as bench_jobs

    actor = accounts.actor_for(email, team_of(email))
    return [j for j in jobs.list_jobs(actor) if j["fn"] == bench_jobs.JOB_FN and j["created_by"] == email]


def scored_examples(email: str, job: dict) -> list[dict]:
    """The per-example outputs of a finished benchmark job, read with its owner's rights."""
    from llm_lab import accounts
    from llm_lab.bench import cache

    actor = accounts.actor_for(email, team_of(email))
    results = [cache.load_result(actor, key) for key in job["result"]["keys"]]
    assert len(results) == 1 and results[0].ok, [(r.label, r.error) for r in results]
    return results[0].per_example


def assert_benchmarked_own_rows(email: str, job: dict, dataset: str, rows: int, marker: str) -> None:
    """The job scored every row of the owner's own dataset once, and nothing else."""
    from llm_lab import accounts, data

    examples = scored_examples(email, job)
    ids = data.load_frame(accounts.actor_for(email, team_of(email)), dataset)["id"].tolist()
    assert len(ids) == rows and sorted(e["id"] for e in examples) == sorted(ids), (email, len(examples), rows)
    assert all(e["text"].startswith(marker) for e in examples), [e["text"] for e in examples][:3]


def assert_datasets_whole_and_theirs(uploads: dict[str, tuple[str, int]]) -> None:
    """Each team workspace holds exactly its members' datasets, each whole: rows, marker and file name."""
    from llm_lab import accounts, data

    for team_name, members in TEAMS.items():
        actor = accounts.actor_for(members[1], team_name)
        stored = {d.name: d for d in data.list_datasets(actor) if d.name not in data.demo_names()}
        expected = {uploads[email][0]: (email, uploads[email][1]) for email in members}
        assert set(stored) == set(expected), (team_name, sorted(stored), sorted(expected))
        for name, (email, rows) in expected.items():
            frame = data.load_frame(actor, name)
            assert stored[name].rows == rows == len(frame), (team_name, name, stored[name].rows, len(frame), rows)
            assert frame["text"].str.startswith(f"{email} ").all(), (name, frame["text"].head().tolist())


# ---------------------------------------------------------------- the tests
class Clock:
    """Prints how long each phase took (the module must stay within a few minutes on two cores)."""

    def __init__(self):
        self.start = self.last = time.monotonic()

    def __call__(self, phase: str) -> None:
        now = time.monotonic()
        print(f"\n[{now - self.start:6.1f} s] {phase} (+{now - self.last:.1f} s)", flush=True)
        self.last = now


def test_sixteen_people_at_once_while_two_run_benchmarks_on_the_workers(browser, lab, tmp_path):
    from llm_lab import jobs
    from llm_lab.access import LOCAL

    clock = Clock()
    pages = open_pages(browser, PEOPLE)
    try:
        sign_in_all(pages, lab)
        clock("16 signed in")
        make_team_workspaces()
        uploads = {e: (dataset_name(e), rows_of(e)) for e in PEOPLE}
        files = write_files(tmp_path, uploads)
        # the two submitters upload their reviews and start a benchmark on them ...
        upload_all({e: pages[e] for e in SUBMITTERS}, lab, files)
        for email in SUBMITTERS:
            start_benchmark(pages[email], lab, "reviews")
        clock("2 datasets uploaded, 2 benchmarks started")
        # ... and the fourteen others upload theirs while the workers run the benchmarks
        states = [j["status"] for e in SUBMITTERS for j in jobs_of(e)]
        assert {"queued", "running"} & set(states), states  # the uploads below overlap the benchmarks
        upload_all({e: p for e, p in pages.items() if e not in SUBMITTERS}, lab, files)
        clock("14 datasets uploaded")
        for email in SUBMITTERS:
            wait_succeeded(pages[email], email)
        clock("2 benchmarks done")
        screenshot(pages[PEOPLE[11]], "team-benchmark-done")

        visit(pages[ADMIN], lab, "admin")
        pages[ADMIN].get_by_role("tab", name="Workers").click()
        panel = pages[ADMIN].locator("[role='tabpanel']:visible")
        panel.get_by_text("Team workers on Redis").wait_for()
        panel.get_by_text("0 job(s) queued").wait_for()
        wait_idle(pages[ADMIN])
        screenshot(pages[ADMIN], "team-admin-workers")
        for page in pages.values():
            assert_no_exception_box(page)
    finally:
        for page in pages.values():
            page.context.close()
    clock("admin's Workers tab")

    workers = {w["id"]: w for w in jobs.workers_overview(LOCAL)["workers"]}
    assert len(workers) == 2 and all(w["status"] == "alive" for w in workers.values()), workers
    ran_on = {}
    for email, team_name in SUBMITTERS.items():
        (job,) = jobs_of(email)  # one job each, theirs
        assert (job["status"], job["workspace"], job["attempts"]) == ("succeeded", team_name, 1), job
        assert job["worker_id"] in workers, (job["worker_id"], list(workers))
        ran_on[email] = job["worker_id"]
        assert_benchmarked_own_rows(email, job, "reviews", rows_of(email), f"{email} ")
    print("benchmarks ran on workers:", ran_on)
    assert_datasets_whole_and_theirs(uploads)


def test_a_killed_worker_loses_nothing_the_other_finishes_the_resumed_job(browser, lab, tmp_path):
    from llm_lab import accounts, jobs
    from llm_lab.access import LOCAL
    from llm_lab.bench import cache

    email = PEOPLE[3]
    rows = 1500  # long enough on two busy cores that the kill lands mid-task, after a flush of partial outputs
    clock = Clock()
    page = open_pages(browser, [email])[email]
    try:
        sign_in(page, lab, email)
        make_team_workspaces()
        csv = tmp_path / "long-reviews.csv"
        csv.write_bytes(review_csv(f"{email} long", rows))
        upload_all({email: page}, lab, {email: csv})
        start_benchmark(page, lab, "long-reviews")

        actor = accounts.actor_for(email, team_of(email))
        job = wait_for(lambda: [j for j in jobs_of(email) if j["status"] == "running" and "long-reviews" in
                                j["params"]["suite_text"]], timeout=JOB_TIMEOUT_S)[0]
        key = wait_for(lambda: _partial_key(cache, jobs.get(actor, job["id"])), timeout=JOB_TIMEOUT_S)
        victim = next(p for p in lab.workers if p.pid == _pid_of(job["worker_id"]))
        victim.send_signal(signal.SIGKILL)  # no goodbye: only its silent heartbeat tells
        victim.wait(timeout=30)
        clock(f"worker {victim.pid} killed mid-job")
        done_before = len(json.loads((cache.partial_dir() / f"{key}.json").read_text()))

        page.get_by_text("— interrupted").first.wait_for(timeout=JOB_TIMEOUT_S * 1000)
        wait_idle(page)
        assert_no_exception_box(page)
        clock("the job shows interrupted")
        page.get_by_role("button", name="Resume").scroll_into_view_if_needed()
        screenshot(page, "team-job-interrupted")
        page.get_by_role("button", name="Resume").click()
        page.get_by_text("— interrupted").first.wait_for(state="detached")  # the page shows the new run
        wait_succeeded(page, email)
        clock("resumed on the other worker and done")
        screenshot(page, "team-job-resumed-done")
    finally:
        page.context.close()

    job = jobs.get(actor, job["id"])
    survivor = next(w for w in jobs.workers_overview(LOCAL)["workers"] if w["status"] == "alive")
    assert (job["status"], job["attempts"], job["worker_id"]) == ("succeeded", 2, survivor["id"]), job
    resumed = [line for line in jobs.logs(actor, job["id"]) if "outputs already done" in line]
    assert resumed and f"resuming, {done_before} outputs already done" in resumed[-1], resumed
    assert 0 < done_before < rows
    assert_benchmarked_own_rows(email, job, "long-reviews", rows, f"{email} long ")
    lost = [w for w in jobs.workers_overview(LOCAL)["workers"] if w["status"] == "lost"]
    assert [w["pid"] for w in lost] == [victim.pid]


def _pid_of(worker_id: str) -> int:
    from llm_lab import store

    return store.query_one("SELECT pid FROM workers WHERE id=?", (worker_id,))["pid"]


def _partial_key(cache, job: dict) -> str | None:
    """The key of the running task's partial-outputs file, once the worker has flushed one (the only partial
    file: a finished task's is removed)."""
    if job["status"] != "running":
        pytest.fail(f"the job is {job['status']} before the kill: it needs more rows to be caught mid-task")
    found = sorted(cache.partial_dir().glob("*.json"), key=lambda p: p.stat().st_mtime)
    return found[-1].stem if found else None
