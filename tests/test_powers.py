"""Server powers belong to the operator, and names are unique per workspace.

On a hosted server: remote code is an admin's, and only where the operator allows it; a model loaded with it
stays with who loaded it. A non-admin opens models from the registry, from folders under the model roots and
from allowed Hub ids (capped in size), and a refusal tells nothing about which server paths exist; a link
opens only what its visitor could open. Datasets and models are named per workspace.
"""
import importlib
import json
import shutil
import sqlite3
import types
from pathlib import Path

import pandas as pd
import pytest

from llm_lab import data, paths, registry, store, train
from llm_lab.access import LOCAL, SYSTEM, Actor, PermissionDenied, scope
from llm_lab.errors import DataError, ModelError
from llm_lab.train import export
from tests.conftest import app_test, no_exceptions

EDITOR = Actor("eve@example.com", "editor", "team-a", ("team-a",))
ADMIN = Actor("ada@example.com", "admin", "team-a", ("team-a",))
OTHER_ADMIN = Actor("abe@example.com", "admin", "team-a", ("team-a",))
TEAM_B = Actor("bob@example.com", "editor", "team-b", ("team-b",))
REVIEWS_A = b"text,label\nlovely,pos\nawful,neg\ngreat,pos\nbad,neg\nfine,pos\npoor,neg\n"
REVIEWS_B = b"text,label\nsunny,warm\nsnowy,cold\nhot,warm\nicy,cold\n"


@pytest.fixture
def hosted(monkeypatch, tmp_path):
    """A hosted server whose operator set model roots (with one model in it) and a Hub allow-list."""
    roots = tmp_path / "roots"
    roots.mkdir()
    monkeypatch.setenv("LLM_LAB_MODE", "hosted")
    monkeypatch.setenv("LLM_LAB_MODEL_ROOTS", str(roots))
    monkeypatch.setenv("LLM_LAB_HUB_ALLOW", "good-org/*,solo/model")
    registry.forget()
    yield roots
    registry.forget()


@pytest.fixture
def remote_code_folder(tiny_bert, tmp_path):
    """A model folder whose config maps its classes to a .py beside it that writes a marker when imported."""
    folder = tmp_path / "remote-code-model"
    shutil.copytree(tiny_bert, folder)
    marker = tmp_path / "REMOTE-CODE-RAN"
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "custom.CustomConfig", "AutoModel": "custom.CustomModel",
                          "AutoModelForSequenceClassification": "custom.CustomModel"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "custom.py").write_text(
        "from pathlib import Path\n"
        f"Path({str(marker)!r}).write_text('the visitor ran code in the server')\n"
        "from transformers import BertConfig, BertForSequenceClassification\n"
        "class CustomConfig(BertConfig):\n    pass\n"
        "class CustomModel(BertForSequenceClassification):\n    config_class = CustomConfig\n")
    return types.SimpleNamespace(folder=folder, marker=marker)


# ---------------------------------------------------------------- remote code
def test_remote_code_is_an_admins_and_an_editor_runs_none(remote_code_folder):
    folder, marker = str(remote_code_folder.folder), remote_code_folder.marker
    with pytest.raises(PermissionDenied, match=r"eve@example.com \(editor\) may not load a model with remote code"
                                               r".*Only an admin can"):
        registry.load(EDITOR, folder, trust_remote_code=True)
    from llm_lab import capabilities

    with pytest.raises(PermissionDenied, match="remote code"):
        registry.load_for(EDITOR, capabilities.needs("Opening a model"), folder, trust_remote_code=True)
    assert not marker.exists()
    loaded = registry.load(EDITOR, folder)  # without remote code the folder opens with the library's own class
    assert type(loaded.model).__name__ == "BertForSequenceClassification" and not marker.exists()
    assert registry.may_run_remote_code(LOCAL) and not registry.may_run_remote_code(EDITOR)


