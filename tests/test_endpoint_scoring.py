"""Endpoints that score: the probe at registration, loglikelihood / perplexity / multiple choice over HTTP, chat
through the server's /v1/chat/completions, and the multiple-choice task's acc_norm as lm-evaluation-harness has it.

Two real servers: LLM Lab's own `python -m llm_lab serve` on the tiny GPT-2 (its echo + logprobs answers are
checked against the same weights loaded here and against transformers directly), and a tiny FastAPI app run by
uvicorn in this process that answers completions the way servers that do not score do (no logprobs, no echo,
logprobs all 0, logprobs that stop after the probe).
"""
import json
import math
import os
import re
import threading
import time
from contextlib import contextmanager

import httpx
import numpy as np
import pytest
import torch

from llm_lab import capabilities as caps
from llm_lab import data, endpoints, generation, inference, registry
from llm_lab.access import LOCAL
from llm_lab.bench import runner
from llm_lab.bench import suite as suites
from llm_lab.bench.tasks import multiple_choice
from llm_lab.cli import main as cli
from llm_lab.errors import ModelError
from tests.conftest import _free_port
from tests.test_serve import KEY, KEY_ENV, _metric, _start, _stop

PAIRS = [("The list type is", " mutable"), ("A dictionary maps keys to", " values"), ("import", " os"),
         ("def main(", "):"), ("Strings are", " immutable objects in Python"), ("The with statement ", "closes files")]
TEXTS = ["The list type is a mutable sequence.", "Exceptions are raised when something goes wrong.",
         "import os\nimport sys\n", "Lambda expressions make small anonymous functions."]


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_gpt2):
    """`python -m llm_lab serve` on the tiny GPT-2 (its key from KEY_ENV), and the model name it answers to."""
    server = _start(tmp_path_factory, "tiny-lm", tiny_gpt2, "causal-lm", "--api-key-env", KEY_ENV)
    server["client"] = httpx.Client(base_url=server["url"], headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
    server["base_url"] = server["url"] + "/v1"
    server["folder"] = str(tiny_gpt2)
    yield server
    server["client"].close()
    _stop(server)


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


@pytest.fixture
def models(served, key):
    """`ep` (the served model, probed) and `local` (the same weights, loaded here) in the registry."""
    entry = endpoints.add(LOCAL, "ep", served["base_url"], served["name"], KEY_ENV)
    registry.register(LOCAL, registry.ModelEntry("local", "local", served["folder"], "causal-lm"))
    return entry


# ---------------------------------------------------------------- a server that does not score
def _pieces(text: str) -> list[str]:
    """The fake server's "tokens": words with the spaces before them."""
    return re.findall(r"\s*\S+|\s+", text)


def _logprobs(tokens: list[str], value) -> dict:
    offsets = np.cumsum([0] + [len(t) for t in tokens[:-1]]).tolist()
    values = [None] + [value(i) for i in range(1, len(tokens))]
    return {"tokens": tokens, "token_logprobs": values, "text_offset": offsets,
            "top_logprobs": [None] + [{t: v} for t, v in zip(tokens[1:], values[1:])]}


def _answer(model: str, prompt: str) -> dict:
    """How each kind of server that does not score answers an echo + logprobs request."""
    if model == "no-echo":  # llama.cpp: echo ignored, logprobs of the new token only
        choice = {"text": " x", "logprobs": _logprobs([" x"], lambda i: -1.0)}
    elif model == "zeros":  # a server that fills the field without computing it
        choice = {"text": prompt + " x", "logprobs": _logprobs(_pieces(prompt) + [" x"], lambda i: 0.0)}
    elif model == "flaky" and prompt == endpoints.PROBE_TEXT:  # scores the probe, then stops
        choice = {"text": prompt + " x", "logprobs": _logprobs(_pieces(prompt) + [" x"], lambda i: -1.5 - i / 10)}
    else:  # "no-logprobs" (Ollama): echo honoured, the logprobs field dropped
        choice = {"text": prompt + " x", "logprobs": None}
    return {"id": "cmpl-1", "object": "text_completion", "model": model,
            "choices": [dict(choice, index=0, finish_reason="length")],
            "usage": {"prompt_tokens": len(_pieces(prompt)), "completion_tokens": 1,
                      "total_tokens": len(_pieces(prompt)) + 1}}


@contextmanager
def _uvicorn(app):
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=_free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True, name="fake-openai-server")
    thread.start()
    deadline = time.time() + 30
    while not server.started:  # uvicorn sets it once it listens
        assert thread.is_alive() and time.time() < deadline, "the fake server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}/v1"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def dropping():
    """A real HTTP server (FastAPI under uvicorn) whose completions carry no usable prompt log-probabilities."""
    from fastapi import FastAPI, Request

    app = FastAPI()
    app.state.requests = []

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = await request.json()
        app.state.requests.append(body)
        return _answer(body["model"], body["prompt"])

    with _uvicorn(app) as url:
        yield {"url": url, "requests": app.state.requests}


