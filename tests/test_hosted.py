"""Hosted mode in the backend: users, roles from configuration and IdP claims, workspaces, the audit log,
settings, the operator's CLI (`--as`), and the refusal to start without sign-in."""
import json

import pytest

from llm_lab import accounts, audit, data, hosting, jobs, settings, store
from llm_lab.access import LOCAL, PermissionDenied
from llm_lab.cli import main as cli
from llm_lab.errors import DataError, JobError
from tests.conftest import app_test

CSV = b"text,label\nlovely,pos\nawful,neg\ngreat,pos\nbad,neg\nfine,pos\npoor,neg\n"
GOOD_AUTH = {"auth": {"redirect_uri": "https://lab.example.com/oauth2callback", "cookie_secret": "x" * 40,
                      "client_id": "lab", "client_secret": "s",
                      "server_metadata_url": "https://idp.example.com/.well-known/openid-configuration"}}


def own(datasets) -> list[str]:
    """Names of the datasets of the actor's own workspace (every workspace also reads the shipped demos)."""
    return [d.name for d in datasets if d.name not in data.demo_names()]


@pytest.fixture
def hosted(monkeypatch):
    monkeypatch.setenv("LLM_LAB_MODE", "hosted")
    monkeypatch.setenv("LLM_LAB_ADMINS", "root@example.com")


def test_first_sign_in_gets_the_configured_role(hosted):
    assert accounts.sign_in("Root@Example.com")["role"] == "admin"   # configured admin, address normalised
    assert accounts.sign_in("val@example.com")["role"] == "viewer"   # the default role
    assert accounts.sign_in("eve@example.com", {"groups": ["staff", "llm-lab-editor"]})["role"] == "editor"
    assert accounts.workspace_names("eve@example.com") == ["eve@example.com"]
    # the IdP's claim wins over what was stored, and the change is audited
    assert accounts.sign_in("val@example.com", {"groups": ["llm-lab-admin"]})["role"] == "admin"
    changes = audit.entries(accounts.actor_for("root@example.com"), action="role.change")
    assert [(e["target"], json.loads(e["detail"])["to"]) for e in changes] == [("val@example.com", "admin")]


def test_pending_users_can_do_nothing_until_approved(hosted, monkeypatch):
    monkeypatch.setenv("LLM_LAB_DEFAULT_ROLE", "pending")
    accounts.sign_in("root@example.com")
    newbie = accounts.actor_for(accounts.sign_in("new@example.com")["email"])
    with pytest.raises(PermissionDenied, match="approve your account"):
        data.list_datasets(newbie)
    admin = accounts.actor_for("root@example.com")
    accounts.set_role(admin, "new@example.com", "viewer")
    assert own(data.list_datasets(accounts.actor_for("new@example.com"))) == []


def test_another_workspace_is_not_found_like_a_name_that_does_not_exist(hosted):
    for email in ("root@example.com", "eve@example.com", "ed@example.com", "val@example.com"):
        accounts.sign_in(email)
    admin = accounts.actor_for("root@example.com")
    for email in ("eve@example.com", "ed@example.com"):
        accounts.set_role(admin, email, "editor")
    eve, ed = accounts.actor_for("eve@example.com"), accounts.actor_for("ed@example.com")
    data.import_dataset(eve, "secret", "r.csv", CSV)
    job = jobs.submit(eve, "llm_lab.jobs:count", {"steps": 1, "delay": 0}, "count")
    assert own(data.list_datasets(ed)) == []
    with pytest.raises(DataError) as theirs:
        data.get(ed, "secret")
    with pytest.raises(DataError) as missing:
        data.get(ed, "no-such")
    assert str(theirs.value).replace("secret", "X") == str(missing.value).replace("no-such", "X")
    with pytest.raises(JobError) as theirs:
        jobs.cancel(ed, job)
    with pytest.raises(JobError) as missing:
        jobs.cancel(ed, "20260101-000000-abcdef")
    assert str(theirs.value).replace(job, "X") == str(missing.value).replace("20260101-000000-abcdef", "X")
    # a workspace one is not a member of cannot be entered, and says so as if it did not exist
    with pytest.raises(accounts.NotFound) as theirs:
        accounts.actor_for("ed@example.com", "eve@example.com")
    with pytest.raises(accounts.NotFound) as missing:
        accounts.actor_for("ed@example.com", "nowhere")
    assert str(theirs.value).replace("eve@example.com", "X") == str(missing.value).replace("nowhere", "X")


