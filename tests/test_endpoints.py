"""Endpoint models (registry source `endpoint`) against a real OpenAI-compatible server in its own process.

The server is LLM Lab's own `python -m llm_lab serve MODEL --port P --api-key-env VAR` (a process on a free
port) serving the tiny test GPT-2, so the endpoint's greedy outputs can be checked against the same model
loaded here.
"""
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import uuid

import httpx
import pytest

from llm_lab import (
    access,
    audit,
    endpoints,
    generation,
    inference,
    jobs,
    registry,
    settings,
    store,
)
from llm_lab import capabilities as caps
from llm_lab.access import LOCAL, Actor
from llm_lab.bench import runner
from llm_lab.bench import suite as suites
from llm_lab.cli import main as cli
from llm_lab.errors import ModelError
from tests.conftest import ROOT, _free_port, app_test, no_exceptions

KEY_ENV = "LLM_LAB_ENDPOINT_KEY_TESTS"
# Set when this module is collected, before any session fixture starts a process: the browser test's dashboard
# (conftest's lab_server, started once per session) reads the key from its environment, like a real one.
KEY = os.environ.setdefault(KEY_ENV, "sk-test-" + secrets.token_hex(12))
PROMPTS = ["def add(a, b):", "The list type", "import os\nimport sys\n"]


@pytest.fixture(scope="session")
def endpoint_server(tiny_gpt2, tmp_path_factory):
    """A real OpenAI-compatible server process on a free port serving tiny_gpt2: base_url, model name, command."""
    home = tmp_path_factory.mktemp("serve_home")
    port = _free_port()
    command = [sys.executable, "-m", "llm_lab", "serve", str(tiny_gpt2), "--port", str(port), "--address", "127.0.0.1",
               "--api-key-env", KEY_ENV]
    env = dict(os.environ, LLM_LAB_HOME=str(home), PYTHONUNBUFFERED="1")
    log = open(home / "server.log", "wb")
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    try:
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail("the endpoint server did not start:\n" + (home / "server.log").read_text())
            time.sleep(0.2)
        models = httpx.get(f"{base}/v1/models", headers={"Authorization": f"Bearer {KEY}"}, timeout=5)
        served = models.json()["data"][0]["id"]  # the name requests give as `model`
        yield {"base_url": f"{base}/v1", "model": served, "folder": str(tiny_gpt2), "log": home / "server.log"}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def endpoint(endpoint_server):
    """`ep` (the endpoint) and `local` (the same weights, loaded here) in the registry."""
    from ui import backend

    endpoints.add(LOCAL, "ep", endpoint_server["base_url"], endpoint_server["model"], KEY_ENV)
    registry.register(LOCAL, registry.ModelEntry("local", "local", str(endpoint_server["folder"]), "causal-lm"))
    backend.clear()
    yield endpoint_server
    backend.clear()


def _texts(results) -> list[str]:
    return [r.text for r in results]


# ---------------------------------------------------------------- entries and policy
def test_an_entry_is_checked_and_keeps_only_the_key_variables_name(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ModelError, match="http:// or https://"):
        endpoints.add(LOCAL, "e1", "ftp://example.com/v1", "m")
    with pytest.raises(ModelError, match="user name or password"):
        endpoints.add(LOCAL, "e1", "https://me:secret@example.com/v1", "m")
    with pytest.raises(ModelError, match="model name the server knows"):
        endpoints.add(LOCAL, "e1", "https://example.com/v1", " ")
    with pytest.raises(ModelError, match="not an environment variable name"):  # a key pasted where its name goes
        endpoints.add(LOCAL, "e1", "https://example.com/v1", "m", "sk-abc-123")
    entry = endpoints.add(LOCAL, "e1", "https://example.com/v1/", "m", "$OPENAI_API_KEY")
    (row,) = [e for e in registry.list_models(LOCAL) if e.name == "e1"]
    assert (row.source, row.location, row.head, row.meta["model"], row.meta["api_key_env"]) == (
        "endpoint", "https://example.com/v1", "causal-lm", "m", "OPENAI_API_KEY")
    assert entry.meta == row.meta and set(row.meta) == {"model", "api_key_env", "probe"}
    # the probe could not ask (the key variable is not set here): it does not score, and says why
    assert row.meta["probe"]["scores"] is False and "OPENAI_API_KEY" in row.meta["probe"]["reason"]
    # the one capability check: text generation yes, scoring not (the probe said no), weights never
    assert caps.entry_fits(caps.GENERATE, row) and caps.default_head(row) == "causal-lm"
    assert caps.entry_fits(suites.TASK_TYPES["generation"].model_needs, row)
    for needs in [suites.TASK_TYPES[t].model_needs for t in ("language_modeling", "multiple_choice", "speed",
                                                                "classification")]:
        assert not caps.entry_fits(needs, row)