# ---------------------------------------------------------------- the probe
def test_the_probe_says_yes_for_serve_and_the_endpoint_scores(models, served):
    probe = models.meta["probe"]
    assert probe["scores"] is True and probe["top_logprobs"] is True, probe
    assert "echoed the" in probe["reason"] and probe["tokens"] > 5
    stored = registry.resolve(LOCAL, "ep")
    assert stored.meta["probe"] == probe and set(stored.meta) == {"model", "api_key_env", "probe"}
    ep = registry.load(LOCAL, "ep")
    assert ep.capabilities.provides == {caps.GENERATES_TEXT, caps.SCORES_TEXT}
    assert caps.compatible(caps.SCORE, ep) and caps.entry_fits(caps.SCORE, stored)
    for task in ("multiple_choice", "language_modeling"):
        assert caps.entry_fits(suites.TASK_TYPES[task].model_needs, stored), task
    for task in ("speed", "classification"):  # still nothing that needs weights here
        assert not caps.entry_fits(suites.TASK_TYPES[task].model_needs, stored), task


@pytest.mark.parametrize("model, reason", [
    ("no-logprobs", "its answer carries no logprobs"),
    ("no-echo", "it did not echo the prompt"),
    ("zeros", "its prompt log-probabilities are all 0"),
])
def test_the_probe_says_no_with_the_reason_for_servers_that_drop_or_fake_logprobs(dropping, model, reason):
    entry = endpoints.add(LOCAL, f"fake-{model}", dropping["url"], model)
    sent = dropping["requests"][-1]
    assert sent == {"model": model, "prompt": endpoints.PROBE_TEXT, "max_tokens": 1, "temperature": 0.0, "echo": True,
                    "logprobs": 1}  # what lm-eval's completions client sends to score
    assert entry.meta["probe"]["scores"] is False and reason in entry.meta["probe"]["reason"]
    loaded = registry.load(LOCAL, f"fake-{model}")
    assert loaded.capabilities.provides == {caps.GENERATES_TEXT}
    expected = (f"does not apply to fake-{model}, an OpenAI-compatible endpoint: the server at {dropping['url']} "
                f"did not return prompt log-probabilities with echo: {reason}")
    with pytest.raises(ModelError, match=re.escape(expected)):
        inference.loglikelihood(loaded, PAIRS[:1])
    with pytest.raises(ModelError, match=re.escape("A multiple_choice task " + expected)):
        caps.require_entry(suites.TASK_TYPES["multiple_choice"].model_needs, registry.resolve(LOCAL, f"fake-{model}"))
    assert caps.compatible(caps.GENERATE, loaded)  # it still generates


