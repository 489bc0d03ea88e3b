"""`python -m llm_lab serve MODEL`: real server processes on free ports, called with httpx.

Two servers for the module: a tiny GPT-2 (key from an environment variable) and a tiny BERT classifier (a
generated key, read from its log), each registered in a home of its own. Outputs are checked against
llm_lab.inference runs in this process on the same folders.
"""
import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager

import httpx
import numpy as np
import pytest

from llm_lab import cli, generation, inference, registry, store
from llm_lab.access import LOCAL
from llm_lab.serve import app as serve_app
from tests.conftest import ROOT, _free_port, app_test, no_exceptions

KEY_ENV, KEY = "LLM_LAB_TEST_SERVE_KEY", "test-key-0123456789"


def _run_async(coroutine):
    """Run `coroutine` on a fresh event loop in its own thread: the browser tests' Playwright (sync API) keeps an
    event loop running in the main thread for the whole session, where asyncio.run() refuses to start."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@contextmanager
def _home(path):
    """LLM_LAB_HOME switched to `path` for the block (to register a model in a server's home)."""
    old = os.environ.get("LLM_LAB_HOME")
    os.environ["LLM_LAB_HOME"] = str(path)
    store.reset_connections()
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("LLM_LAB_HOME", None)
        else:
            os.environ["LLM_LAB_HOME"] = old
        store.reset_connections()


def _start(tmp_path_factory, name: str, folder, head: str, *options: str) -> dict:
    home = tmp_path_factory.mktemp(f"serve-{name}")
    with _home(home):
        registry.register(LOCAL, registry.ModelEntry(name, "local", str(folder), head))
    port = _free_port()
    env = dict(os.environ, LLM_LAB_HOME=str(home), PYTHONUNBUFFERED="1", **{KEY_ENV: KEY})
    log = home / "serve.log"
    proc = subprocess.Popen([sys.executable, "-m", "llm_lab", "serve", name, "--port", str(port), *options],
                            cwd=ROOT, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"serve did not start:\n{log.read_text()}")
        time.sleep(0.2)
    return {"url": url, "proc": proc, "log": log, "name": name}


def _stop(server: dict) -> None:
    server["proc"].terminate()
    try:
        server["proc"].wait(10)
    except subprocess.TimeoutExpired:
        server["proc"].kill()


@pytest.fixture(scope="module")
def lm_server(tmp_path_factory, tiny_gpt2):
    # a wide batching window: the 16 concurrent requests below reliably meet in a batch on a busy machine
    server = _start(tmp_path_factory, "tiny-lm", tiny_gpt2, "causal-lm", "--api-key-env", KEY_ENV,
                    "--batch-window-ms", "100", "--max-request-kb", "16")
    server["client"] = httpx.Client(base_url=server["url"], headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
    yield server
    server["client"].close()
    _stop(server)


@pytest.fixture(scope="module")
def clf_server(tmp_path_factory, tiny_bert):
    server = _start(tmp_path_factory, "tiny-clf", tiny_bert, "classifier")
    lines = [line for line in server["log"].read_text().splitlines() if line.startswith("API key")]
    key = lines[0].rsplit(": ", 1)[1]
    assert len(lines) == 1 and "generated" in lines[0] and len(key) >= 32  # printed once
    server["client"] = httpx.Client(base_url=server["url"], headers={"Authorization": f"Bearer {key}"}, timeout=60)
    yield server
    server["client"].close()
    _stop(server)


@pytest.fixture(scope="module")
def lm(tiny_gpt2):
    return registry.load(LOCAL, str(tiny_gpt2), head="causal-lm")


def _direct(lm, prompt: str, max_tokens: int, stop=()) -> generation.GenerationResult:
    """Single-prompt greedy generation in this process: the unbatched reference."""
    return inference.generate(lm, [prompt], generation.GenerationSettings(max_new_tokens=max_tokens,
                                                                           stop=list(stop)))[0]


def _events(response: httpx.Response) -> list:
    """The SSE stream as OpenAI sends it: `data: {json}` blocks separated by blank lines, then `data: [DONE]`."""
    blocks = response.text.split("\n\n")
    assert blocks[-1] == "" and blocks[-2] == "data: [DONE]", blocks[-3:]
    assert all(b.startswith("data: ") and "\n" not in b for b in blocks[:-1])
    return [json.loads(b[len("data: "):]) for b in blocks[:-2]]


def _metric(client, name: str, **labels) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = client.get("/metrics").text
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


PROMPTS = ["The list type is", "A dictionary maps keys to", "import os", "def main(", "Python supports",
           "The with statement", "An iterator is an object", "Exceptions are raised", "class Foo:",
           "Strings are immutable", "The for loop iterates over", "A generator function",
           "Modules can be imported", "The built-in function len", "Tuples are", "Lambda expressions"]


# ---------------------------------------------------------------- generation
def test_completion_greedy_equals_direct_generation(lm_server, lm):
    r = lm_server["client"].post("/v1/completions", json={"model": "tiny-lm", "prompt": PROMPTS[0], "max_tokens": 12,
                                                          "temperature": 0})
    assert r.status_code == 200, r.text
    body = r.json()
    expected = _direct(lm, PROMPTS[0], 12)
    assert body["object"] == "text_completion" and body["model"] == "tiny-lm" and body["id"].startswith("cmpl-")
    assert body["choices"] == [{"index": 0, "text": expected.text, "logprobs": None,
                                "finish_reason": "stop" if expected.stop_reason == "eos" else "length"}]
    prompt_tokens = len(lm.tokenizer(PROMPTS[0])["input_ids"])
    assert body["usage"] == {"prompt_tokens": prompt_tokens, "completion_tokens": expected.new_tokens,
                             "total_tokens": prompt_tokens + expected.new_tokens}
    # repetition_penalty (vLLM's extra field) is the generation setting of the same name
    r = lm_server["client"].post("/v1/completions", json={"prompt": PROMPTS[0], "max_tokens": 12, "temperature": 0,
                                                          "repetition_penalty": 1.3})
    penalised = inference.generate(lm, [PROMPTS[0]], generation.GenerationSettings(max_new_tokens=12,
                                                                                    repetition_penalty=1.3))[0]
    assert r.json()["choices"][0]["text"] == penalised.text != expected.text
    # a list of prompts: one choice each, in order
    r = lm_server["client"].post("/v1/completions", json={"prompt": PROMPTS[:3], "max_tokens": 5, "temperature": 0})
    assert [c["text"] for c in r.json()["choices"]] == [_direct(lm, p, 5).text for p in PROMPTS[:3]]


def test_chat_and_streams_equal_the_non_streamed_greedy_text(lm_server, lm):
    client = lm_server["client"]
    messages = [{"role": "system", "content": "You answer about Python."},
                {"role": "user", "content": [{"type": "text", "text": "What is a list?"}]}]
    ask = {"messages": messages, "max_tokens": 20, "temperature": 0}
    r = client.post("/v1/chat/completions", json=ask)
    assert r.status_code == 200, r.text
    body = r.json()
    # no chat template: the documented transcript, stopping before a next "user:" turn
    prompt = "system: You answer about Python.\nuser: What is a list?\nassistant:"
    assert serve_app.transcript([messages[0], {"role": "user", "content": "What is a list?"}]) == prompt
    expected = _direct(lm, prompt, 20, stop=["\nuser:"])
    choice = body["choices"][0]
    assert body["object"] == "chat.completion" and choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == expected.text and expected.text
    assert body["usage"]["completion_tokens"] == expected.new_tokens

    r = client.post("/v1/chat/completions", json=dict(ask, stream=True, stream_options={"include_usage": True}))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    chunks = _events(r)
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    pieces = [c["choices"][0]["delta"].get("content", "") for c in chunks[1:] if c["choices"]]
    assert len([p for p in pieces if p]) > 1  # it did stream
    assert "".join(pieces) == choice["message"]["content"]
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == choice["finish_reason"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == body["usage"]

    # completions with a stop string: the stream shows nothing past it either
    words = _direct(lm, PROMPTS[1], 24).text
    stop = words.strip().split()[3] if len(words.split()) > 4 else "\n"
    ask = {"prompt": PROMPTS[1], "max_tokens": 24, "temperature": 0, "stop": stop}
    whole = client.post("/v1/completions", json=ask).json()["choices"][0]
    assert whole["text"] == _direct(lm, PROMPTS[1], 24, stop=[stop]).text and stop not in whole["text"]
    streamed = _events(client.post("/v1/completions", json=dict(ask, stream=True)))
    assert "".join(c["choices"][0]["text"] for c in streamed) == whole["text"]
    assert streamed[-1]["choices"][0]["finish_reason"] == whole["finish_reason"] == "stop"


def test_sixteen_concurrent_requests_are_batched_and_equal_unbatched(lm_server, lm):
    client = lm_server["client"]
    batches_before = _metric(client, "llm_lab_serve_batch_size_count", kind="generate")
    rows_before = _metric(client, "llm_lab_serve_batch_size_sum", kind="generate")
    asks = [{"prompt": p, "max_tokens": 6 + i % 7, "temperature": 0, **({"stop": ["\n"]} if i % 4 == 0 else {})}
            for i, p in enumerate(PROMPTS)]

    async def send_all():
        async with httpx.AsyncClient(base_url=lm_server["url"], timeout=60,
                                     headers={"Authorization": f"Bearer {KEY}"}) as c:
            return await asyncio.gather(*(c.post("/v1/completions", json=ask) for ask in asks))

    responses = _run_async(send_all())
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
    got = [r.json()["choices"][0]["text"] for r in responses]
    assert got == [_direct(lm, a["prompt"], a["max_tokens"], a.get("stop", ())).text for a in asks]
    batches = _metric(client, "llm_lab_serve_batch_size_count", kind="generate") - batches_before
    rows = _metric(client, "llm_lab_serve_batch_size_sum", kind="generate") - rows_before
    assert rows == 16 and batches < 16  # some requests shared a generate call
    assert _metric(client, "llm_lab_serve_batch_size_bucket", kind="generate", le="1.0") < \
        _metric(client, "llm_lab_serve_batch_size_count", kind="generate")
    assert _metric(client, "llm_lab_serve_generated_tokens_total") > 0
    assert _metric(client, "llm_lab_serve_requests_total", endpoint="/v1/completions", status="200") >= 16


def test_a_seeded_sampled_request_gives_the_same_text_whatever_runs_beside_it(lm_server):
    client = lm_server["client"]
    ask = {"prompt": PROMPTS[2], "max_tokens": 12, "temperature": 0.9, "top_p": 0.95, "seed": 7}

    async def with_traffic():
        async with httpx.AsyncClient(base_url=lm_server["url"], timeout=60,
                                     headers={"Authorization": f"Bearer {KEY}"}) as c:
            return await asyncio.gather(c.post("/v1/completions", json=ask),
                                        *(c.post("/v1/completions", json={"prompt": p, "max_tokens": 8,
                                                                          "temperature": 1.0}) for p in PROMPTS[:5]))

    alone = client.post("/v1/completions", json=ask).json()["choices"][0]["text"]
    busy = _run_async(with_traffic())[0].json()["choices"][0]["text"]
    assert alone == busy


def test_chat_uses_the_tokenizers_chat_template_when_it_has_one(lm):
    server = serve_app.Server(lm, [], max_batch=1, window_ms=0, max_body=1024)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert server.chat_ids(messages) == (lm.tokenizer(serve_app.transcript(messages))["input_ids"], ["\nuser:"])
    server.tokenizer.chat_template = ("{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}"
                                      "{% if add_generation_prompt %}[assistant]{% endif %}")
    text = "[system] Be brief.\n[user] Hi\n[assistant]"
    assert server.chat_ids(messages) == (lm.tokenizer(text, add_special_tokens=False)["input_ids"], [])


def test_a_request_whose_client_left_does_not_spoil_its_batch(lm):
    """A client that disconnects cancels its Future while the request waits; the batch then ran on and setting
    that Future's result raised InvalidStateError, which failed every request after it in the batch."""
    from llm_lab.serve.batcher import Batcher, Generation
    from llm_lab.serve.protocol import Sampling

    greedy = Sampling(max_tokens=6, temperature=0.0, top_p=1.0, stop=[], seed=None, stream=False,
                      include_usage=False)
    items = [Generation(lm.tokenizer(p)["input_ids"], 6, greedy) for p in PROMPTS[:3]]
    batcher = Batcher(lm, max_batch=16, window_s=0.05)
    for item in items:
        batcher.submit(item)
    assert items[1].future.cancel()  # queued, not started: the client went away
    batcher.start()
    try:
        texts = [items[i].future.result(timeout=60)[0].result.text for i in (0, 2)]
    finally:
        batcher.stop()
    assert texts == [_direct(lm, PROMPTS[i], 6).text for i in (0, 2)]


# ---------------------------------------------------------------- refusals
def test_auth_failures_are_401(lm_server):
    url = lm_server["url"]
    ask = {"prompt": "hi", "max_tokens": 2}
    r = httpx.post(url + "/v1/completions", json=ask)
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
    assert r.headers["www-authenticate"] == "Bearer"
    r = httpx.post(url + "/v1/completions", json=ask, headers={"Authorization": "Bearer not-the-key"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(url + "/v1/models").status_code == 401 and httpx.get(url + "/metrics").status_code == 401
    assert httpx.get(url + "/health").json() == {"status": "ok"}  # open: load balancers probe it
    r = httpx.get(url + "/v1/models", headers={"Authorization": f"bearer {KEY}"})
    assert r.status_code == 200 and r.json()["data"][0]["id"] == "tiny-lm"
    assert r.json()["data"][0]["max_context"] == 128


def _error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def test_bad_requests_get_openai_style_errors(lm_server):
    client = lm_server["client"]
    error = _error(client.post("/v1/completions", content=b'{"prompt": "hi", ', headers={"content-type":
                                                                                          "application/json"}), 400)
    assert error["code"] == "invalid_json" and "not valid JSON" in error["message"]
    assert _error(client.post("/v1/completions", json=["hi"]), 400)["code"] == "invalid_json"
    error = _error(client.post("/v1/completions", json={"prompt": "hi", "temperature": "hot"}), 400)
    assert error["param"] == "temperature"
    assert _error(client.post("/v1/completions", json={"prompt": "hi", "max_tokens": 0}), 400)["param"] == "max_tokens"
    assert _error(client.post("/v1/chat/completions", json={"messages": []}), 400)["param"] == "messages"
    error = _error(client.post("/v1/completions", json={"prompt": "hi", "n": 200}), 400)
    assert error["param"] == "n" and "at most 128" in error["message"]
    error = _error(client.post("/v1/completions", json={"prompt": "hi", "tools": []}),
                   400)  # unknown to completions: refused by name, never ignored
    assert error["param"] == "tools" and error["code"] == "unknown_parameter"
    # the context: the tiny GPT-2 takes 128 tokens
    error = _error(client.post("/v1/completions", json={"prompt": "one two three", "max_tokens": 127}), 400)
    assert error["code"] == "context_length_exceeded" and "maximum context length is 128 tokens" in error["message"]
    error = _error(client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x " * 200}]}),
                   400)
    assert error["code"] == "context_length_exceeded" and "128" in error["message"]
    assert _error(client.post("/v1/completions", json={"model": "gpt-4", "prompt": "hi"}), 404)["code"] == \
        "model_not_found"
    error = _error(client.post("/v1/embeddings", json={"input": "hi"}), 400)
    assert error["code"] == "unsupported_endpoint" and "/v1/completions" in error["message"]
    assert _error(client.get("/v1/nothing"), 404)["code"] == "not_found"
    assert _error(client.post("/v1/completions", json={"prompt": "x" * 20_000}), 413)["code"] == "request_too_large"
    assert _metric(client, "llm_lab_serve_requests_total", endpoint="/v1/completions", status="400") >= 4


def test_no_auth_only_on_loopback_and_model_options_only_with_a_model(capsys):
    assert cli.main(["serve", "tiny-gpt", "--no-auth", "--host", "0.0.0.0"]) == 2
    assert "only on a loopback address" in capsys.readouterr().err
    assert cli.main(["serve", "tiny-gpt", "--no-auth", "--api-key", "k"]) == 2
    assert "contradict" in capsys.readouterr().err
    assert cli.main(["serve", "--no-batching"]) == 2  # the dashboard takes none of the model's options
    assert "apply only when serving a model" in capsys.readouterr().err
    from llm_lab.serve.cli import api_key

    args = cli.build_parser().parse_args(["serve", "tiny-gpt", "--no-auth", "--host", "::1"])
    assert api_key(args)[0] is None


def test_an_endpoint_model_is_not_served_again(capsys):
    from llm_lab import endpoints

    endpoints.add(LOCAL, "company-llm", "http://127.0.0.1:9/v1", "m")
    assert cli.main(["serve", "company-llm", "--check", "--api-key", "k"]) == 2
    assert "company-llm is an OpenAI-compatible endpoint: it is served already" in capsys.readouterr().err


# ---------------------------------------------------------------- classifier
def test_classify_and_embeddings_equal_predict(clf_server, tiny_bert):
    client = clf_server["client"]
    texts = ["Not bad at all.", "The worst purchase I ever made, it broke on the first day.", "fine"]
    loaded = registry.load(LOCAL, str(tiny_bert), head="classifier")
    r = client.post("/v1/classify", json={"model": "tiny-clf", "input": texts})
    assert r.status_code == 200, r.text
    body = r.json()
    expected = inference.classify(loaded, texts).probs
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    for row, want in zip(body["data"], expected):
        assert list(row["probabilities"]) == ["negative", "positive"]
        assert np.allclose(list(row["probabilities"].values()), want, atol=1e-5)
        assert row["label"] == ["negative", "positive"][int(want.argmax())]
    tokens = sum(len(loaded.tokenizer(t)["input_ids"]) for t in texts)
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}

    r = client.post("/v1/embeddings", json={"input": texts})
    vectors = np.array([d["embedding"] for d in r.json()["data"]])
    assert np.allclose(vectors, inference.embed(loaded, texts).vectors, atol=1e-5)
    r = client.post("/v1/embeddings", json={"input": texts[0], "encoding_format": "base64"})
    packed = np.frombuffer(base64.b64decode(r.json()["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(packed, vectors[0], atol=1e-6)

    error = _error(client.post("/v1/completions", json={"prompt": "hi"}), 400)
    assert error["code"] == "unsupported_endpoint" and "/v1/classify" in error["message"]
    error = _error(client.post("/v1/classify", json={"input": "word " * 200}), 400)
    assert error["code"] == "context_length_exceeded" and "128" in error["message"]
    assert _error(client.post("/v1/classify", json={"input": []}), 400)["param"] == "input"


# ---------------------------------------------------------------- pages
def test_models_page_shows_the_serve_command():
    at = app_test("app.py").run()  # through the router: the page links to Compare
    at.switch_page("views/models.py").run()
    at.selectbox(key="m_name").set_value("tiny-gpt").run()
    at.button(key="m_load").click().run()
    no_exceptions(at)
    home = f"LLM_LAB_HOME={os.environ['LLM_LAB_HOME']} "  # the test's own home: a terminal must look there too
    assert home + "python -m llm_lab serve tiny-gpt --port 8000" in [c.value for c in at.code]
    at.selectbox(key="m_head").set_value("encoder")
    at.button(key="m_load").click().run()
    no_exceptions(at)
    assert home + "python -m llm_lab serve tiny-gpt --port 8000 --head encoder" in [c.value for c in at.code]


def test_train_page_offers_the_serve_command_of_the_finished_model(monkeypatch, tiny_bert):
    from llm_lab import jobs, train
    from llm_lab.access import SYSTEM, scope
    from llm_lab.train import TrainConfig

    monkeypatch.setattr(jobs, "_enqueue", lambda job_id: None)  # queued, never run: finished by hand below
    job_id = train.submit(LOCAL, TrainConfig(task="pretrain", name="served-run", preset="1M", max_steps=20))
    registry.register(LOCAL, registry.ModelEntry("served-run", "trained", str(tiny_bert), "classifier"))
    result = {"model": "served-run", "folder": str(tiny_bert), "registered": True, "metrics": {}}
    scope(SYSTEM).update("jobs", {"status": "succeeded", "finished_at": time.time(), "result": store.to_json(result)},
                         "id=?", (job_id,))
    at = app_test("views/train.py")
    at.query_params["train_job"] = job_id
    at.run()
    no_exceptions(at)
    assert f"LLM_LAB_HOME={os.environ['LLM_LAB_HOME']} python -m llm_lab serve served-run --port 8000" in [
        c.value for c in at.code]
