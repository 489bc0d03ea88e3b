"""Every backend call knows who is acting; stored things are reached only through a scope."""
import re
import sqlite3
from pathlib import Path

import pytest

from llm_lab import access, data, jobs, paths, registry, store
from llm_lab.access import LOCAL, SYSTEM, Actor, PermissionDenied, scope
from llm_lab.errors import DataError, JobError

ROOT = Path(__file__).resolve().parent.parent
CSV = b"text,label\nlovely,pos\nawful,neg\ngreat,pos\nbad,neg\nfine,pos\npoor,neg\n"


def test_no_module_queries_an_owned_table_without_a_scope():
    """A forgotten workspace filter is hard to write: raw SQL on an owned table fails this test."""
    raw = re.compile(r"(store\.(query|query_one|execute)|conn\.execute|\.executemany)\(\s*f?[\"'](?P<sql>[^\"']*)")
    offenders = []
    for path in (ROOT / "llm_lab").rglob("*.py"):
        if path.name in ("access.py", "store.py"):
            continue
        for match in raw.finditer(path.read_text()):
            words = set(re.findall(r"[a-z_]+", match.group("sql").lower()))
            if words & access.OWNED_TABLES:
                offenders.append(f"{path.relative_to(ROOT)}: {match.group('sql')[:60]}")
    assert not offenders, offenders


def test_backend_calls_refuse_a_missing_actor():
    with pytest.raises(TypeError, match="needs an Actor"):
        data.list_datasets("local")
    with pytest.raises(TypeError):
        registry.list_models()


def test_a_workspace_sees_only_its_own_rows():
    team = Actor("ana@example.com", "editor", "team", ("team",))
    data.import_dataset(team, "team-reviews", "r.csv", CSV)
    data.import_dataset(LOCAL, "mine", "r.csv", CSV)
    assert "team-reviews" in [d.name for d in data.list_datasets(team)]
    assert "mine" not in [d.name for d in data.list_datasets(team)]
    assert "team-reviews" not in [d.name for d in data.list_datasets(LOCAL)]
    with pytest.raises(DataError, match="No dataset named 'mine'"):  # the same answer as a name that does not exist
        data.get(team, "mine")
    row = scope(SYSTEM).one("datasets", "name=?", ("team-reviews",))
    assert row["workspace"] == "team" and row["created_by"] == "ana@example.com"


def test_roles_are_enforced_in_the_backend():
    viewer = Actor("val@example.com", "viewer")
    editor = Actor("eve@example.com", "editor")
    with pytest.raises(PermissionDenied, match="may not upload datasets"):
        data.import_dataset(viewer, "v", "r.csv", CSV)
    with pytest.raises(PermissionDenied, match="may not start jobs"):
        jobs.submit(viewer, "llm_lab.jobs:count", {"steps": 1, "delay": 0}, "count")
    data.import_dataset(LOCAL, "admins", "r.csv", CSV)
    with pytest.raises(PermissionDenied, match="only its creator or an admin"):
        data.delete(editor, "admins")
    assert "admins" in [d.name for d in data.list_datasets(LOCAL)]
    data.import_dataset(editor, "editors", "r.csv", CSV)
    data.delete(editor, "editors")
    assert "editors" not in [d.name for d in data.list_datasets(LOCAL)]


def test_jobs_belong_to_who_started_them(monkeypatch):
    monkeypatch.setenv("LLM_LAB_JOBS_INLINE", "0")
    monkeypatch.setattr(jobs, "ensure_worker", lambda: False)  # leave it queued: no worker
    editor, other = Actor("eve@example.com", "editor"), Actor("oli@example.com", "editor")
    job_id = jobs.submit(editor, "llm_lab.jobs:count", {"steps": 1, "delay": 0}, "count")
    with pytest.raises(PermissionDenied, match="only the user who started it"):
        jobs.cancel(other, job_id)
    assert jobs.get(LOCAL, job_id)["status"] == jobs.QUEUED
    with pytest.raises(JobError, match="No job with id"):
        jobs.get(Actor("x@example.com", "admin", "elsewhere", ("elsewhere",)), job_id)
    assert jobs.cancel(editor, job_id)["status"] == jobs.CANCELLED


def test_a_job_runs_with_the_rights_of_who_submitted_it():
    editor = Actor("eve@example.com", "editor", "team", ("team",))
    job_id = jobs.submit(editor, "llm_lab.jobs:count", {"steps": 2, "delay": 0}, "count")
    job = jobs.get(editor, job_id)
    assert job["status"] == jobs.SUCCEEDED and job["workspace"] == "team"
    assert Actor.from_dict(store.from_json(job["actor"])) == editor


def test_existing_rows_migrate_into_the_default_workspace(lab_home):
    """A database made before workspaces existed: its rows are kept and land in `default`."""
    lab_home.mkdir(parents=True, exist_ok=True)
    store.reset_connections()
    conn = sqlite3.connect(lab_home / "llm_lab.db")
    conn.execute("CREATE TABLE schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
    conn.execute("CREATE TABLE models (name TEXT PRIMARY KEY, source TEXT NOT NULL, location TEXT NOT NULL, "
                 "task TEXT NOT NULL, parent TEXT, created_at REAL NOT NULL, labels TEXT, meta TEXT)")
    conn.execute("INSERT INTO schema_versions VALUES ('models', 1)")
    conn.execute("INSERT INTO models VALUES ('old', 'hub', 'org/old', 'classifier', NULL, 1.0, NULL, NULL)")
    conn.commit()
    conn.close()
    store._migrated.clear()
    (old,) = [e for e in registry.list_models(LOCAL) if e.name == "old"]
    assert old.head == "classifier" and old.location == "org/old"
    assert scope(SYSTEM).one("models", "name='old'")["workspace"] == access.DEFAULT_WORKSPACE
    assert paths.home() == lab_home