def test_a_server_that_stops_returning_logprobs_mid_run_fails_the_run_saying_so(dropping):
    endpoints.add(LOCAL, "flaky", dropping["url"], "flaky")
    loaded = registry.load(LOCAL, "flaky")
    assert caps.compatible(caps.SCORE, loaded)  # the probe believed it
    with pytest.raises(ModelError, match=r"flaky \(.*/v1/completions\) stopped returning prompt log-probabilities with "
                                         r"echo \(request \d of 6\): its answer carries no logprobs.*models probe flaky"):
        inference.loglikelihood(loaded, PAIRS)
    # it still answers the probe's text: the check on every answer is what catches it
    assert endpoints.probe_again(LOCAL, "flaky")["scores"] is True


def test_an_endpoint_added_without_a_probe_says_so_and_is_probed_on_request(served, key, capsys):
    assert cli(["models", "add-endpoint", "later", "--base-url", served["base_url"], "--model", served["name"],
                "--api-key-env", KEY_ENV, "--no-probe"]) == 0
    assert "probe:" not in capsys.readouterr().out
    with pytest.raises(ModelError, match=r"the server at .* did not return prompt log-probabilities with echo: it has "
                                         r"not been probed.*models probe later"):
        caps.require(caps.SCORE, registry.load(LOCAL, "later"))
    assert cli(["models", "probe", "later"]) == 0
    assert re.search(r"probe: later scores \(loglikelihood, perplexity, multiple choice\): it echoed the \d+-token",
                     capsys.readouterr().out)
    assert caps.compatible(caps.SCORE, registry.load(LOCAL, "later"))
    assert cli(["models", "probe", "local-nothing"]) == 1  # not a model
    assert cli(["models", "add-endpoint", "cli-ep", "--base-url", served["base_url"], "--model", served["name"],
                "--api-key-env", KEY_ENV]) == 0
    assert "probe: cli-ep scores" in capsys.readouterr().out


def test_the_probe_never_contacts_a_host_the_operator_does_not_allow(dropping, monkeypatch):
    from llm_lab.access import Actor

    monkeypatch.setenv("LLM_LAB_MODE", "hosted")
    editor = Actor("ed@example.com", "editor", "ed@example.com", ("ed@example.com",))
    before = len(dropping["requests"])
    with pytest.raises(ModelError, match="only on the hosts its operator allows"):
        endpoints.add(editor, "sneaky", dropping["url"], "no-logprobs")
    assert len(dropping["requests"]) == before