def test_a_team_workspace_is_shared_read_only_with_its_viewer(hosted):
    for email in ("root@example.com", "eve@example.com", "val@example.com"):
        accounts.sign_in(email)
    admin = accounts.actor_for("root@example.com")
    accounts.set_role(admin, "eve@example.com", "editor")
    accounts.create_workspace(admin, "team")
    for email in ("eve@example.com", "val@example.com"):
        accounts.add_member(admin, "team", email)
    eve = accounts.actor_for("eve@example.com", "team")
    val = accounts.actor_for("val@example.com", "team")
    data.import_dataset(eve, "shared", "r.csv", CSV)
    assert own(data.list_datasets(val)) == ["shared"]
    with pytest.raises(PermissionDenied, match="viewer"):
        data.delete(val, "shared")
    with pytest.raises(PermissionDenied, match="may not start jobs"):
        jobs.submit(val, "llm_lab.jobs:count", {"steps": 1, "delay": 0}, "count")
    assert own(data.list_datasets(val)) == ["shared"]
    # removed from the team, the viewer cannot open it any more
    accounts.remove_member(admin, "team", "val@example.com")
    with pytest.raises(accounts.NotFound):
        accounts.actor_for("val@example.com", "team")
    # the admin opens every workspace
    assert "team" in accounts.workspace_names("root@example.com")


def test_only_admins_manage_users_and_the_last_admin_stays(hosted):
    accounts.sign_in("root@example.com")
    eve = accounts.actor_for(accounts.sign_in("eve@example.com")["email"])
    with pytest.raises(PermissionDenied, match="Only an admin"):
        accounts.set_role(eve, "eve@example.com", "admin")
    with pytest.raises(PermissionDenied):
        audit.entries(eve)
    with pytest.raises(PermissionDenied):
        settings.put(eve, "public_links", True)
    admin = accounts.actor_for("root@example.com")
    with pytest.raises(accounts.AccountError, match="last admin"):
        accounts.set_role(admin, "root@example.com", "viewer")
    with pytest.raises(accounts.AccountError, match="Unknown role"):
        accounts.set_role(admin, "eve@example.com", "owner")


def test_the_audit_log_is_append_only_and_filters():
    accounts.add_user(LOCAL, "eve@example.com", "editor")
    settings.put(LOCAL, "max_epochs", "10")
    assert settings.get("max_epochs") == 10 and settings.source("max_epochs") == "stored"
    rows = audit.entries(LOCAL)
    assert [r["action"] for r in rows] == ["settings.change", "user.create"]
    assert [r["action"] for r in audit.entries(LOCAL, action="user")] == ["user.create"]
    assert audit.entries(LOCAL, since=store.now() + 60) == []
    for sql in ("UPDATE audit_log SET user='nobody'", "DELETE FROM audit_log"):
        with pytest.raises(Exception, match="append-only"):
            store.execute(sql)
    assert len(audit.entries(LOCAL)) == 2
    csv_text = audit.to_csv(rows)
    assert csv_text.splitlines()[0] == "time,at,user,action,target,workspace,detail"
    assert "eve@example.com" in csv_text


def test_settings_come_from_the_environment_first(monkeypatch):
    monkeypatch.setenv("LLM_LAB_HUB_ALLOW", "org/*, other/model")
    assert settings.get("hub_allow") == ["org/*", "other/model"]
    with pytest.raises(settings.SettingsError, match="set by the environment"):
        settings.put(LOCAL, "hub_allow", "x/y")
    with pytest.raises(settings.SettingsError, match="not a valid int"):
        settings.put(LOCAL, "max_epochs", "many")
    with pytest.raises(settings.SettingsError, match="default_role must be"):
        settings.put(LOCAL, "default_role", "admin")
    monkeypatch.setenv("LLM_LAB_MODE", "cloud")
    with pytest.raises(settings.SettingsError, match="use 'local'"):
        settings.mode()


