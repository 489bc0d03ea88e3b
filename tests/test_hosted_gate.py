"""The sign-in gate without a browser: the configuration check, session age, claims, the sign-in audit entry,
and names that are unique per workspace (what the browser tests in test_hosted_browser.py lean on)."""
import os
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, no_exceptions
from tests.hosted import write_secrets

AUTH = {"redirect_uri": "http://127.0.0.1:8501/oauth2callback", "cookie_secret": "x" * 40,
        "client_id": "lab", "client_secret": "s3cret", "server_metadata_url": "https://idp.example.com/.well-known/openid-configuration"}
GATE = """
from ui import auth
import streamlit as st
actor = auth.gate()
if actor:
    auth.sidebar(actor)
st.text(f"ACTOR {actor.user} {actor.role} {actor.workspace}" if actor else "NO ACTOR")
"""


@pytest.fixture
def hosted_mode(monkeypatch):
    monkeypatch.setenv("LLM_LAB_MODE", "hosted")
    monkeypatch.setenv("LLM_LAB_ADMINS", "boss@example.com")
    for name in ("LLM_LAB_TRUSTED_PROXY_HEADER", "LLM_LAB_SESSION_MAX_HOURS", "LLM_LAB_SECRETS_FILE"):
        monkeypatch.delenv(name, raising=False)


def gate_app(user: dict | None, secrets: dict | None = None):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_string(GATE, default_timeout=60)
    at.secrets = {"auth": dict(AUTH)} if secrets is None else secrets
    at.user = {"is_logged_in": False} if user is None else {"is_logged_in": True, **user}
    return at.run()


def texts(at) -> str:
    return "\n".join(t.value for t in at.text)