def test_hosted_remote_code_needs_the_operators_setting_too(hosted, remote_code_folder, monkeypatch):
    with pytest.raises(ModelError, match="does not run remote code.*allow_remote_code is off"):
        registry.load(ADMIN, str(remote_code_folder.folder), trust_remote_code=True)
    assert not remote_code_folder.marker.exists()
    assert not registry.may_run_remote_code(ADMIN)
    monkeypatch.setenv("LLM_LAB_ALLOW_REMOTE_CODE", "true")
    assert registry.may_run_remote_code(ADMIN) and not registry.may_run_remote_code(EDITOR)
    with pytest.raises(PermissionDenied, match="Only an admin can"):
        registry.load(EDITOR, str(remote_code_folder.folder), trust_remote_code=True)
    assert not remote_code_folder.marker.exists()


def _fake_loads(monkeypatch) -> list:
    """registry._load_uncached replaced by one that records its calls and returns a fresh handle each time."""
    calls = []

    def fake(entry, head, device, dtype, attention, allow_bin, trust_remote_code, num_labels, base=None):
        calls.append(trust_remote_code)
        return types.SimpleNamespace(entry=entry, trust_remote_code=trust_remote_code)

    monkeypatch.setattr(registry, "_load_uncached", fake)
    return calls


def test_a_model_loaded_with_remote_code_is_never_served_to_another_user(hosted, tiny_bert, monkeypatch):
    monkeypatch.setenv("LLM_LAB_ALLOW_REMOTE_CODE", "true")
    calls = _fake_loads(monkeypatch)
    mine = registry.load(ADMIN, str(tiny_bert), trust_remote_code=True)
    assert registry.load(ADMIN, str(tiny_bert), trust_remote_code=True) is mine  # cached for its user
    theirs = registry.load(OTHER_ADMIN, str(tiny_bert), trust_remote_code=True)
    plain = registry.load(OTHER_ADMIN, str(tiny_bert))
    assert theirs is not mine and plain is not mine and plain is not theirs
    assert registry.load(ADMIN, str(tiny_bert)) is plain  # without remote code it is shared as before
    assert calls == [True, True, False]


REMOTE_SCRIPT = """
import streamlit as st
from ui import backend
st.session_state["handle"] = id(backend.model(MODEL, head="classifier", trust_remote_code=TRUST))
"""


def test_the_ui_keeps_a_remote_code_model_in_its_session(tiny_bert, monkeypatch):
    """Not in st.cache_resource (process-wide): another browser session of the same user loads its own."""
    from streamlit.testing.v1 import AppTest

    calls = _fake_loads(monkeypatch)
    registry.forget()  # no model cached by another test; none of these fakes left for the next one

    def session(trust: bool):
        script = REMOTE_SCRIPT.replace("MODEL", repr(str(tiny_bert))).replace("TRUST", repr(trust))
        at = AppTest.from_string(script, default_timeout=60).run()
        no_exceptions(at)
        handle = at.session_state["handle"]
        at.run()  # a rerun of the same session keeps it
        assert at.session_state["handle"] == handle
        return handle

    try:
        session(True)
        registry._cache.clear()  # as if the registry's cache had let it go: only the session may still hold it
        session(True)
        assert calls == [True, True]
        session(False)
        registry._cache.clear()
        session(False)  # a plain model lives in the registry's bounded cache only: once it is let go, it loads again
        assert calls == [True, True, False, False]
    finally:
        registry._cache.clear()


def test_models_page_shows_remote_code_only_to_who_may_use_it(monkeypatch):
    from ui import backend

    at = app_test("views/models.py").run()
    no_exceptions(at)
    assert [c.key for c in at.checkbox] == ["m_trust"]  # the local user is an admin
    monkeypatch.setattr(backend, "actor", lambda: EDITOR)
    at = app_test("views/models.py").run()
    no_exceptions(at)
    assert "m_trust" not in [c.key for c in at.checkbox]


