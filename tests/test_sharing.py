"""Share links (create, open, list, revoke, expire, public, hashes, roles), the snapshot builders, the Shared
page, and one Arena vote per user per battle."""
import copy
import hashlib
import sqlite3

import pytest

from ui.common import strip_invisible

from llm_lab import access, audit, jobs, paths, settings, sharing, snapshots, store
from llm_lab.access import LOCAL, SYSTEM, Actor, PermissionDenied, scope
from llm_lab.sharing import ShareError, ShareNotFound, SnapshotTampered
from tests.conftest import app_test, no_exceptions

EDITOR = Actor("eve@example.com", "editor", "team", ("team",))
OTHER_EDITOR = Actor("oli@example.com", "editor", "team", ("team",))
OUTSIDER = Actor("val@example.com", "viewer", "elsewhere", ("elsewhere",))
VIEWER = Actor("vic@example.com", "viewer", "team", ("team",))
T0 = 1_800_000_000.0

SNAP = {"title": "Accuracy of two models", "created": "2026-11-01T10:00:00+00:00",
        "text": ["Two models on the demo suite.", "<script>alert(1)</script> stays text"],
        "tables": [{"title": "Leaderboard", "columns": ["model", "accuracy"],
                    "rows": [["tiny-a", 0.81], ["tiny-b", float("nan")]]}],
        "figures": [{"data": [{"type": "bar", "x": ["tiny-a", "tiny-b"], "y": [0.81, 0.5]}],
                     "layout": {"title": {"text": "accuracy"}}}],
        "meta": {"run": "r1"}}


def share(actor=EDITOR, **kw):
    args = dict(kind="benchmark", title="Accuracy", snapshot=copy.deepcopy(SNAP), expires_in_days=None,
                public=False, now=T0)
    args.update(kw)
    return sharing.create(actor, **args)


def row_of(token):
    return scope(SYSTEM).one("shares", "token_hash=?", (hashlib.sha256(token.encode()).hexdigest(),))


# ---------------------------------------------------------------- links
def test_create_open_list_revoke():
    token = share()
    assert len(token) >= 32
    snap = sharing.open_link(token, OUTSIDER, now=T0 + 5)  # signed in elsewhere: a link shares beyond the workspace
    assert snap["title"] == "Accuracy" and snap["kind"] == "benchmark"
    assert snap["tables"][0]["rows"] == [["tiny-a", 0.81], ["tiny-b", None]]  # NaN is stored as null
    assert snap["share"]["by"] == EDITOR.user and snap["share"]["at"] == T0 and snap["share"]["views"] == 1
    sharing.open_link(token, EDITOR, now=T0 + 6)
    sharing.open_link(token, EDITOR, now=T0 + 7, count_view=False)
    (link,) = sharing.list_links(EDITOR, now=T0 + 8)
    assert link["views"] == 2 and link["status"] == "active" and link["title"] == "Accuracy"
    assert link["kind"] == "benchmark" and link["workspace"] == "team" and "token_hash" not in link
    assert sharing.list_links(OTHER_EDITOR) == []           # an editor lists their own links
    assert [r["id"] for r in sharing.list_links(Actor("ada@example.com", "admin", "team", ("team",)))] == [link["id"]]

    revoked = sharing.revoke(EDITOR, link["id"], now=T0 + 10)
    assert revoked["status"] == "revoked" and revoked["revoked_by"] == EDITOR.user
    with pytest.raises(ShareNotFound) as gone:
        sharing.open_link(token, EDITOR, now=T0 + 11)
    with pytest.raises(ShareNotFound) as unknown:
        sharing.open_link("no-such-token", EDITOR)
    assert str(gone.value) == str(unknown.value) == sharing.NOT_FOUND  # the same words: nothing tells which
    assert sharing.list_links(EDITOR, now=T0 + 12)[0]["status"] == "revoked"
    assert sharing.revoke(EDITOR, token)["status"] == "revoked"   # by token too; twice is harmless
    actions = [e["action"] for e in audit.entries(LOCAL, action="share")]
    assert actions == ["share.revoke", "share.create"]