def test_hosted_server_lets_non_admins_add_only_allowed_hosts_and_key_variables(monkeypatch):
    monkeypatch.setenv("LLM_LAB_MODE", "hosted")
    editor = Actor("ed@example.com", "editor", "ed@example.com", ("ed@example.com",))
    admin = Actor("root@example.com", "admin", "ed@example.com", ("ed@example.com",))
    internal = "http://169.254.169.254/v1"
    with pytest.raises(ModelError, match="only on the hosts its operator allows .*none"):
        endpoints.add(editor, "e1", internal, "m")
    monkeypatch.setenv("LLM_LAB_ENDPOINT_ALLOW", "llm.example.com,*.corp.example")
    with pytest.raises(ModelError, match="only on the hosts its operator allows"):
        endpoints.add(editor, "e1", internal, "m")
    with pytest.raises(ModelError, match="only on the hosts"):
        endpoints.add(editor, "e1", "http://llm.example.com.evil.test/v1", "m")
    with pytest.raises(ModelError, match="starts with LLM_LAB_ENDPOINT_KEY_"):  # not another secret of the server
        endpoints.add(editor, "e1", "https://llm.example.com/v1", "m", "AWS_SECRET_ACCESS_KEY")
    endpoints.add(editor, "e1", "https://llm.example.com/v1", "m", "LLM_LAB_ENDPOINT_KEY_TEAM")
    endpoints.add(editor, "e2", "https://gpu7.corp.example:8000/v1", "m")
    endpoints.add(admin, "e3", internal, "m", "ANY_VAR")  # the operator's own decision
    viewer = Actor("val@example.com", "viewer", "ed@example.com", ("ed@example.com",))
    with pytest.raises(access.PermissionDenied, match="may not register models"):
        endpoints.add(viewer, "e4", "https://llm.example.com/v1", "m")
    assert settings.get("endpoint_allow") == ["llm.example.com", "*.corp.example"]


# ---------------------------------------------------------------- against the real server
def test_greedy_outputs_through_the_endpoint_equal_the_local_models(endpoint):
    ep = registry.load(LOCAL, "ep")
    # serve returns prompt log-probabilities with echo: the probe at registration said it scores
    assert ep.capabilities.endpoint and ep.capabilities.provides == {caps.GENERATES_TEXT, caps.SCORES_TEXT}
    local = registry.load(LOCAL, "local", device="cpu", dtype="float32")
    settings_ = generation.GenerationSettings(max_new_tokens=12)
    expected = [inference.generate(local, [p], settings_)[0] for p in PROMPTS]  # one prompt at a time
    seen = []
    got = inference.generate(ep, PROMPTS, settings_, progress=lambda done, total: seen.append((done, total)))
    assert _texts(got) == _texts(expected) and any(t.strip() for t in _texts(got))
    assert [r.new_tokens for r in got] == [r.new_tokens for r in expected]
    assert [r.stop_reason for r in got] == [r.stop_reason for r in expected]
    assert all(r.latency_s > 0 and r.mean_logprob is None and r.prompt == p for r, p in zip(got, PROMPTS))
    assert seen[-1] == (3, 3)
    # settings the OpenAI API cannot carry are said, not silently dropped
    penalised = inference.generate(ep, PROMPTS[:1], generation.suggested(max_new_tokens=4))[0]
    assert "Not applied by the endpoint" in penalised.note and "repetition_penalty 1.2" in penalised.note
    # a stop string: the server stops there, and the text stops before it
    first = expected[0].text
    cut = next((c for c in first[1:] if c.strip()), None)
    if cut:
        stopped = inference.generate(ep, PROMPTS[:1], generation.GenerationSettings(max_new_tokens=12, stop=[cut]))[0]
        assert stopped.text == first[:first.index(cut)]


