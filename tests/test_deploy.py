"""The team server's files: Dockerfile, docker-compose.yml, the examples, the README's settings table; the worker
in a container of its own (LLM_LAB_EXTERNAL_WORKER); `python -m llm_lab backup`; the entrypoint's refusal."""
import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import tomllib
from pathlib import Path

import pytest
import yaml

from llm_lab import accounts, cli, hosting, jobs, settings, store
from llm_lab.access import LOCAL
from tests.conftest import ROOT, wait_for


# ---------------------------------------------------------------- Dockerfile
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments left out."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def instructions(name: str) -> list[str]:
    return [rest for word, rest in dockerfile() if word == name]


def env_of_image() -> dict[str, str]:
    env = {}
    for rest in instructions("ENV"):
        env.update(dict(re.findall(r"(\w+)=(\S+)", rest)))
    return env


def test_dockerfile_runs_as_a_user_without_rights():
    users = instructions("USER")
    assert users, "the image must not run as root"
    assert users[-1] not in ("root", "0") and not users[-1].startswith("0:")
    words = [word for word, _ in dockerfile()]
    assert words.index("USER") > words.index("RUN") and "RUN" not in words[words.index("USER"):], \
        "everything after USER runs as that user: the installs come before it"


def test_dockerfile_checks_streamlit_health_and_keeps_llm_lab_home_on_a_volume():
    check = " ".join(instructions("HEALTHCHECK"))
    assert "/_stcore/health" in check and "CMD" in check
    env = env_of_image()
    home = env["LLM_LAB_HOME"]
    volumes = [v for rest in instructions("VOLUME") for v in re.findall(r"[\w/.-]+", rest)]
    assert home in volumes
    assert env["LLM_LAB_MODE"] == "hosted"
    assert env["STREAMLIT_SERVER_ADDRESS"] == "0.0.0.0"  # config.toml's 127.0.0.1 is for a laptop
    assert env["HF_HOME"].startswith(home + "/")  # Hub downloads persist on the volume


def test_dockerfile_entrypoint_is_the_dashboard_command_that_refuses_an_unconfigured_server():
    entry = json.loads(instructions("ENTRYPOINT")[-1]) + json.loads(instructions("CMD")[-1])
    assert entry == ["python", "-m", "llm_lab", "dashboard"]