def test_hosted_mode_without_sign_in_refuses_to_start(hosted, capsys):
    assert hosting.problems({}) and "no [auth] section" in hosting.problems({})[0]
    weak = {"auth": dict(GOOD_AUTH["auth"], cookie_secret="short")}
    assert any("cookie_secret" in p for p in hosting.problems(weak))
    assert hosting.problems(GOOD_AUTH) == []
    named = {"auth": {"redirect_uri": "https://x/oauth2callback", "cookie_secret": "y" * 40,
                      "keycloak": {"client_id": "lab", "client_secret": "s"}}}
    assert hosting.problems(named) == ["[auth.keycloak] is missing server_metadata_url."]
    assert cli(["serve", "--check"]) == 2
    assert "LLM_LAB_TRUSTED_PROXY_HEADER" in capsys.readouterr().err


def test_hosted_app_renders_nothing_but_the_refusal_without_sign_in(hosted):
    at = app_test("app.py", timeout=60).run()
    assert not at.exception
    assert [e.value for e in at.error] and "will not start in hosted mode" in at.error[0].value
    assert not at.get("plotly_chart") and not at.dataframe and not at.metric


def test_the_cli_acts_as_another_user(capsys):
    assert cli(["users", "add", "val@example.com", "--role", "viewer"]) == 0
    assert cli(["data", "import", str(_csv_file()), "--name", "ops"]) == 0
    capsys.readouterr()
    assert cli(["--as", "val@example.com", "data", "delete", "ops"]) == 1
    assert "No dataset named 'ops'" in capsys.readouterr().err  # the viewer's personal workspace lacks it
    assert cli(["--as", "val@example.com", "users", "list"]) == 1
    assert "may not list users" in capsys.readouterr().err
    assert cli(["--as", "nobody@example.com", "data", "list"]) == 1
    assert "No user" in capsys.readouterr().err
    assert cli(["audit", "list", "--user", "local", "--csv"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("time,") and "user.create,val@example.com" in out


def _csv_file():
    from llm_lab import paths

    path = paths.home() / "ops.csv"
    path.write_bytes(CSV)
    return path


def test_local_mode_listens_on_this_machine_only():
    """The server used to listen on every interface by default."""
    import tomllib

    from tests.conftest import ROOT

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
    assert config["server"]["enableXsrfProtection"] is True


def test_a_viewer_gets_no_upload_form(hosted):
    """Read-only users are told so on the Datasets page instead of a form the backend would refuse."""
    accounts.sign_in("val@example.com")
    at = app_test("views/data.py", timeout=60)
    at.session_state["lab_actor"] = accounts.actor_for("val@example.com")
    at.run()
    assert not at.exception
    assert not at.get("file_uploader")
    assert any("read-only access here (viewer)" in i.value for i in at.info)


def test_a_removed_user_stays_locked_out_until_an_admin_restores_them(hosted):
    accounts.sign_in("root@example.com")
    admin = accounts.actor_for("root@example.com")
    accounts.sign_in("cat@example.com")
    accounts.remove_user(admin, "cat@example.com")
    # signing in again (even with a group claim that maps to editor) does not re-create a viewer or an editor
    assert accounts.sign_in("cat@example.com", {"groups": ["llm-lab-editor"]})["role"] == "removed"
    with pytest.raises(PermissionDenied, match="removed your account"):
        data.list_datasets(accounts.actor_for("cat@example.com"))
    accounts.set_role(admin, "cat@example.com", "viewer")
    assert own(data.list_datasets(accounts.actor_for("cat@example.com"))) == []


def test_sign_ins_and_role_changes_are_audited_once(hosted, monkeypatch):
    monkeypatch.setenv("LLM_LAB_TRUSTED_PROXY_HEADER", "X-Forwarded-Email")
    for _ in range(5):  # behind a proxy every reload is a new session, with no token to tell sign-ins apart
        accounts.sign_in("root@example.com")
    admin = accounts.actor_for("root@example.com")
    assert len(audit.entries(admin, action="sign-in")) == 1
    accounts.add_user(admin, "eve@example.com", "editor")
    accounts.set_role(admin, "eve@example.com", "editor")            # no change, no entry
    assert audit.entries(admin, action="role") == []
    assert audit.entries(admin, action="%") == [] and audit.entries(admin, action="user_create") == []
    assert [e["target"] for e in audit.entries(admin, action="user", user="ROOT@example.com")] == [
        "eve@example.com", "root@example.com"]


def test_the_cli_trains_inline_as_the_user_it_acts_as(capsys):
    """`--as` used to be ignored by `train … --inline`, which trained with the local admin's rights."""
    assert cli(["data", "import", str(_csv_file()), "--name", "ops"]) == 0  # in the local operator's workspace
    for email, role in (("val@example.com", "viewer"), ("eve@example.com", "editor")):
        assert cli(["users", "add", email, "--role", role]) == 0
    capsys.readouterr()
    assert cli(["--as", "val@example.com", "train", "classify", "--data", "ops", "--inline"]) == 1
    assert "may not start training jobs" in capsys.readouterr().err
    assert cli(["--as", "eve@example.com", "train", "classify", "--data", "ops", "--inline"]) == 1
    assert "No dataset named 'ops'" in capsys.readouterr().err        # eve's workspace, not the operator's


def test_a_viewer_cannot_run_comparisons_but_can_start_a_battle_to_vote_on(hosted, tiny_gpt2):
    """A viewer's Compare ran both models on the server and only then was refused the save; the Arena asked
    for a right to start battles that viewers, who may vote, never had."""
    from llm_lab.compare import arena, runs

    accounts.sign_in("val@example.com")
    val = accounts.actor_for("val@example.com")
    with pytest.raises(PermissionDenied, match="may not run comparisons"):
        runs.run(val, "generation", ["tiny-gpt", str(tiny_gpt2)], runs.make_inputs(["hi"]),
                 loader=lambda *a: pytest.fail("a model was loaded for a viewer"))
    for page in ("views/compare.py", "views/benchmarks.py", "views/train.py"):
        at = app_test(page, timeout=60)
        at.session_state["lab_actor"] = val
        at.run()
        assert not at.exception, page
        start = [b for b in at.button if b.key in ("c_run", "b_run", "t_start")]
        assert all(b.disabled for b in start) and (start or page == "views/train.py"), page  # Train: no data, no form
    from llm_lab import registry
    from llm_lab.generation import GenerationSettings

    def loader(name, head):
        return registry.load(LOCAL, str(tiny_gpt2), head=head)

    battle = arena.new_battle(val, ["a", "b"], "def f(x):", GenerationSettings(max_new_tokens=4), loader=loader)
    arena.vote(val, battle["id"], "a")
    assert [(v["id"], v["vote"], v["voter"]) for v in arena.votes(val)] == [(battle["id"], "a", "val@example.com")]


def test_every_workspace_reads_the_demo_datasets_the_built_in_suites_name(hosted):
    """The built-in suites failed in every workspace but `default`: the demos lived there alone."""
    from llm_lab.bench import suite

    accounts.sign_in("eve@example.com", {"groups": ["llm-lab-editor"]})
    eve = accounts.actor_for("eve@example.com")
    names = [d.name for d in data.list_datasets(eve)]
    assert names == ["demo-docs", "demo-prompts", "demo-reviews", "demo-instructions"]  # in their import order
    assert sorted(names) == data.demo_names()
    assert data.load_frame(eve, "demo-reviews").equals(data.load_frame(LOCAL, "demo-reviews"))
    for name in ("demo-classifier", "demo-causal-lm"):
        for task in suite.load(eve, name).tasks:
            data.get(eve, task.dataset)
    with pytest.raises(PermissionDenied, match="may not delete"):   # read-only outside `default`
        data.delete(eve, "demo-reviews")
    data.import_dataset(eve, "demo-reviews", "r.csv", CSV)          # a workspace's own dataset shadows a demo
    assert data.get(eve, "demo-reviews").rows == 6 and names.count("demo-reviews") == 1
    assert [d.name for d in data.list_datasets(eve)].count("demo-reviews") == 1


def test_a_team_suite_is_replaced_only_by_who_saved_it(hosted):
    """Any editor of a team silently overwrote another's saved suite of the same name, unaudited."""
    from llm_lab.bench import suite

    accounts.sign_in("root@example.com")
    admin = accounts.actor_for("root@example.com")
    accounts.create_workspace(admin, "team")
    for email in ("eve@example.com", "ed@example.com"):
        accounts.add_user(admin, email, "editor")
        accounts.add_member(admin, "team", email)
    eve, ed = accounts.actor_for("eve@example.com", "team"), accounts.actor_for("ed@example.com", "team")
    text = suite.to_yaml("nightly", [{"name": "x", "type": "speed", "dataset": "demo-docs", "limit": 5}])
    suite.save(eve, text)
    suite.save(eve, text.replace("version: 1", "version: 2"))            # the owner replaces it
    with pytest.raises(suite.SuiteError, match="saved here by eve@example.com"):
        suite.save(ed, text.replace("version: 1", "version: 99"))
    assert str(suite.load(ed, "nightly").version) == "2"
    suite.save(accounts.actor_for("root@example.com", "team"), text.replace("version: 1", "version: 3"))  # an admin may
    assert str(suite.load(eve, "nightly").version) == "3"
    saves = audit.entries(admin, action="suite")
    assert [(e["user"], e["target"], e["workspace"]) for e in reversed(saves)] == [
        ("eve@example.com", "nightly", "team"), ("eve@example.com", "nightly", "team"), ("root@example.com", "nightly", "team")]


def test_server_settings_are_for_admins(capsys):
    assert cli(["users", "add", "eve@example.com", "--role", "editor"]) == 0
    with pytest.raises(PermissionDenied, match="read server settings"):
        settings.all_settings(accounts.actor_for("eve@example.com"))
    assert cli(["--as", "eve@example.com", "settings", "list"]) == 1
    assert {r["name"] for r in settings.all_settings(LOCAL)} == set(settings.DEFAULTS)


def test_admin_page_for_an_admin_and_refusals_for_anyone_else(hosted):
    accounts.sign_in("root@example.com")
    accounts.sign_in("eve@example.com", {"groups": ["llm-lab-editor"]})
    at = app_test("views/admin.py", timeout=60)
    at.session_state["lab_actor"] = accounts.actor_for("root@example.com")
    at.run()
    assert not at.exception
    users = at.dataframe[0].value
    assert sorted(users["email"]) == ["eve@example.com", "root@example.com"]
    at.selectbox(key="adm_user").set_value("eve@example.com").run()
    at.selectbox(key="adm_role_eve@example.com").set_value("viewer").run()
    at.button(key="adm_set_role").click().run()
    assert not at.exception and accounts.get_user("eve@example.com")["role"] == "viewer"
    at.text_input(key="adm_au_action").set_value("role").run()
    audit_rows = [d.value for d in at.dataframe if "action" in d.value.columns][0]
    assert list(audit_rows["action"]) == ["role.change"] and list(audit_rows["target"]) == ["eve@example.com"]
    # the page is not in an editor's navigation; opened anyway, the backend refuses users, audit and settings
    at = app_test("views/admin.py", timeout=60)
    at.session_state["lab_actor"] = accounts.actor_for("eve@example.com")
    at.run()
    assert not at.exception
    refused = sorted({e.value.split(" may not ")[1].split(".")[0] for e in at.error})
    assert refused == ["list users", "read server settings", "read the audit log", "see the workers"]
    assert [list(d.value["name"]) for d in at.dataframe] == [["eve@example.com"]]  # only their own workspace


def test_the_default_workspace_cannot_register_a_model_trained_into_another_workspace(hosted, tiny_bert):
    """The default workspace's models folder holds every other workspace's (<home>/models/@NAME/…): a member of
    the default workspace registering such a folder as "trained" would read another team's model."""
    import shutil

    from llm_lab import paths, registry
    from llm_lab.access import Actor
    from llm_lab.errors import ModelError

    accounts.sign_in("root@example.com")
    theirs = paths.workspace_dir("models", "eve@example.com") / "secret-model"
    ours = paths.workspace_dir("models", "default") / "own-model"
    for folder in (theirs, ours):
        shutil.copytree(tiny_bert, folder)
    editor = Actor("ed@example.com", "editor", "default", ("default",))
    with pytest.raises(ModelError):
        registry.register(editor, registry.ModelEntry("stolen", "trained", str(theirs), "classifier"))
    assert registry.register(editor, registry.ModelEntry("mine", "trained", str(ours), "classifier")).name == "mine"