def test_streamed_pieces_add_up_to_the_non_streamed_text(endpoint):
    ep = registry.load(LOCAL, "ep")
    settings_ = generation.GenerationSettings(max_new_tokens=16)
    for prompt in PROMPTS:
        items = list(inference.stream(ep, prompt, settings_))
        pieces, result = items[:-1], items[-1]
        assert all(isinstance(p, str) for p in pieces) and isinstance(result, generation.GenerationResult)
        whole = inference.generate(ep, [prompt], settings_)[0]
        assert "".join(pieces) == result.text == whole.text
        assert result.new_tokens == whole.new_tokens
        if pieces:
            assert 0 < result.first_token_s <= result.latency_s


def test_a_wrong_or_missing_key_and_an_unknown_model_say_what_is_wrong(endpoint, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-wrong-" + "x" * 16)
    with pytest.raises(ModelError) as wrong:
        inference.generate(registry.load(LOCAL, "ep"), ["hello"], generation.GenerationSettings(max_new_tokens=2))
    text = str(wrong.value)
    assert "refused the API key (HTTP 401)" in text and KEY_ENV in text and "sk-wrong" not in text, text
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ModelError, match=f"needs its API key in the environment variable {KEY_ENV}, which is not set"):
        inference.generate(registry.load(LOCAL, "ep"), ["hello"])
    monkeypatch.setenv(KEY_ENV, KEY)
    endpoints.add(LOCAL, "ep-nokey", endpoint["base_url"], endpoint["model"])
    with pytest.raises(ModelError, match=r"wants an API key \(HTTP 401\).*--api-key-env"):
        inference.generate(registry.load(LOCAL, "ep-nokey"), ["hello"])
    endpoints.add(LOCAL, "ep-nomodel", endpoint["base_url"], "no-such-model", KEY_ENV)
    with pytest.raises(ModelError, match=r"HTTP 404 \(not found\): .*no-such-model.*Check the model name"):
        inference.generate(registry.load(LOCAL, "ep-nomodel"), ["hello"])


def test_connection_refused_and_a_server_that_never_answers(monkeypatch):
    endpoints.add(LOCAL, "gone", f"http://127.0.0.1:{_free_port()}", "m")
    with pytest.raises(ModelError, match=r"Cannot connect to gone \(http://127.0.0.1:\d+/v1/completions\).*server running"):
        inference.generate(registry.load(LOCAL, "gone"), ["hello"])
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)  # the kernel accepts the connection; nobody ever answers
    try:
        monkeypatch.setenv("LLM_LAB_ENDPOINT_TIMEOUT", "1")
        endpoints.add(LOCAL, "mute", f"http://127.0.0.1:{silent.getsockname()[1]}/v1", "m")
        start = time.perf_counter()
        with pytest.raises(ModelError, match=r"mute .* did not answer within 1 s"):
            list(inference.stream(registry.load(LOCAL, "mute"), "hello"))
        assert time.perf_counter() - start < 10
    finally:
        silent.close()