# ---------------------------------------------------------------- scoring over HTTP
def _direct(folder, text_ids_pairs):
    """Per (context ids, continuation ids): log P(continuation | context) and greedy, with transformers itself."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    out = []
    for ctx, cont in text_ids_pairs:
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ctx + cont])).logits[0].float(), -1)
        rows = logp[len(ctx) - 1:len(ctx) - 1 + len(cont)]
        out.append((float(sum(rows[k, c] for k, c in enumerate(cont))), bool((rows.argmax(-1) == torch.tensor(cont)).all())))
    return out


def test_loglikelihood_over_http_equals_the_local_model_and_transformers(models, served):
    from transformers import AutoTokenizer

    ep, local = registry.load(LOCAL, "ep"), registry.load(LOCAL, "local", device="cpu", dtype="float32")
    got, expected = inference.loglikelihood(ep, PAIRS), inference.loglikelihood(local, PAIRS)
    tok = AutoTokenizer.from_pretrained(served["folder"])
    direct = _direct(served["folder"], [inference.encode_pair(tok, c, x) for c, x in PAIRS])
    for g, e, (lp, greedy) in zip(got, expected, direct):
        assert g.logprob == pytest.approx(e.logprob, abs=1e-4) == pytest.approx(lp, abs=1e-4)
        assert g.greedy == e.greedy == greedy and g.tokens == e.tokens
    # greedy is decided, not always false: a continuation that is the model's own greedy token
    prompt = "The list type is"
    word = inference.generate(local, [prompt], generation.GenerationSettings(max_new_tokens=1))[0].text
    (mine,) = inference.loglikelihood(ep, [(prompt, word)])
    assert mine.greedy and mine.tokens == 1


def test_perplexity_over_http_counts_every_token_after_the_first(models, served):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ep = registry.load(LOCAL, "ep")
    rolled = inference.loglikelihood_rolling(ep, TEXTS + [""])
    tok = AutoTokenizer.from_pretrained(served["folder"])
    model = AutoModelForCausalLM.from_pretrained(served["folder"]).eval()
    for text, r in zip(TEXTS, rolled):
        ids = tok(text)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
        direct = [float(logp[k - 1, ids[k]]) for k in range(1, len(ids))]  # nothing before the first token
        assert len(r.logprobs) == len(direct) and r.unscored == 1
        assert r.logprob == pytest.approx(sum(direct), abs=1e-4)
        assert r.unscored_chars == len(tok.decode(ids[:1]))
    assert rolled[-1].logprobs == [] and inference.perplexity(rolled) == pytest.approx(
        math.exp(-sum(r.logprob for r in rolled) / sum(len(r.logprobs) for r in rolled)))


# ---------------------------------------------------------------- the tasks on an endpoint
MC_ITEMS = [  # options of unequal lengths, some not ASCII: characters and bytes differ
    ("The capital of France is", ["Paris", "Lyon", "Marseille-sur-Mer", "Nîmes"], 0),
    ("A cold drink is", ["iced tea", "té", "glühwein", "water"], 3),
    ("import", ["os", "sys", "itertools", "json"], 1),
    ("The list type is", ["mutable", "immutable", "ordered", "ünordered"], 0),
    ("Café au lait is", ["coffee", "tea", "crème brûlée", "milk"], 0),
    ("def add(a, b): return", ["a + b", "a - b", "None", "a * b * 1"], 0),
    ("Strings are", ["immutable", "mutable", "bytes", "naïve"], 1),  # acc_norm: right by characters, not by bytes
    ("The for loop iterates over", ["an iterable", "nothing", "a number", "é"], 0),
]


@pytest.fixture
def mc_data(tmp_path):
    rows = [{"text": q, "choices": "|".join(opts), "label": opts[gold]} for q, opts, gold in MC_ITEMS]
    path = tmp_path / "mc.jsonl"
    path.write_text("\n".join(json.dumps({"question": q, "choices": opts, "gold": gold}, ensure_ascii=False)
                              for q, opts, gold in MC_ITEMS) + "\n")
    raw = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode()
    data.import_dataset(LOCAL, "mc-items", "mc.jsonl", raw, {"text": "text", "label": "label", "text_pair": "choices"},
                        data.Recipe(train=1.0, validation=0.0))
    return path


MC_SUITE = """name: mc
tasks:
  - name: choice
    type: multiple_choice
    dataset: mc-items
    prompt: "{text}"
    columns: {text: text, label: label, choices: text_pair}
    choices_sep: "|"