def test_the_token_is_not_stored():
    token = share()
    row = row_of(token)
    assert row["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    dump = "\n".join(store.connect().iterdump())
    assert token not in dump


def test_links_expire_on_an_explicit_clock():
    token = share(expires_in_days=1)
    assert row_of(token)["expires_at"] == T0 + 86400
    assert sharing.open_link(token, EDITOR, now=T0 + 86399)["share"]["expires_at"] == T0 + 86400
    with pytest.raises(ShareNotFound, match="does not exist, was revoked or has expired"):
        sharing.open_link(token, EDITOR, now=T0 + 86400)
    assert sharing.list_links(EDITOR, now=T0 + 86400)[0]["status"] == "expired"
    assert sharing.list_links(EDITOR, now=T0 + 1)[0]["status"] == "active"
    tiny = share(expires_in_days=1e-6)
    with pytest.raises(ShareNotFound):
        sharing.open_link(tiny, EDITOR, now=T0 + 1)
    never = share(expires_in_days=0)
    assert row_of(never)["expires_at"] is None and sharing.open_link(never, EDITOR, now=T0 + 10 * 365 * 86400)
    with pytest.raises(ShareError, match="expires after 0"):
        share(expires_in_days=-1)


def test_views_count_once_per_opening():
    token = share()
    for i in range(5):
        sharing.open_link(token, VIEWER, now=T0 + i)
    assert sharing.list_links(EDITOR)[0]["views"] == 5
    assert row_of(token)["last_viewed_at"] == T0 + 4


def test_snapshot_is_content_addressed_and_checked():
    first, second = share(), share(title="Accuracy")
    h = row_of(first)["snapshot"]
    assert row_of(second)["snapshot"] == h                     # the same snapshot is stored once
    path = paths.subdir("shares") / f"{h}.json"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == h
    assert list(paths.subdir("shares").glob("*.json")) == [path]
    path.write_bytes(path.read_bytes().replace(b"tiny-a", b"tiny-z"))  # changed on disk
    with pytest.raises(SnapshotTampered, match="changed on the server"):
        sharing.open_link(first, EDITOR)
    assert sharing.list_links(EDITOR)[0]["views"] == 0          # a refused opening counts no view
    path.unlink()
    with pytest.raises(SnapshotTampered, match="missing"):
        sharing.open_link(first, EDITOR)


def test_revoking_the_last_link_removes_its_snapshot():
    a, b = share(), share()
    path = paths.subdir("shares") / f"{row_of(a)['snapshot']}.json"
    sharing.revoke(EDITOR, row_of(a)["id"])
    assert path.exists()                                         # b still shows it
    sharing.revoke(EDITOR, row_of(b)["id"])
    assert not path.exists()


def test_roles():
    with pytest.raises(PermissionDenied, match=r"vic@example.com \(viewer\) may not create share links"):
        share(VIEWER)
    token = share()
    with pytest.raises(PermissionDenied, match="only who created it or an admin"):
        sharing.revoke(OTHER_EDITOR, row_of(token)["id"])
    with pytest.raises(PermissionDenied, match="may not revoke"):
        sharing.revoke(VIEWER, row_of(token)["id"])
    with pytest.raises(ShareNotFound):                           # another workspace does not see the link
        sharing.revoke(Actor("x@example.com", "editor", "elsewhere", ("elsewhere",)), row_of(token)["id"])
    with pytest.raises(PermissionDenied, match="approve your account"):
        sharing.open_link(token, Actor("new@example.com", "pending", "team", ("team",)))
    admin = Actor("ada@example.com", "admin", "team", ("team",))
    assert sharing.revoke(admin, row_of(token)["id"])["status"] == "revoked"
    with pytest.raises(TypeError):
        sharing.open_link(token, "eve@example.com")


def test_public_links_only_when_an_admin_allows_them(monkeypatch):
    monkeypatch.delenv("LLM_LAB_PUBLIC_LINKS", raising=False)
    with pytest.raises(PermissionDenied, match="Public links .* are off"):
        share(public=True)
    private = share()
    with pytest.raises(ShareNotFound):                           # anonymous: a link for signed-in users stays shut
        sharing.open_link(private, None)
    assert not sharing.is_public(private)
    settings.put(LOCAL, "public_links", True)
    public = share(public=True)
    assert sharing.is_public(public) and not sharing.is_public(private) and not sharing.is_public("nope")
    assert sharing.open_link(public, None)["share"]["public"] is True
    with pytest.raises(ShareNotFound):
        sharing.open_link(private, None)
    settings.put(LOCAL, "public_links", False)                   # turned off: public links close to anonymous visitors
    assert not sharing.is_public(public)
    with pytest.raises(ShareNotFound):
        sharing.open_link(public, None)
    assert sharing.open_link(public, VIEWER)                     # signed-in users still open them
    sharing.revoke(EDITOR, public)
    settings.put(LOCAL, "public_links", True)
    assert not sharing.is_public(public)


def test_snapshots_are_checked():
    with pytest.raises(ShareError, match="every row needs 2 cells"):
        share(snapshot=dict(SNAP, tables=[{"title": "t", "columns": ["a", "b"], "rows": [[1]]}]))
    with pytest.raises(ShareError, match="Unknown snapshot keys"):
        share(snapshot=dict(SNAP, html="<b>x</b>"))
    with pytest.raises(ShareError, match="Unknown share kind"):
        share(kind="secret")
    with pytest.raises(ShareError, match="text is a list of strings"):
        share(snapshot=dict(SNAP, text="one line"))
    with pytest.raises(ShareError, match="needs a title"):
        share(title="", snapshot=dict(SNAP, title=""))
    assert sharing.canonical({"b": 1, "a": [1.5, None]}) == b'{"a":[1.5,null],"b":1}'


# ---------------------------------------------------------------- snapshot builders
def _bench_results():
    from llm_lab.bench.result import Headline, Repro, TaskResult

    per = [{"id": "1", "text": "good", "label": "pos", "prediction": "pos", "correct": True},
           {"id": "2", "text": "bad", "label": "neg", "prediction": "pos", "correct": False}]
    cm = {"labels": ["neg", "pos"], "matrix": [[0, 1], [0, 1]]}
    return [TaskResult(key=f"k{i}", model=m, suite="demo", task="sentiment", type="classification",
                       metrics={"accuracy": 0.5, "f1_per_class": {"neg": 0.0, "pos": 0.67}},
                       details={"confusion_matrix": cm}, headline=Headline("accuracy", 0.5, 0.2, 0.8),
                       per_example=per, labels=["neg", "pos"], stats={"examples_per_s": 100.0}, seconds=1.0,
                       created_at=T0, repro=Repro(model=m, dataset="reviews", model_location="/secret/path"))
            for i, m in enumerate(["tiny-a", "tiny-b"])]


def test_benchmark_snapshot():
    snap = snapshots.benchmark(_bench_results(), "Benchmark demo")
    assert snap["kind"] == "benchmark" and snap["created"].startswith("2027-01-15")
    titles = [t["title"] for t in snap["tables"]]
    assert titles[:2] == ["Leaderboard", "All results"] and "Examples of sentiment" in titles
    board = snap["tables"][0]
    assert board["columns"][0] == "model" and [r[0] for r in board["rows"]] == ["tiny-a", "tiny-b"]
    assert not any(c.endswith("attributions") for t in snap["tables"] for c in t["columns"])
    assert len(snap["figures"]) >= 3 and all("data" in f for f in snap["figures"])
    assert "/secret/path" not in str(snap)                       # local paths stay home
    token = sharing.create(LOCAL, "benchmark", snap["title"], snap)
    assert sharing.open_link(token, LOCAL)["tables"][0] == board


def test_comparison_snapshot():
    from llm_lab.compare import runs
    from tests.test_compare import OLD_SAVED

    comp = runs.Comparison.from_dict(OLD_SAVED)
    snap = snapshots.comparison(comp)
    assert snap["title"] == OLD_SAVED["title"] and snap["meta"]["comparison_id"] == "old1"
    results = next(t for t in snap["tables"] if t["title"] == "Results")
    assert results["columns"][:2] == ["id", "input"] and results["rows"][1][1] == "bad"
    assert any("agree on 50%" in line for line in snap["text"]) and len(snap["figures"]) == 1
    sharing.create(LOCAL, "comparison", snap["title"], snap)


def test_attribution_snapshots():
    attr = {"model": "tiny", "method": "ig", "method_name": "Integrated Gradients", "tokens": ["[CLS]", "good", "[SEP]"],
            "scores": [0.0, 0.7, 0.0], "target": 1, "target_label": "pos", "probs": [0.2, 0.8], "labels": ["neg", "pos"],
            "special": [True, False, True], "f_input": 0.8}
    snap = snapshots.attribution([(attr, {"comprehensiveness": 0.3, "sufficiency": 0.1})], "good")
    assert snap["kind"] == "attribution" and snap["tables"][0]["title"] == "Faithfulness"
    assert len(snap["figures"]) == 2 and "Text: good" in snap["text"]
    job = snapshots.attribution_job({"model": "tiny", "dataset": "reviews", "n": 4, "most_faithful": "ig",
                                     "faithfulness": [{"method": "ig", "comprehensiveness": 0.3, "sufficiency": 0.1}],
                                     "class_tokens": {"ig": {"pos": [{"token": "good", "mean": 0.5, "count": 3}]}}})
    assert len(job["figures"]) == 2 and job["tables"][1]["rows"] == [["pos", "good", 0.5, 3]]
    for s in (snap, job):
        sharing.create(LOCAL, "attribution", s["title"], s)


def test_training_snapshot():
    job_id = jobs.submit(LOCAL, "llm_lab.jobs:count", {"steps": 3, "delay": 0}, "count to three")
    snap = snapshots.training(LOCAL, job_id)
    assert snap["kind"] == "training" and snap["meta"]["job_id"] == job_id and len(snap["figures"]) == 1
    assert any(t["title"] == "Configuration" for t in snap["tables"])
    sharing.create(LOCAL, "training", snap["title"], snap)


# ---------------------------------------------------------------- the Shared page
def _shared_page(token=None):
    at = app_test("views/shared.py")
    if token:
        at.query_params["token"] = token
    return at.run()


def test_shared_page_renders_the_snapshot_and_refuses_a_revoked_link():
    token = sharing.create(LOCAL, "benchmark", "Accuracy", copy.deepcopy(SNAP))
    at = _shared_page(token)
    no_exceptions(at)
    frame = at.dataframe[0].value
    assert list(frame.columns) == ["model", "accuracy"] and list(frame["model"]) == ["tiny-a", "tiny-b"]
    caption = strip_invisible(at.caption[0].value).replace("\\", "")  # Markdown-escaped
    assert caption.startswith("Shared by local on") and "a frozen snapshot (benchmark, made 2026-11-01)" in caption
    assert [t.value for t in at.text][:2] == SNAP["text"]       # texts as plain text
    assert len(at.get("plotly_chart")) == 1
    at.run()                                                    # a rerun of the same session counts no view
    assert sharing.list_links(LOCAL)[0]["views"] == 1
    sharing.revoke(LOCAL, token)
    at = _shared_page(token)
    no_exceptions(at)
    assert [e.value for e in at.error] == [sharing.NOT_FOUND] and not at.dataframe


def test_shared_page_lists_and_revokes_links():
    at = _shared_page()
    assert any("No share links yet" in i.value for i in at.info)
    sharing.create(LOCAL, "comparison", "My comparison", copy.deepcopy(SNAP), expires_in_days=7)
    at = _shared_page()
    no_exceptions(at)
    texts = [t.value for t in at.text]
    assert "My comparison" in texts and "Comparison" in texts and "active" in texts
    link_id = sharing.list_links(LOCAL)[0]["id"]
    at.button(key=f"revoke_{link_id}").click().run()
    no_exceptions(at)
    assert sharing.list_links(LOCAL)[0]["status"] == "revoked"
    assert "revoked" in [t.value for t in at.text] and not [b for b in at.button if b.key == f"revoke_{link_id}"]


def test_anonymous_visitors_open_public_links_only(monkeypatch):
    monkeypatch.setenv("LLM_LAB_MODE", "hosted")                 # no signed-in actor in this session
    monkeypatch.setenv("LLM_LAB_PUBLIC_LINKS", "1")
    public = sharing.create(EDITOR, "result", "Open to all", copy.deepcopy(SNAP), public=True)
    private = sharing.create(EDITOR, "result", "Team only", copy.deepcopy(SNAP))
    at = _shared_page(public)
    no_exceptions(at)
    assert at.dataframe and "Shared by eve@example.com" in strip_invisible(at.caption[0].value).replace("\\", "")
    at = _shared_page(private)
    assert [e.value for e in at.error] == [sharing.NOT_FOUND]


def test_share_control_creates_a_link_shown_once():
    def script():
        from ui import share
        share.control("result", "A result", lambda: {"text": ["hello"]}, key="x")

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(script).run()
    no_exceptions(at)
    assert not at.checkbox                                       # public links are off: no checkbox
    at.number_input(key="x_days").set_value(2.0)
    at.button(key="x_create").click().run()
    no_exceptions(at)
    url = at.code[0].value
    token = url.split("token=")[1]
    assert url.endswith(f"/shared?token={token}")
    (link,) = sharing.list_links(LOCAL)
    assert link["title"] == "A result" and link["expires_at"] - link["created_at"] == pytest.approx(2 * 86400)
    assert sharing.open_link(token, LOCAL)["text"] == ["hello"]


# ---------------------------------------------------------------- arena: one vote per user per battle
def _battle(actor=LOCAL, battle_id="b1"):
    scope(actor).insert("arena_battles", dict(id=battle_id, created_at=store.now(), pool='["m1","m2"]',
                                              model_a="m1", model_b="m2", prompt="hi", output_a="x", output_b="y",
                                              stats="{}", settings="{}", creator=""), action="run")
    return battle_id


def test_the_same_user_voting_twice_counts_once(monkeypatch):
    from llm_lab.compare import arena

    monkeypatch.setenv("LLM_LAB_MODE", "hosted")
    ana, bob = Actor("ana@example.com", "viewer", "team", ("team",)), Actor("bob@example.com", "viewer", "team", ("team",))
    battle = _battle(Actor("eve@example.com", "editor", "team", ("team",)))
    assert arena.vote(ana, battle, "a", "anon-ignored")["vote"] == "a"
    with pytest.raises(arena.ArenaError, match="voted on already by you"):
        arena.vote(ana, battle, "b", "anon-other-session")         # a new browser session is the same user
    assert arena.get_battle(bob, battle)["vote"] is None          # bob has not voted: the names stay hidden for him
    assert arena.vote(bob, battle, "b")["vote"] == "b"
    rows = arena.votes(ana)
    assert sorted((r["voter"], r["vote"]) for r in rows) == [("ana@example.com", "a"), ("bob@example.com", "b")]
    assert sum(r["battles"] for r in arena.leaderboard(ana, rounds=10)) == 4  # two votes, two models each
    with pytest.raises(PermissionDenied):
        arena.vote(Actor("new@example.com", "pending", "team", ("team",)), battle, "a")


def test_local_mode_keeps_one_vote_per_battle(monkeypatch):
    from llm_lab.compare import arena

    monkeypatch.delenv("LLM_LAB_MODE", raising=False)
    battle = _battle()
    assert arena.vote(LOCAL, battle, "tie", "anon-1")["voter"] == "anon-1"
    with pytest.raises(arena.ArenaError, match="voted on already"):
        arena.vote(LOCAL, battle, "a", "anon-2")
    assert [r["vote"] for r in arena.votes(LOCAL)] == ["tie"]


def test_old_votes_survive_the_migration(lab_home):
    """A database from before one-vote-per-user: its votes are kept and the new index applies."""
    from llm_lab.compare import arena

    migrations = store._SCHEMAS["arena"]
    lab_home.mkdir(parents=True, exist_ok=True)
    store.reset_connections()
    conn = sqlite3.connect(lab_home / "llm_lab.db")
    conn.execute("CREATE TABLE schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
    for sql in migrations[:3]:
        for statement in store.statements(sql):
            conn.execute(statement)
    conn.execute("INSERT INTO schema_versions VALUES ('arena', 3)")
    conn.execute("INSERT INTO arena_battles (id, created_at, pool, model_a, model_b, prompt) "
                 "VALUES ('old', 1.0, '[]', 'm1', 'm2', 'hi')")
    conn.execute("INSERT INTO arena_votes (battle_id, vote, voter, created_at) VALUES ('old', 'b', 'anon-x', 2.0)")
    conn.commit()
    conn.close()
    store._migrated.clear()
    (old,) = arena.votes(LOCAL)
    assert (old["vote"], old["voter"], old["model_b"]) == ("b", "anon-x", "m2")
    with pytest.raises(arena.ArenaError, match="voted on already"):
        arena.vote(LOCAL, "old", "a", "anon-y")
    index = store.query_one("SELECT sql FROM sqlite_master WHERE name='arena_votes_one_per_user'")
    assert "UNIQUE" in index["sql"]
    assert "shares" in access.OWNED_TABLES


def test_compare_page_shares_the_comparison_it_shows():
    from llm_lab.compare import runs, saved
    from tests.test_compare import OLD_SAVED

    comp = runs.Comparison.from_dict(dict(OLD_SAVED, id=None))
    cid = saved.save(LOCAL, comp)
    at = app_test("views/compare.py")
    at.query_params["comparison"] = cid
    at.run()
    no_exceptions(at)
    at.button(key=f"c_share_{cid}_create").click().run()
    no_exceptions(at)
    token = next(c.value for c in at.code if "/shared?token=" in c.value).split("token=")[1]
    snap = sharing.open_link(token, VIEWER)
    assert snap["kind"] == "comparison" and snap["meta"]["comparison_id"] == cid
    assert any(t["title"] == "Results" for t in snap["tables"])


def test_benchmarks_page_shares_the_run_it_shows():
    from llm_lab.bench import cache

    results = _bench_results()
    for r in results:
        cache.put(LOCAL, r)
    cache.record_run(LOCAL, "run1", "demo", ["tiny-a", "tiny-b"], [r.key for r in results])
    at = app_test("views/benchmarks.py").run()
    no_exceptions(at)
    at.text_input(key="b_share_run1_title").set_value("Demo run")
    at.button(key="b_share_run1_create").click().run()
    no_exceptions(at)
    token = next(c.value for c in at.code if "/shared?token=" in c.value).split("token=")[1]
    snap = sharing.open_link(token, OUTSIDER)
    assert snap["title"] == "Demo run" and snap["tables"][0]["title"] == "Leaderboard"
    assert [r[0] for r in snap["tables"][0]["rows"]] == ["tiny-a", "tiny-b"]