def test_weight_features_refuse_an_endpoint_with_the_one_message_and_perplexity_runs(endpoint):
    from llm_lab.explain import specs
    from llm_lab.train import config as train_config

    message = "does not apply to ep, an OpenAI-compatible endpoint: it needs a model whose weights LLM Lab loads"
    entry = registry.resolve(LOCAL, "ep")
    with pytest.raises(ModelError, match="A speed task " + message):
        caps.require_entry(suites.TASK_TYPES["speed"].model_needs, entry)
    with pytest.raises(ModelError, match="The attention views " + message):
        registry.load_for(LOCAL, specs.ATTENTION_NEEDS, "ep")
    with pytest.raises(ModelError, match="is an OpenAI-compatible endpoint: it opens only as causal-lm"):
        registry.load(LOCAL, "ep", head="classifier")
    for needs in (train_config.NEEDS["pretrain"], train_config.NEEDS["causal-lm"], specs.GENERATION_NEEDS):
        with pytest.raises(ModelError, match=needs.what + " " + message):
            caps.require_entry(needs, entry)
    assert cli(["models", "quality", "ep"]) == 1  # held-out perplexity: refused, with the message
    suite = suites.parse("name: ep\ntasks:\n"
                         "  - {name: ppl, type: language_modeling, dataset: demo-docs, limit: 3}\n"
                         "  - {name: speed, type: speed, dataset: demo-docs, limit: 3}\n"
                         "  - {name: answers, type: generation, dataset: demo-prompts, limit: 3,"
                         " generation: {max_new_tokens: 4}}\n", "test")
    ppl, speed, answers = runner.run_suite(LOCAL, suite, ["ep"])
    assert ppl.status == "ok", ppl.error  # its server scores (tests/test_endpoint_scoring.py checks the numbers)
    assert speed.status == "error" and speed.error.startswith("A speed task " + message)
    assert answers.status == "ok", answers.error
    assert answers.repro.model_source == "endpoint" and answers.stats["mean_latency_s"] > 0
    # the same task on the local copy of the weights gets the same outputs (greedy, neutral settings)
    (local_answers,) = runner.run_suite(LOCAL, suites.parse(
        "name: loc\ntasks:\n  - {name: answers, type: generation, dataset: demo-prompts, limit: 3,"
        " generation: {max_new_tokens: 4}}\n", "test"), ["local"])
    assert [r["prediction"] for r in answers.per_example] == [r["prediction"] for r in local_answers.per_example]
    # an endpoint's model may change behind its URL: run again, it is asked again (not served from the cache)
    (again,) = runner.run_suite(LOCAL, suite, ["ep"])[2:]
    assert not again.cached


def test_the_key_is_never_stored_logged_or_put_in_job_params(endpoint, capsys):
    from llm_lab.compare import arena
    from llm_lab.compare import jobs as compare_jobs

    settings_ = generation.GenerationSettings(max_new_tokens=4)
    job_id = compare_jobs.submit(LOCAL, "generation", ["ep", "local"], "demo-prompts", None, 3,
                                 settings=settings_.as_dict())
    job = jobs.get(LOCAL, job_id)
    assert job["status"] == "succeeded", job
    from llm_lab.compare import saved

    comp = saved.get(LOCAL, job["result"]["comparison_id"])
    assert not comp.outputs["ep"].error and comp.outputs["ep"].info["source"] == "endpoint"
    assert [r["text"] for r in comp.outputs["ep"].rows] == [r["text"] for r in comp.outputs["local"].rows]
    battle = arena.new_battle(LOCAL, ["ep", "local"], "def add(a, b):", settings_)
    assert battle["stats"]["a"]["latency_s"] > 0 and battle["stats"]["b"]["latency_s"] > 0
    assert cli(["models", "show", "ep"]) == 0 and cli(["jobs", "show", job_id]) == 0
    printed = capsys.readouterr()
    assert KEY not in printed.out + printed.err and KEY_ENV in printed.out
    assert KEY not in str(jobs.get(LOCAL, job_id)["params"])
    assert all(KEY not in str(e) for e in audit.entries(LOCAL))
    store.reset_connections()  # the write-ahead log, the queue and every file under LLM_LAB_HOME, byte for byte
    from llm_lab import paths

    home = paths.home()
    files = [p for p in home.rglob("*") if p.is_file()]
    assert any(p.name == "llm_lab.db" for p in files)
    assert not [p for p in files if KEY.encode() in p.read_bytes()]
    assert KEY.encode() not in endpoint["log"].read_bytes()