"""


def test_multiple_choice_and_language_modelling_tasks_on_the_endpoint_equal_the_local_models(models, mc_data, served):
    suite = suites.parse(MC_SUITE + "  - {name: ppl, type: language_modeling, dataset: demo-docs, limit: 4}\n", "test")
    mc_ep, ppl_ep = runner.run_suite(LOCAL, suite, ["ep"])
    mc_local, _ = runner.run_suite(LOCAL, suite, ["local"])
    assert mc_ep.status == "ok" and ppl_ep.status == "ok", (mc_ep.error, ppl_ep.error)
    assert mc_ep.repro.model_source == "endpoint" and mc_ep.stats["requests"] == sum(len(o) for _, o, _ in MC_ITEMS)
    for e, loc in zip(mc_ep.per_example, mc_local.per_example):
        assert e["loglik"].keys() == loc["loglik"].keys()
        assert all(e["loglik"][o] == pytest.approx(loc["loglik"][o], abs=2e-3) for o in e["loglik"])  # rounded to 3
        assert (e["prediction"], e["correct"], e["correct_norm"]) == (loc["prediction"], loc["correct"],
                                                                       loc["correct_norm"])
    assert mc_ep.metrics == pytest.approx(mc_local.metrics)
    # perplexity: every token after each text's first, with transformers on the same texts
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert any("first token of each text" in n for n in ppl_ep.notes)
    texts = runner.task_frame(LOCAL, suite.tasks[1])[1]["text"].astype(str).tolist()
    tok = AutoTokenizer.from_pretrained(served["folder"])
    model = AutoModelForCausalLM.from_pretrained(served["folder"]).eval()
    total, count = 0.0, 0
    for text in texts:
        ids = tok(text)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
        total += sum(float(logp[k - 1, ids[k]]) for k in range(1, len(ids)))
        count += len(ids) - 1
    assert ppl_ep.metrics["tokens"] == count
    assert ppl_ep.metrics["perplexity"] == pytest.approx(math.exp(-total / count), rel=1e-4)


# ---------------------------------------------------------------- acc_norm as lm-eval has it
def test_acc_norm_divides_by_the_options_characters_as_lm_eval_does(tiny_gpt2, mc_data, tmp_path):
    """Our multiple-choice task and lm-eval's `hf` backend on the same items and weights: the same acc and acc_norm
    decisions, item by item."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    suite = suites.parse(MC_SUITE, "test")
    (ours,) = runner.run_suite(LOCAL, suite, [str(tiny_gpt2)])
    assert ours.status == "ok", ours.error
    task_dir = tmp_path / "tasks"
    task_dir.mkdir()
    (task_dir / "llm_lab_mc.yaml").write_text(f"""task: llm_lab_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {mc_data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{gold}}}}"
metric_list:
  - metric: acc
  - metric: acc_norm
""")
    out = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={tiny_gpt2},dtype=float32", tasks=["llm_lab_mc"],
                                  task_manager=TaskManager(include_path=str(task_dir)), device="cpu", batch_size=4,
                                  log_samples=True)
    samples = sorted(out["samples"]["llm_lab_mc"], key=lambda s: s["doc_id"])
    assert len(samples) == len(ours.per_example) == len(MC_ITEMS)
    by_bytes = []  # the old definition on lm-eval's own numbers: UTF-8 bytes of " " + option
    for row, sample, (_, opts, gold) in zip(ours.per_example, samples, MC_ITEMS):
        theirs = [float(r[0][0]) for r in sample["resps"]]
        assert [row["loglik"][o] for o in opts] == pytest.approx(theirs, abs=2e-3)
        assert (row["correct"], row["correct_norm"]) == (bool(sample["acc"]), bool(sample["acc_norm"]))
        assert bool(sample["acc_norm"]) == (int(np.argmax(multiple_choice.normalised(theirs, opts))) == gold)
        by_bytes.append(int(np.argmax(np.array(theirs) / [len((" " + o).encode()) for o in opts])) == gold)
    # these items tell the two definitions apart: the old one decided at least one of them otherwise
    assert by_bytes != [bool(s["acc_norm"]) for s in samples]
    assert ours.metrics["accuracy"] == pytest.approx(out["results"]["llm_lab_mc"]["acc,none"])
    assert ours.metrics["acc_norm"] == pytest.approx(out["results"]["llm_lab_mc"]["acc_norm,none"])
    assert multiple_choice.VERSION >= 3  # results of the old definition are not served from the cache