# ---------------------------------------------------------------- a hosted server without sign-in refuses
def serve(*args, env=None, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "llm_lab", "serve", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_serve_refuses_a_hosted_server_without_sign_in(lab_home, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_LAB_")}
    env.update(LLM_LAB_HOME=str(lab_home), LLM_LAB_MODE="hosted", HOME=str(tmp_path / "nohome"), PYTHONPATH=str(ROOT),
               LLM_LAB_SECRETS_FILE=str(tmp_path / "missing.toml"))
    out = serve("--check", env=env)
    assert out.returncode == 2, out
    assert "LLM Lab will not start in hosted mode" in out.stderr and "no [auth]" in out.stderr
    assert "redirect_uri" in out.stderr  # it says how to set it up

    # a relative LLM_LAB_SECRETS_FILE is the operator's path, not one inside the app folder serve moves to
    write_secrets(tmp_path / "secrets.toml", 8501, "http://127.0.0.1:9400")
    env["LLM_LAB_SECRETS_FILE"] = "secrets.toml"
    out = serve("--check", env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "sign-in: OpenID Connect" in out.stdout

    env["LLM_LAB_MODE"] = "local"
    env["LLM_LAB_SECRETS_FILE"] = str(tmp_path / "missing.toml")
    assert serve("--check", env=env).returncode == 0


def test_the_app_renders_only_the_configuration_error(hosted_mode):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.secrets = {"elsewhere": {"token": "x"}}  # secrets, but no [auth]
    at.run()
    no_exceptions(at)
    assert len(at.error) == 1 and "LLM Lab will not start in hosted mode" in at.error[0].value
    assert not at.title and not at.button and not at.sidebar.children  # no sign-in button, no pages, no data

    at.secrets = {"auth": dict(AUTH, cookie_secret="short")}
    at.run()
    assert "cookie_secret is missing or shorter than 32" in at.error[0].value


def test_named_providers_in_st_secrets_are_found(hosted_mode):
    """[auth.google] reaches the app as Streamlit's AttrDict, not a dict: it must still count as a provider."""
    from llm_lab import hosting
    from streamlit.runtime.secrets import AttrDict

    google = {k: AUTH[k] for k in hosting.OIDC_KEYS}
    auth = {"redirect_uri": AUTH["redirect_uri"], "cookie_secret": AUTH["cookie_secret"], "google": google}
    assert hosting.problems({"auth": AttrDict(auth)}) == []
    at = gate_app(None, {"auth": auth})
    no_exceptions(at)
    assert not at.error
    assert [b.label for b in at.button] == ["Sign in with google"]


# ---------------------------------------------------------------- who the session is
def test_a_signed_in_visitor_becomes_an_actor(hosted_mode):
    at = gate_app({"email": "Ann@Example.com", "iat": int(time.time()), "groups": ["llm-lab-editor"]})
    no_exceptions(at)
    assert at.main.text[0].value == "ACTOR ann@example.com editor ann@example.com"
    assert at.sidebar.text[0].value == "ann@example.com · editor"
    assert at.sidebar.button[0].label == "Sign out"


def test_session_expired_counts_from_the_id_tokens_issue_time(hosted_mode, monkeypatch):
    from ui import auth

    monkeypatch.setenv("LLM_LAB_SESSION_MAX_HOURS", "2")
    now = time.time()
    assert not auth._session_expired({"iat": now - 60})
    assert not auth._session_expired({"iat": int(now - 1.9 * 3600)})
    assert auth._session_expired({"iat": now - 2.1 * 3600})
    assert auth._session_expired({"iat": str(int(now - 3 * 3600))})


def test_an_old_session_is_sent_back_to_sign_in(hosted_mode, monkeypatch):
    from llm_lab import accounts

    monkeypatch.setenv("LLM_LAB_SESSION_MAX_HOURS", "1")
    at = gate_app({"email": "old@example.com", "iat": int(time.time() - 2 * 3600)})
    no_exceptions(at)
    assert texts(at) == "NO ACTOR"
    assert not at.user.get("is_logged_in")  # st.logout() ran
    assert accounts.get_user("old@example.com") is None  # the stale identity was not even recorded


def test_an_address_the_provider_did_not_verify_is_no_identity(hosted_mode):
    from llm_lab import accounts

    at = gate_app({"email": "mallory@example.com", "email_verified": False, "iat": int(time.time())})
    no_exceptions(at)
    assert texts(at) == "NO ACTOR"
    assert "did not send a verified e-mail address" in at.error[0].value
    assert [b.label for b in at.button] == ["Sign out"]  # not "Sign in": that would loop
    assert accounts.get_user("mallory@example.com") is None

    at = gate_app({"sub": "12345", "iat": int(time.time())})  # no email claim at all (scope without "email")
    assert texts(at) == "NO ACTOR" and "did not send a verified e-mail address" in at.error[0].value


def test_sign_in_is_audited_once_per_sign_in_not_per_session(hosted_mode):
    from llm_lab import accounts, audit

    boss = "boss@example.com"
    first = int(time.time()) - 100
    for _ in range(3):  # three tabs of one sign-in
        accounts.sign_in(boss, {"email": boss, "iat": first})
    accounts.sign_in(boss, {"email": boss, "iat": first + 50})  # signed in again at the provider
    entries = audit.entries(accounts.actor_for(boss), action="sign-in")
    assert [e["detail"] for e in entries] == [f'{{"iat": {first + 50}, "role": "admin"}}',
                                              f'{{"iat": {first}, "role": "admin"}}']


# ---------------------------------------------------------------- names are unique per workspace
CSV = "text,label\n" + "".join(f"{{who}} row {i},{'a' if i % 2 else 'b'}\n" for i in range(6))


def test_two_workspaces_each_keep_their_own_dataset_of_the_same_name(hosted_mode):
    from llm_lab import accounts, data

    actors = []
    for who in ("ann@example.com", "bob@example.com"):
        accounts.sign_in(who, {"groups": ["llm-lab-editor"]})
        actors.append(accounts.actor_for(who))
        data.import_dataset(actors[-1], "mine", "mine.csv", CSV.format(who=who).encode())
    ann, bob = actors
    folders = {data.get(a, "mine").folder for a in actors}
    assert len(folders) == 2 and all(f.is_dir() for f in folders)
    for actor in actors:
        assert data.load_frame(actor, "mine")["text"].str.startswith(actor.user).all()
    with pytest.raises(data.DataError, match="exists already"):
        data.import_dataset(ann, "mine", "mine.csv", CSV.format(who="again").encode())
    data.delete(ann, "mine")
    assert [d.name for d in data.list_datasets(ann) if d.name not in data.demo_names()] == []
    assert data.load_frame(bob, "mine")["text"].str.startswith("bob@").all()


def test_a_store_from_before_keeps_its_datasets(lab_home):
    """A home made before names were per workspace: its datasets and their folders are still there."""
    from llm_lab import access, data, paths, store

    store.reset_connections()
    lab_home.mkdir(parents=True, exist_ok=True)
    old = sqlite3.connect(lab_home / "llm_lab.db")
    old.executescript("CREATE TABLE schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL);"
                      "INSERT INTO schema_versions VALUES ('datasets', 2);")
    for sql in store._SCHEMAS["datasets"][:2]:
        for statement in store.statements(sql):
            old.execute(statement)
    old.execute("INSERT INTO datasets (name, created_at, source_file, content_hash, fingerprint, roles, recipe, rows, "
                "splits, label_names, report) VALUES ('legacy', 1, 'l.csv', 'h', 'f', '{}', '{}', 3, '{}', NULL, '{}')")
    old.commit()
    old.close()
    (paths.subdir("datasets") / "legacy").mkdir(parents=True)
    import pandas as pd  # a dataset folder of that time holds its rows
    pd.DataFrame({"id": [0, 1, 2], "split": ["train"] * 3, "text": ["a", "b", "c"]}).to_parquet(
        paths.subdir("datasets") / "legacy" / "data.parquet")
    (paths.home() / ".demos-imported").touch()
    info = data.get(access.LOCAL, "legacy")
    assert info.rows == 3 and info.folder == paths.subdir("datasets") / "legacy" and info.folder.is_dir()


def test_a_new_session_opens_the_workspace_the_user_last_worked_in(monkeypatch):
    """A reload is a new Streamlit session: it used to drop a team member back into their personal workspace."""
    from llm_lab import accounts
    from llm_lab.access import LOCAL
    from ui import auth

    monkeypatch.setenv("LLM_LAB_MODE", "hosted")
    accounts.sign_in("eve@example.com")
    accounts.create_workspace(LOCAL, "team")
    accounts.add_member(LOCAL, "team", "eve@example.com")
    state: dict = {}
    monkeypatch.setattr(auth.st, "session_state", state)
    monkeypatch.setattr(auth.st, "query_params", {"ws": "team"})
    assert auth._choose_workspace(accounts.get_user("eve@example.com")) == "team"   # a permalink into the team
    state.clear()                                                                    # reload: a new session
    monkeypatch.setattr(auth.st, "query_params", {})
    assert auth._choose_workspace(accounts.get_user("eve@example.com")) == "team"
    accounts.remove_member(LOCAL, "team", "eve@example.com")                         # no longer a member
    state.clear()
    assert auth._choose_workspace(accounts.get_user("eve@example.com")) == "eve@example.com"