# ---------------------------------------------------------------- what a non-admin may open
def test_hosted_non_admin_opens_registry_roots_and_allowed_hub_ids(hosted, tiny_bert, tmp_path):
    inside = hosted / "tiny"
    shutil.copytree(tiny_bert, inside)
    assert registry.resolve(EDITOR, "minilm").source == "builtin"
    by_path = registry.resolve(EDITOR, str(inside))
    by_name = registry.resolve(EDITOR, "tiny")  # a name relative to a root
    assert by_path.source == by_name.source == "local" and by_path.location == by_name.location
    assert by_path.head == "classifier"
    assert registry.resolve(EDITOR, "good-org/any-model").source == "hub"
    assert registry.resolve(EDITOR, "Solo/Model").source == "hub"
    for refused in ("bad-org/model", "solo/model2", "good-org/../../x", "gpt2"):
        with pytest.raises(ModelError, match="is not a model you can open here"):
            registry.resolve(EDITOR, refused)
    assert not registry.hub_allowed("good-org/..") and registry.hub_allowed("GOOD-ORG/m")
    with pytest.raises(ModelError, match=r"^'\.' is not a Hugging Face model folder"):  # the root itself: no path shown
        registry.resolve(EDITOR, ".")
    registry.register(EDITOR, registry.ModelEntry("mine", "local", str(inside), "classifier"))
    assert registry.load(EDITOR, "mine").entry.workspace == "team-a"


def test_a_refusal_is_the_same_whether_the_path_exists_or_not(hosted, tiny_bert, tmp_path):
    """Different messages for existing and missing paths told visitors which server paths exist."""
    ghost = tmp_path / "elsewhere" / "model"

    def refusal(name: str) -> str:
        with pytest.raises(ModelError) as info:
            registry.load(EDITOR, name)
        return str(info.value)

    before = refusal(str(ghost))
    shutil.copytree(tiny_bert, ghost)  # now a real model folder, outside the roots
    assert refusal(str(ghost)) == before
    assert "is not a model you can open here" in before and "An admin can add model roots" in before
    assert str(hosted) not in before and str(tmp_path) not in before.replace(repr(str(ghost)), "")
    # the same for system files, '..' out of a root, a symlink in a root pointing out, and "~"
    (hosted / "link").symlink_to(ghost, target_is_directory=True)
    assert (hosted / "link" / "config.json").exists()
    for existing, missing in (("/etc/passwd", "/etc/no-such-file"), ("/root/.bashrc", "/root/.no-such-rc"),
                              ("../elsewhere/model", "../elsewhere/nothing"), ("link", "no-link"),
                              (str(hosted / "link"), str(hosted / "no-link")), ("~/.bashrc", "~/.no-such-rc")):
        assert refusal(existing).replace(repr(existing), "X") == refusal(missing).replace(repr(missing), "X"), existing
    assert registry.resolve(ADMIN, str(ghost)).source == "local"  # an admin still opens any folder


def test_locally_nothing_changes(tiny_bert, tmp_path):
    folder = tmp_path / "anywhere"
    shutil.copytree(tiny_bert, folder)
    assert registry.resolve(EDITOR, str(folder)).source == "local"
    assert registry.resolve(EDITOR, "any-org/any-model").source == "hub"


def test_hosted_registering_a_folder_follows_the_same_rules(hosted, tiny_bert, tmp_path):
    outside = tmp_path / "outside"
    shutil.copytree(tiny_bert, outside)
    with pytest.raises(ModelError, match="is not a model you can open here"):
        registry.register(EDITOR, registry.ModelEntry("sneaky", "local", str(outside), "classifier"))
    with pytest.raises(ModelError, match="is not a model you can open here"):
        registry.register(EDITOR, registry.ModelEntry("sneaky", "trained", str(outside), "classifier"))
    with pytest.raises(ModelError, match="is not a model you can open here"):
        registry.register(EDITOR, registry.ModelEntry("sneaky", "hub", "bad-org/model", "classifier"))
    trained = export.model_folder(EDITOR, "made-here")
    shutil.copytree(tiny_bert, trained)
    registry.register(EDITOR, registry.ModelEntry("made-here", "trained", str(trained), "classifier"))
    registry.register(ADMIN, registry.ModelEntry("admins-pick", "local", str(outside), "classifier"))


def test_hosted_training_into_a_server_folder_is_an_admins(hosted):
    cfg = train.TrainConfig(task="classify", model="minilm", dataset="demo-reviews", out="/tmp/anywhere")
    with pytest.raises(PermissionDenied, match="may not save a model to a folder of the server"):
        train.submit(EDITOR, cfg)
    export.check_out(ADMIN, cfg)