# ---------------------------------------------------------------- chat through the server's chat endpoint
def test_a_conversation_to_an_endpoint_goes_to_its_chat_completions(models, served):
    ep, local = registry.load(LOCAL, "ep"), registry.load(LOCAL, "local", device="cpu", dtype="float32")
    conversation = [{"role": "user", "content": "What is a list?"}, {"role": "assistant", "content": "A sequence."},
                    {"role": "user", "content": "And a tuple?"}]
    settings_ = generation.GenerationSettings(max_new_tokens=8)
    client = served["client"]
    chats, completions = (_metric(client, "llm_lab_serve_requests_total", endpoint=p)
                          for p in ("/v1/chat/completions", "/v1/completions"))
    (got,) = inference.generate(ep, [conversation], settings_)
    pieces = list(inference.stream(ep, conversation, settings_))
    assert _metric(client, "llm_lab_serve_requests_total", endpoint="/v1/chat/completions") == chats + 2
    assert _metric(client, "llm_lab_serve_requests_total", endpoint="/v1/completions") == completions
    (expected,) = inference.generate(local, [conversation], settings_)  # the same template: the server's own
    assert got.text == expected.text and got.new_tokens == expected.new_tokens and got.prompt == "And a tuple?"
    assert "".join(p for p in pieces[:-1]) == pieces[-1].text == expected.text
    # a plain string still goes to /v1/completions
    inference.generate(ep, ["def add(a, b):"], settings_)
    assert _metric(client, "llm_lab_serve_requests_total", endpoint="/v1/completions") == completions + 1
    assert os.environ[KEY_ENV] == KEY


# ---------------------------------------------------------------- review regressions
def test_a_continuation_without_tokens_of_its_own_scores_zero_over_http_as_locally(models):
    """An empty continuation adds no token: log P = 0 and greedy, as the local model (and lm-eval's `hf`) score
    it; the endpoint used to fail the run saying its server "stopped returning prompt log-probabilities"."""
    ep, local = registry.load(LOCAL, "ep"), registry.load(LOCAL, "local", device="cpu", dtype="float32")
    pairs = [("The list type is", ""), ("The list type is", " mutable")]
    got, expected = inference.loglikelihood(ep, pairs), inference.loglikelihood(local, pairs)
    assert (got[0].logprob, got[0].greedy, got[0].tokens) == (expected[0].logprob, expected[0].greedy,
                                                              expected[0].tokens) == (0.0, True, 0)
    assert got[1].logprob == pytest.approx(expected[1].logprob, abs=1e-4) and got[1].tokens == expected[1].tokens > 0


def test_probing_again_is_refused_before_any_request_to_who_may_not_change_the_endpoint(dropping, monkeypatch):
    from llm_lab import access
    from llm_lab.access import Actor

    monkeypatch.setenv("LLM_LAB_MODE", "hosted")
    monkeypatch.setenv("LLM_LAB_ENDPOINT_ALLOW", "127.0.0.1")
    team = ("team@example.com",)
    owner = Actor("ann@example.com", "editor", team[0], team)
    other = Actor("bob@example.com", "editor", team[0], team)  # sees it (same workspace), did not register it
    endpoints.add(owner, "team-ep", dropping["url"], "no-logprobs")
    before = len(dropping["requests"])
    with pytest.raises(access.PermissionDenied, match="only who registered it or an admin"):
        endpoints.probe_again(other, "team-ep")
    assert len(dropping["requests"]) == before  # the server was not called on bob's behalf
    assert endpoints.probe_again(owner, "team-ep")["scores"] is False
    assert len(dropping["requests"]) == before + 1


def test_perplexities_over_different_tokens_are_not_paired_as_a_model_difference():
    """A local model scores each text's first token (after BOS); an endpoint cannot (echo gives it no
    log-probability). Comparing the two example by example would call that a model difference: refused, named."""
    from llm_lab.bench.compare import compare_task
    from llm_lab.bench.result import TaskResult

    rows = [{"id": i, "loglik": -10.0 - i, "tokens": 5} for i in range(6)]

    def result(model, unscored):
        return TaskResult(key=model, model=model, suite="s", task="ppl", type="language_modeling",
                          metrics={"perplexity": 400.0}, per_example=[dict(r) for r in rows],
                          stats={"unscored_tokens": unscored} if unscored else {})

    apart = compare_task([result("local", 0), result("ep", 6)], "perplexity")
    assert not apart.pairs and "ep scored each text without its first token" in apart.note
    together = compare_task([result("ep-a", 6), result("ep-b", 6)], "perplexity")
    assert "without its first token" not in (together.note or "")