def test_cli_adds_an_endpoint_and_checks_it(endpoint_server, capsys):
    assert cli(["models", "add-endpoint", "cli-ep", "--base-url", endpoint_server["base_url"], "--model",
                endpoint_server["model"], "--api-key-env", KEY_ENV, "--check"]) == 0
    out = capsys.readouterr().out
    assert f"registered cli-ep: {endpoint_server['model']} at {endpoint_server['base_url']} (key from ${KEY_ENV})" in out
    assert "probe: cli-ep scores (loglikelihood, perplexity, multiple choice)" in out
    assert re.search(r"check: cli-ep answered in \d+ ms", out) and KEY not in out
    assert cli(["models", "add-endpoint", "bad", "--base-url", "file:///etc", "--model", "m"]) == 1
    assert "http:// or https://" in capsys.readouterr().err
    # a check that fails registers nothing
    assert cli(["models", "add-endpoint", "nope", "--base-url", endpoint_server["base_url"], "--model", "nope",
                "--api-key-env", KEY_ENV, "--check"]) == 1
    err = capsys.readouterr().err
    assert "HTTP 404 (not found)" in err and ".." not in err  # the server's sentence, one full stop
    assert "nope" not in [e.name for e in registry.list_models(LOCAL)]


# ---------------------------------------------------------------- pages
def test_models_page_adds_an_endpoint_and_shows_its_card(endpoint_server):
    at = app_test("views/models.py").run()
    no_exceptions(at)
    at.text_input(key="ep_name").set_value("page-ep")
    at.text_input(key="ep_url").set_value(endpoint_server["base_url"])
    at.text_input(key="ep_model").set_value(endpoint_server["model"])
    at.text_input(key="ep_env").set_value(KEY_ENV)
    at.button(key="ep_add").click().run()
    no_exceptions(at)
    assert any("Added page-ep" in s.value for s in at.success), [e.value for e in at.error]
    assert any("page-ep scores" in s.value and "returns prompt log-probabilities" in s.value for s in at.success)
    assert registry.resolve(LOCAL, "page-ep").source == "endpoint"
    registry_probe_time = registry.resolve(LOCAL, "page-ep").meta["probe"]["checked_at"]
    at.selectbox(key="m_name").set_value("page-ep").run()
    at.button(key="m_load").click().run()
    no_exceptions(at)
    assert "OpenAI-compatible endpoint" in " ".join(h.value for h in at.subheader)
    at.button(key="ep_check").click().run()
    assert any("It answered in" in s.value for s in at.success), [e.value for e in at.error]
    at.button(key="ep_probe").click().run()  # probe again: the verdict is stored anew
    no_exceptions(at)
    assert any("page-ep scores" in s.value for s in at.success)
    assert registry.resolve(LOCAL, "page-ep").meta["probe"]["checked_at"] > registry_probe_time