def test_models_page_link_loads_only_what_the_visitor_could_open(hosted, tiny_bert, tmp_path, monkeypatch):
    """`/models?model=/some/server/path` loaded any folder for whoever opened the link."""
    from ui import backend

    outside = tmp_path / "outside"
    shutil.copytree(tiny_bert, outside)
    monkeypatch.setattr(backend, "actor", lambda: EDITOR)
    calls = _fake_loads(monkeypatch)
    for link in (str(outside), "/root/.bashrc"):
        at = app_test("views/models.py")
        at.query_params["model"] = link
        at.run()
        no_exceptions(at)
        assert any("is not a model you can open here" in e.value for e in at.error), [e.value for e in at.error]
        assert "m_loaded" not in at.session_state and calls == []
    assert "location" not in at.dataframe[0].value.columns  # server paths are an admin's to see


# ---------------------------------------------------------------- Hub downloads
def _hub(monkeypatch, sizes: dict):
    """A fake Hub: model_info answers with these file sizes; snapshot_download records what it is asked."""
    import huggingface_hub
    from huggingface_hub.hf_api import RepoSibling

    asked = {"info": [], "download": []}

    def model_info(repo_id, timeout=None, files_metadata=False, **kw):
        asked["info"].append(files_metadata)
        return types.SimpleNamespace(siblings=[RepoSibling(n, size=s if files_metadata else None)
                                               for n, s in sizes.items()], sha="abc")

    def snapshot_download(repo_id, local_files_only=False, **kw):
        if local_files_only:
            raise FileNotFoundError("not in the cache")
        asked["download"].append(repo_id)
        return "/fake/snapshot"

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "model_info", model_info)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return asked


def test_hosted_hub_download_is_capped_before_anything_is_fetched(hosted, monkeypatch):
    monkeypatch.setenv("LLM_LAB_HUB_MAX_GB", "1")
    asked = _hub(monkeypatch, {"config.json": 700, "model.safetensors": 3_000_000_000, "pytorch_model.bin": 9e12})
    with pytest.raises(ModelError, match=r"'good-org/big' is 3.00 GB to download.*at most 1 GB.*hub_max_gb"):
        registry.load(EDITOR, "good-org/big")
    assert asked == {"info": [True], "download": []}
    asked = _hub(monkeypatch, {"config.json": 700, "model.safetensors": 90_000_000, "pytorch_model.bin": 9e12})
    assert registry.hub_source("good-org/small", {}) == "/fake/snapshot"  # the .bin is not fetched, not counted
    assert asked == {"info": [True], "download": ["good-org/small"]}
    sizes_unknown = types.SimpleNamespace(siblings=[types.SimpleNamespace(rfilename="model.safetensors", size=None)])
    with pytest.raises(ModelError, match="did not say how large"):
        registry.check_download_size("good-org/x", sizes_unknown)


def test_local_hub_download_is_not_capped(monkeypatch):
    asked = _hub(monkeypatch, {"model.safetensors": 9e12})
    assert registry.hub_source("any-org/huge", {}) == "/fake/snapshot"
    assert asked == {"info": [False], "download": ["any-org/huge"]}


def test_hosted_hub_offline_still_fails_fast(hosted):
    with pytest.raises(ModelError, match="HF_HUB_OFFLINE=1"):
        registry.load(EDITOR, "good-org/model")