def test_dockerfile_installs_the_cpu_torch_unless_told_otherwise():
    args = dict(a.partition("=")[::2] for a in instructions("ARG"))
    assert args["TORCH_VARIANT"] == "cpu"
    assert args["TORCH_INDEX"] == "https://download.pytorch.org/whl/${TORCH_VARIANT}"
    pin = re.search(r"^torch==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M).group(1)
    assert args["TORCH_VERSION"] == pin
    assert any('--index-url "$TORCH_INDEX"' in r for r in instructions("RUN"))


def test_dockerignore_keeps_secrets_and_history_out_of_the_image():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for name in ("secrets.toml", ".streamlit/secrets.toml", "lab.env", ".git"):
        assert name in ignored


# ---------------------------------------------------------------- docker-compose.yml
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def mounts(service: dict) -> list[dict]:
    """The service's volumes in the long form."""
    found = []
    for m in service.get("volumes", []):
        if isinstance(m, str):
            source, target, *mode = m.split(":")
            m = {"source": source, "target": target, "read_only": mode == ["ro"]}
        found.append(m)
    return found


def test_compose_runs_the_dashboard_and_the_worker_on_one_volume():
    spec = compose()
    dashboard, worker = spec["services"]["dashboard"], spec["services"]["worker"]
    assert dashboard["command"] == ["dashboard"] and worker["command"] == ["worker"]
    home = env_of_image()["LLM_LAB_HOME"]
    shared = None
    for service in (dashboard, worker):
        assert service["environment"]["LLM_LAB_HOME"] == home
        assert service["environment"]["LLM_LAB_MODE"] == "hosted"
        assert service["environment"]["LLM_LAB_EXTERNAL_WORKER"] == "1"  # the dashboard starts no worker
        (volume,) = [m["source"] for m in mounts(service) if m["target"] == home]
        assert shared in (None, volume)
        shared = volume
    assert shared in spec["volumes"], "LLM_LAB_HOME is a named volume"
    assert dashboard["image"] == worker["image"]


def test_compose_publishes_the_dashboard_to_this_host_only_and_mounts_the_secrets_read_only():
    dashboard = compose()["services"]["dashboard"]
    assert dashboard["environment"]["STREAMLIT_SERVER_ADDRESS"] == "0.0.0.0"
    assert all(str(p).startswith("127.0.0.1:") for p in dashboard["ports"])
    (secret,) = [m for m in mounts(dashboard) if m["target"].endswith("/.streamlit/secrets.toml")]
    assert secret["read_only"] is True and secret["source"] == "./secrets.toml"
    assert not secret.get("bind", {}).get("create_host_path", False)


def test_compose_worker_checks_its_own_health():
    check = compose()["services"]["worker"]["healthcheck"]["test"]
    assert "worker_alive" in " ".join(check) and "/_stcore/health" not in " ".join(check)


# ---------------------------------------------------------------- README and the examples
def readme() -> str:
    return (ROOT / "README.md").read_text()


def hosting_section() -> str:
    text = readme()
    start = text.index("\n## Hosting for a team\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def settings_table() -> dict[str, tuple[str, str, str]]:
    """setting -> (variable, default, meaning) from the README's "Server settings" table."""
    section = hosting_section()
    table = section[section.index("| setting | variable | default | meaning |"):]
    rows = {}
    for line in table.splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        name, variable, default, meaning = cells
        rows[name.strip("`")] = (variable.strip("`"), default.strip("`"), meaning)
    return rows


def test_readme_keeps_the_laptop_setup_and_has_the_section_the_refusal_points_to():
    assert "## Setup: two commands" in readme()
    assert "streamlit run app.py" in readme() and "python -m pytest" in readme()
    assert '"Hosting for a team"' in hosting.HOW_TO
    section = hosting_section()
    assert "docker compose up" in section
    for topic in ("TLS", "websocket", "cookie_secret", "XSRF", "server.address", "sticky", "backup",
                  "LLM_LAB_TRUSTED_PROXY_HEADER", "oauth2-proxy", "[auth.keycloak]", "LLM_LAB_EXTERNAL_WORKER"):
        assert topic in section, topic


def test_readme_settings_table_lists_every_setting_with_its_variable_and_default():
    rows = settings_table()
    assert list(rows) == list(settings.DEFAULTS), "the table lists every setting, in settings.DEFAULTS' order"
    for name, (variable, default, meaning) in rows.items():
        assert variable == "LLM_LAB_" + name.upper()
        assert default == json.dumps(settings.DEFAULTS[name]), name
        assert meaning, name


def test_lab_env_example_names_every_setting_with_a_value_that_parses():
    lines = (ROOT / "lab.env.example").read_text().splitlines()
    found = dict(re.match(r"# (LLM_LAB_\w+)=(.*)$", l).groups() for l in lines if re.match(r"# LLM_LAB_\w+=", l))
    for name in settings.DEFAULTS:
        value = found["LLM_LAB_" + name.upper()]
        settings.parse(name, value.strip("'"))


def test_secrets_example_passes_the_check_once_the_cookie_secret_is_set(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_LAB_MODE", "hosted")
    monkeypatch.delenv("LLM_LAB_TRUSTED_PROXY_HEADER", raising=False)
    example = (ROOT / "secrets.toml.example").read_text()
    assert hosting.problems(tomllib.loads(example)) == [
        f"[auth] cookie_secret is missing or shorter than {hosting.MIN_COOKIE_SECRET} characters."]
    ready = example.replace('cookie_secret = ""', f'cookie_secret = "{secrets.token_urlsafe(32)}"')
    with_scope = ready.replace("# client_kwargs", "client_kwargs")
    assert tomllib.loads(with_scope)["auth"]["client_kwargs"]["scope"].endswith("groups")
    assert hosting.problems(tomllib.loads(with_scope)) == []  # client_kwargs is not a provider
    assert list(hosting.providers(tomllib.loads(with_scope)["auth"])) == ["default"]
    named = re.sub(r"^(client_id|client_secret|server_metadata_url) = .*$", "", ready, flags=re.M)
    named = re.sub(r"^# (\[auth\.|client_id|client_secret|server_metadata_url)", r"\1", named, flags=re.M)
    assert list(hosting.providers(tomllib.loads(named)["auth"])) == ["keycloak", "google"]
    assert hosting.problems(tomllib.loads(named)) == []


def test_the_entrypoint_refuses_a_hosted_server_without_sign_in_and_starts_a_configured_one(tmp_path, monkeypatch,
                                                                                         capsys):
    monkeypatch.setenv("LLM_LAB_MODE", "hosted")
    monkeypatch.delenv("LLM_LAB_TRUSTED_PROXY_HEADER", raising=False)
    monkeypatch.setenv("LLM_LAB_SECRETS_FILE", str(tmp_path / "missing.toml"))
    assert cli.main(["serve", "--check"]) == 2
    assert "LLM Lab will not start in hosted mode" in capsys.readouterr().err
    good = tmp_path / "secrets.toml"
    good.write_text((ROOT / "secrets.toml.example").read_text().replace(
        'cookie_secret = ""', f'cookie_secret = "{secrets.token_urlsafe(32)}"'))
    monkeypatch.setenv("LLM_LAB_SECRETS_FILE", str(good))
    assert cli.main(["dashboard", "--check"]) == 0
    assert "mode: hosted; sign-in: OpenID Connect" in capsys.readouterr().out
    assert cli.main(["serve", "--check"]) == 0  # `serve` without a model: the dashboard, for older deployments
    assert "mode: hosted; sign-in: OpenID Connect" in capsys.readouterr().out


# ---------------------------------------------------------------- the worker in a container of its own
@pytest.fixture
def external_worker(monkeypatch):
    monkeypatch.setenv("LLM_LAB_EXTERNAL_WORKER", "1")
    monkeypatch.setenv("LLM_LAB_JOBS_INLINE", "0")


def hold_worker_lock():
    """What the worker container does: hold LLM_LAB_HOME/worker.lock (another open file, as another process)."""
    handle = open(jobs._lock_path(), "a+")
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return handle


def test_external_worker_the_dashboard_never_starts_one(external_worker, monkeypatch, capsys):
    monkeypatch.setattr(jobs.subprocess, "Popen", lambda *a, **k: pytest.fail("started a worker"))
    job_id = jobs.submit(LOCAL, "llm_lab.jobs:count", {"steps": 1, "delay": 0}, "waits for the worker")
    assert jobs.get(LOCAL, job_id)["status"] == "queued"
    assert "no worker holds" in capsys.readouterr().err  # said in `docker compose logs dashboard`
    with hold_worker_lock():
        assert jobs.ensure_worker() is False
        assert capsys.readouterr().err == ""


def test_external_worker_a_running_job_lives_while_the_worker_holds_its_lock(external_worker):
    job_id = jobs.submit(LOCAL, "llm_lab.jobs:count", {"steps": 1, "delay": 0}, "runs in the worker container")
    # the pid the worker recorded is one of its container: here it names no process, or another one
    store.execute("UPDATE jobs SET status='running', worker_pid=? WHERE id=?", (2**22 + 12345, job_id))
    with hold_worker_lock():
        jobs.reconcile()
        assert jobs.get(LOCAL, job_id)["status"] == "running"
    jobs.reconcile()  # the worker container stopped: its lock went with it
    assert jobs.get(LOCAL, job_id)["status"] == "interrupted"


def test_external_worker_that_starts_marks_what_its_previous_life_left_running(external_worker):
    job_id = jobs.submit(LOCAL, "llm_lab.jobs:count", {"steps": 1, "delay": 0}, "left by a restarted container")
    # a restarted container's worker gets the same small pid again: the pid alone would say "alive"
    store.execute("UPDATE jobs SET status='running', worker_pid=? WHERE id=?", (os.getpid(), job_id))
    with hold_worker_lock():
        jobs.reconcile()
        assert jobs.get(LOCAL, job_id)["status"] == "running"
        jobs.reconcile(worker_starting=True)
        assert jobs.get(LOCAL, job_id)["status"] == "interrupted"


def _pid_namespaces_work() -> bool:
    if not shutil.which("unshare"):
        return False
    try:
        return subprocess.run(["unshare", "-p", "-f", "--mount-proc", "true"], capture_output=True,
                              timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not _pid_namespaces_work(), reason="needs unshare and the right to make a pid namespace (root)")
def test_external_worker_in_another_pid_namespace_runs_jobs_the_dashboard_sees(external_worker):
    """docker compose, without Docker: the worker in a pid namespace of its own, sharing LLM_LAB_HOME."""
    free = next(p for p in range(40, 4000) if not Path(f"/proc/{p}").exists())
    burn = max(0, free - 3)  # pids 1 (sh), 2 (seq), then one per /bin/true: the worker's pid is free here
    worker = subprocess.Popen(
        ["unshare", "-p", "-f", "--mount-proc", "sh", "-c",
         f"for i in $(seq 1 {burn}); do /bin/true; done; {sys.executable} -m llm_lab worker; echo exited"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(jobs.worker_alive, timeout=60)
        job_id = jobs.submit(LOCAL, "llm_lab.jobs:count", {"steps": 300, "delay": 0.05}, "in the worker container")
        wait_for(lambda: jobs.get(LOCAL, job_id)["done"] >= 3, timeout=60)
        for _ in range(5):  # every read reconciles: the job stays running, whatever its pid means here
            assert jobs.get(LOCAL, job_id)["status"] == "running"
            time.sleep(0.1)
        os.killpg(worker.pid, signal.SIGKILL)  # the container stops
        worker.wait(10)
        assert wait_for(lambda: jobs.get(LOCAL, job_id)["status"] == "interrupted", timeout=30)
    finally:
        try:
            os.killpg(worker.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# ---------------------------------------------------------------- backups
def test_backup_is_restorable_and_leaves_out_side_files_and_the_hub_cache(tmp_path, monkeypatch, capsys):
    job_id = jobs.submit(LOCAL, "llm_lab.jobs:count", {"steps": 2, "delay": 0}, "before the backup")
    home = jobs.paths.home()
    (home / "huggingface").mkdir()
    (home / "huggingface" / "weights.bin").write_bytes(b"0" * 100)
    assert (home / "llm_lab.db-wal").exists()  # the store is in WAL mode: a plain copy could miss pages
    out = tmp_path / "backup.tar.gz"
    assert cli.main(["backup", "--out", str(out)]) == 0
    names = tarfile.open(out).getnames()
    assert "llm_lab.db" in names and f"jobs/{job_id}/checkpoint.txt" in names
    assert not [n for n in names if n.endswith(("-wal", "-shm")) or n.startswith("huggingface") or "worker." in n]
    assert cli.main(["backup", "--with-cache", "--out", str(tmp_path / "all.tar.gz")]) == 0
    assert "huggingface/weights.bin" in tarfile.open(tmp_path / "all.tar.gz").getnames()

    restored = tmp_path / "restored"
    tarfile.open(out).extractall(restored, filter="data")
    monkeypatch.setenv("LLM_LAB_HOME", str(restored))
    store.reset_connections()
    assert jobs.get(LOCAL, job_id)["result"] == {"counted": 2, "started_at_step": 0}

    capsys.readouterr()
    accounts.add_user(LOCAL, "viewer@example.com", "viewer")
    assert cli.main(["--as", "viewer@example.com", "backup", "--out", str(tmp_path / "no.tar.gz")]) == 1
    assert not (tmp_path / "no.tar.gz").exists()