def test_compare_page_runs_a_local_model_against_an_endpoint(endpoint):
    at = app_test("views/compare.py").run()
    no_exceptions(at)
    at.multiselect(key="c_models_generation").set_value(["local", "ep"])
    at.number_input(key="c_rep").set_value(1.0)  # settings an endpoint can carry: plain greedy
    at.number_input(key="c_ngram").set_value(0)
    at.number_input(key="c_max").set_value(8)
    at.text_area(key="c_texts_generation").set_value("def add(a, b):\nThe list type")
    at.button(key="c_run").click().run()
    no_exceptions(at)
    from llm_lab.compare import saved

    cid = at.query_params["comparison"]
    comp = saved.get(LOCAL, cid[0] if isinstance(cid, list) else cid)
    assert comp.models == ["local", "ep"] and not comp.outputs["ep"].error, comp.outputs["ep"].error
    assert [r["text"] for r in comp.outputs["ep"].rows] == [r["text"] for r in comp.outputs["local"].rows]
    assert all(r["latency_s"] > 0 and r["first_token_s"] is not None for r in comp.outputs["ep"].rows)
    assert comp.summary["ep"]["tokens_per_s"] > 0
    assert "100% of the words in common" in " ".join(str(c.value) for c in at.caption)


# ---------------------------------------------------------------- one real browser
@pytest.mark.browser
def test_browser_compares_a_local_model_with_an_endpoint(page, lab_server, endpoint_server, monkeypatch):
    from tests.conftest import assert_no_exception_box, open_page, screenshot, wait_for
    from tests.test_compare_browser import offered, pick

    monkeypatch.setenv("LLM_LAB_HOME", str(lab_server["home"]))
    store.reset_connections()
    tag = uuid.uuid4().hex[:6]
    local, ep = f"eplocal{tag}", f"epremote{tag}"
    registry.register(LOCAL, registry.ModelEntry(local, "local", endpoint_server["folder"], "causal-lm"))
    endpoints.add(LOCAL, ep, endpoint_server["base_url"], endpoint_server["model"], KEY_ENV)
    try:
        def listed() -> bool:  # the page's model list is cached for a few seconds
            open_page(page, lab_server, "compare")
            return all(offered(page, "Models (two to four)", n) for n in (local, ep))

        wait_for(listed, timeout=60)
        pick(page, "Models (two to four)", [local, ep])
        page.locator("textarea").first.fill("def add(a, b):\nThe list type")
        page.get_by_text("References, one per line").click()  # blur: the text area sends its value
        from tests.conftest import wait_idle

        wait_idle(page)
        page.locator(".st-key-c_run button").click()
        page.wait_for_url(re.compile(r"comparison=\w+"), timeout=120_000)
        wait_idle(page)
        main = page.locator("[data-testid='stMain']")
        wait_for(lambda: "tokens / s" in main.inner_text() and "Word-level differences" in main.inner_text(), timeout=60)
        wait_idle(page)
        assert_no_exception_box(page)
        screenshot(page, "compare-local-vs-endpoint")
        from llm_lab.compare import saved

        comp = saved.get(LOCAL, re.search(r"comparison=(\w+)", page.url).group(1))
        assert comp.models == [local, ep] and not comp.outputs[ep].error, comp.outputs[ep].error
        assert len(comp.outputs[ep].rows) == 2 and all(r["latency_s"] > 0 for r in comp.outputs[ep].rows)
        body = main.inner_text()
        assert ep in body and KEY not in body
        assert KEY.encode() not in (lab_server["home"] / "streamlit.log").read_bytes()
    finally:
        store.reset_connections()


def test_an_arena_battle_with_a_failing_endpoint_does_not_tell_who_it_was(endpoint):
    """The error of a side that could not answer named the endpoint's URL, host and port: in a blind battle
    that says which model it was."""
    from llm_lab.compare import arena

    port = _free_port()
    endpoints.add(LOCAL, "gone-ep", f"http://127.0.0.1:{port}/v1", "secret-model-name")
    for seed in range(8):  # whichever side it is drawn on
        import random

        with pytest.raises(arena.ArenaError) as failed:
            list(arena.battle_stream(LOCAL, ["local", "gone-ep"], "def add(a, b):", rng=random.Random(seed)))
        message = str(failed.value)
        assert "could not answer" in message and "Cannot connect" in message
        for tell in ("gone-ep", str(port), "127.0.0.1", "secret-model-name"):
            assert tell not in message, (tell, message)