# ---------------------------------------------------------------- names per workspace
def test_two_workspaces_each_have_their_own_dataset_of_one_name():
    a = data.import_dataset(EDITOR, "reviews", "a.csv", REVIEWS_A)
    b = data.import_dataset(TEAM_B, "reviews", "b.csv", REVIEWS_B)
    assert a.folder != b.folder and a.folder.is_dir() and b.folder.is_dir()
    assert set(data.load_frame(EDITOR, "reviews")["label"]) == {"pos", "neg"}
    assert set(data.load_frame(TEAM_B, "reviews")["label"]) == {"warm", "cold"}
    assert data.get(EDITOR, "reviews").content_hash != data.get(TEAM_B, "reviews").content_hash
    with pytest.raises(DataError, match="exists already"):
        data.import_dataset(EDITOR, "reviews", "a.csv", REVIEWS_B)
    local = data.import_dataset(LOCAL, "reviews", "l.csv", REVIEWS_A)  # the default workspace keeps its place
    assert local.folder == paths.home() / "datasets" / "reviews" == data.dataset_dir("reviews")
    assert b.folder == paths.home() / "datasets" / "@team-b" / "reviews"
    data.delete(TEAM_B, "reviews")
    assert not b.folder.exists() and a.folder.is_dir() and local.folder.is_dir()
    assert set(data.load_frame(EDITOR, "reviews")["label"]) == {"pos", "neg"}
    with pytest.raises(DataError, match="No dataset named 'reviews'"):
        data.get(TEAM_B, "reviews")


def test_two_workspaces_each_have_their_own_model_of_one_name(tiny_bert, tiny_gpt2):
    registry.register(EDITOR, registry.ModelEntry("clf", "local", str(tiny_bert), "classifier"))
    registry.register(TEAM_B, registry.ModelEntry("clf", "local", str(tiny_gpt2), "causal-lm"))
    assert registry.resolve(EDITOR, "clf").location == str(tiny_bert)
    assert registry.resolve(TEAM_B, "clf").location == str(tiny_gpt2)
    with pytest.raises(ModelError, match="exists already"):
        registry.register(EDITOR, registry.ModelEntry("clf", "local", str(tiny_gpt2), "causal-lm"))
    with pytest.raises(ModelError, match="exists already"):
        export.check_name_free(EDITOR, "clf")
    export.check_name_free(LOCAL, "clf")
    registry.unregister(TEAM_B, "clf")
    assert registry.resolve(EDITOR, "clf").location == str(tiny_bert)
    # trained models are saved per workspace, and an existing folder is never overwritten
    assert export.model_folder(LOCAL, "m") == paths.home() / "models" / "m"
    assert export.model_folder(EDITOR, "m") == paths.home() / "models" / "@team-a" / "m"
    (paths.home() / "models" / "m").mkdir(parents=True)
    assert export.model_folder(LOCAL, "m") == paths.home() / "models" / "m~2"
    odd = Actor("x@example.com", "editor", "we/ird ws", ("we/ird ws",))
    assert paths.workspace_dir("models", odd.workspace).parent == paths.home() / "models"


def _old_database(home: Path) -> None:
    """A database as the release before this one left it: names global, a dataset of a team workspace in
    datasets/<name>, every migration of that release applied."""
    home.mkdir(parents=True, exist_ok=True)
    store.reset_connections()
    conn = sqlite3.connect(home / "llm_lab.db")
    conn.execute("CREATE TABLE schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
    importlib.import_module("llm_lab.bench.cache")  # registers the bench schema

    for component, done in (("datasets", 2), ("models", 3), ("bench", 2)):
        for sql in store._SCHEMAS[component][:done]:
            for statement in store.statements(sql):
                conn.execute(statement)
        conn.execute("INSERT INTO schema_versions VALUES (?, ?)", (component, done))
    conn.execute("INSERT INTO datasets VALUES ('weather', 1.0, 'w.csv', 'h1', 'f1', '{\"text\": \"text\", "
                 "\"label\": \"label\"}', '{}', 4, '{\"train\": 4}', '[\"cold\", \"warm\"]', '{}', 'old', "
                 "'team-b', 'bob@example.com')")
    conn.execute("INSERT INTO datasets VALUES ('notes', 2.0, 'n.csv', 'h2', 'f2', '{\"text\": \"text\"}', '{}', 1, "
                 "'{\"train\": 1}', NULL, '{}', '', 'default', 'local')")
    conn.execute("INSERT INTO models VALUES ('old-clf', 'local', '/models/old', 'classifier', 'minilm', 3.0, "
                 "'[\"a\", \"b\"]', '{\"k\": 1}', 'team-b', 'bob@example.com')")
    conn.execute("INSERT INTO bench_results VALUES ('k-old', 'old-clf', 's', 't', 'classification', 'ok', 'acc', 0.9, "
                 "0.8, 0.95, NULL, 4.0, 1.5, '{}', 'team-b', 'bob@example.com')")
    conn.commit()
    conn.close()
    folder = home / "datasets" / "weather"
    folder.mkdir(parents=True)
    pd.DataFrame({"id": range(4), "text": ["sunny", "snowy", "hot", "icy"], "label": ["warm", "cold"] * 2,
                  "split": ["train"] * 4}).to_parquet(folder / "data.parquet", index=False)
    (home / ".demos-imported").touch()
    store._migrated.clear()


def test_an_old_database_migrates_to_names_per_workspace_with_every_row(lab_home):
    _old_database(lab_home)
    rows = {r["name"]: r for r in scope(SYSTEM).select("datasets")}
    assert set(rows) == {"weather", "notes"}
    assert rows["weather"]["workspace"] == "team-b" and rows["weather"]["created_by"] == "bob@example.com"
    assert (rows["weather"]["rows"], rows["weather"]["description"], rows["weather"]["folder"]) == (
        4, "old", "datasets/weather")
    (model,) = scope(SYSTEM).select("models")
    assert (model["name"], model["location"], model["head"], model["parent"], model["labels"], model["meta"],
            model["workspace"], model["created_by"]) == ("old-clf", "/models/old", "classifier", "minilm",
                                                         '["a", "b"]', '{"k": 1}', "team-b", "bob@example.com")
    (result,) = scope(SYSTEM).select("bench_results")
    assert (result["key"], result["headline"], result["low"], result["seconds"], result["workspace"]) == (
        "k-old", 0.9, 0.8, 1.5, "team-b")
    for table, key in (("datasets", "name"), ("models", "name"), ("bench_results", "key")):
        keys = [r["name"] for r in sorted(store.query(f"PRAGMA table_info({table})"), key=lambda r: r["pk"]) if r["pk"]]
        assert keys == ["workspace", key], table
        assert f"{table}_workspace" in {r["name"] for r in store.query(f"PRAGMA index_list({table})")}
    assert "bench_results_suite" in {r["name"] for r in store.query("PRAGMA index_list(bench_results)")}
    assert store.query_one("SELECT version FROM schema_versions WHERE component='datasets'")["version"] == 3
    # the team's dataset is read where it was written; a new one of the same name elsewhere does not touch it
    assert list(data.load_frame(TEAM_B, "weather")["text"]) == ["sunny", "snowy", "hot", "icy"]
    mine = data.import_dataset(LOCAL, "weather", "w.csv", REVIEWS_A)
    assert mine.folder != lab_home / "datasets" / "weather"
    assert list(data.load_frame(TEAM_B, "weather")["text"]) == ["sunny", "snowy", "hot", "icy"]
    assert set(data.load_frame(LOCAL, "weather")["label"]) == {"pos", "neg"}
    registry.register(LOCAL, registry.ModelEntry("old-clf", "hub", "org/clf", "classifier"))
    assert {(r["workspace"], r["location"]) for r in scope(SYSTEM).select("models")} == {
        ("team-b", "/models/old"), ("default", "org/clf")}


def test_two_workspaces_computing_the_same_benchmark_each_keep_their_result():
    """A key fingerprints the computation; keyed by it alone, the second workspace's result took the first's away."""
    from llm_lab.bench import cache
    from llm_lab.bench.result import TaskResult

    cache.put(EDITOR, TaskResult("same-key", "clf", "s", "t", "classification"))
    cache.put(TEAM_B, TaskResult("same-key", "bobs-private-name", "s", "t", "classification"))
    assert [r.model for r in cache.summaries(EDITOR)] == ["clf"]
    assert [r.model for r in cache.summaries(TEAM_B)] == ["bobs-private-name"]
    assert cache.get(EDITOR, "same-key").model == cache.load_result(EDITOR, "same-key").model == "clf"
    assert cache.get(TEAM_B, "same-key").model == "bobs-private-name"
    assert cache.get(LOCAL, "same-key") is None
