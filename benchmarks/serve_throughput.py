"""Serve throughput: 16 concurrent clients against `python -m llm_lab serve` with and without dynamic batching.

ours:     `python -m llm_lab serve tiny-gpt` (dynamic batching: up to 16 requests, 10 ms window)
baseline: the same server with `--no-batching` (every request its own `model.generate`)

Both servers run at once on localhost (each its own process, started together; only one is under load at a
time). Each of 16 clients sends its share of the prompts one after another (a closed loop: a client sends its
next request when the previous one is answered), greedy, the same max_tokens; the phases alternate
(ours, baseline, baseline, ours, …) and each side's figures are the median over its phases. Reported: requests/s
and generated tokens/s, latency p50/p95 per request (as a client sees it), and the mean batch size from ours'
/metrics. The greedy outputs of the two servers must be identical, prompt by prompt; otherwise the script
exits with status 1. `--logprobs K` asks for the top-K log-probabilities of every generated token on both
sides (then the log-probabilities must agree within 1e-4 too). Prints `ratio=<ours requests/s / baseline
requests/s>` last (higher is better).
"""
import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
KEY = "benchmark-key"


def make_prompts(n: int) -> list[str]:
    from llm_lab.corpora import pydoc_corpus

    paragraphs = pydoc_corpus()
    prompts = []
    for i in range(n):  # varied lengths: 3 to 20 words
        words = paragraphs[(i * 37) % len(paragraphs)].split()
        prompts.append(" ".join(words[: 3 + (i * 7) % 18]))
    return prompts


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(model: str, home: Path, extra: list[str]) -> dict:
    port = free_port()
    log = home / f"serve-{port}.log"
    env = dict(os.environ, LLM_LAB_HOME=str(home), PYTHONUNBUFFERED="1", LLM_LAB_SERVE_API_KEY=KEY)
    proc = subprocess.Popen([sys.executable, "-m", "llm_lab", "serve", model, "--port", str(port), *extra], cwd=ROOT,
                            env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    return {"url": f"http://127.0.0.1:{port}", "proc": proc, "log": log}


def wait_ready(server: dict, timeout: float = 180) -> None:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(server["url"] + "/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if server["proc"].poll() is not None:
            break
        time.sleep(0.2)
    raise SystemExit(f"the server did not start:\n{server['log'].read_text()}")


async def load(url: str, prompts: list[str], clients: int, max_tokens: int, logprobs: int | None = None) -> dict:
    """Each client sends prompts[c::clients] one after another. Returns texts by prompt, latencies, wall time."""
    import httpx

    texts: list = [None] * len(prompts)
    values: list = [None] * len(prompts)
    tokens = [0] * len(prompts)
    extra = {} if logprobs is None else {"logprobs": logprobs}
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=600,
                                 limits=limits) as http:
        async def client(c: int):
            for i in range(c, len(prompts), clients):
                t0 = time.perf_counter()
                r = await http.post("/v1/completions", json={"prompt": prompts[i], "max_tokens": max_tokens,
                                                             "temperature": 0, **extra})
                latencies.append(time.perf_counter() - t0)
                r.raise_for_status()
                body = r.json()
                texts[i] = body["choices"][0]["text"]
                if logprobs is not None:
                    values[i] = body["choices"][0]["logprobs"]["token_logprobs"]
                tokens[i] = body["usage"]["completion_tokens"]

        t0 = time.perf_counter()
        await asyncio.gather(*(client(c) for c in range(clients)))
        wall = time.perf_counter() - t0
    return {"texts": texts, "values": values, "latencies": latencies, "wall": wall, "tokens": sum(tokens)}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def batch_sizes(url: str) -> tuple[float, float]:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    found = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples
             if s.name.startswith("llm_lab_serve_batch_size_") and s.labels.get("kind") == "generate"
             and "le" not in s.labels}
    return found.get("llm_lab_serve_batch_size_sum", 0.0), found.get("llm_lab_serve_batch_size_count", 0.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 requests per client, 16 new tokens, one phase per "
                                                             "side (under a minute)")
    parser.add_argument("--model", default="tiny-gpt")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=8, help="requests per client and phase")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="phases per side")
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--window-ms", type=float, default=10.0)
    parser.add_argument("--logprobs", type=int, help="ask for the top-K log-probabilities of each token (0..5)")
    parser.add_argument("--threads", type=int, default=1, help="serve --threads for both servers (0: torch's "
                        "default; intra-op threads only slow a model this small, and much on a shared machine)")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.new_tokens, args.repeats = 3, 16, 1

    prompts = make_prompts(args.clients * args.requests)
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        home = Path(tmp)
        threads = ["--threads", str(args.threads)] if args.threads else []
        ours = start(args.model, home, ["--max-batch", str(args.max_batch), "--batch-window-ms", str(args.window_ms),
                                        *threads])
        base = start(args.model, home, ["--no-batching", *threads])
        try:
            wait_ready(ours)
            wait_ready(base)
            for server in (ours, base):  # warm-up: first calls pay for lazy imports and allocations
                asyncio.run(load(server["url"], prompts[:args.clients], args.clients, 4))
            sum0, count0 = batch_sizes(ours["url"])
            runs = {"ours": [], "baseline": []}
            for r in range(args.repeats):  # alternate which side goes first: neither gets a warmer machine
                for side in (("ours", "baseline") if r % 2 == 0 else ("baseline", "ours")):
                    server = ours if side == "ours" else base
                    runs[side].append(asyncio.run(load(server["url"], prompts, args.clients, args.new_tokens,
                                                       args.logprobs)))
            sum1, count1 = batch_sizes(ours["url"])
        finally:
            for server in (ours, base):
                server["proc"].terminate()
            for server in (ours, base):
                try:
                    server["proc"].wait(10)
                except subprocess.TimeoutExpired:
                    server["proc"].kill()

    n = len(prompts)
    print(f"{args.model}: {args.clients} concurrent clients x {args.requests} requests, {args.new_tokens} new tokens, "
          f"greedy; {args.repeats} phase(s) per side; batching up to {args.max_batch}, {args.window_ms:g} ms window; "
          f"torch threads per server: {args.threads or 'default'}"
          + ("" if args.logprobs is None else f"; logprobs={args.logprobs} asked"))
    rates = {}
    for side, label in (("ours", "ours (dynamic batching)"), ("baseline", "baseline (--no-batching)")):
        walls = [run["wall"] for run in runs[side]]
        latencies = [x for run in runs[side] for x in run["latencies"]]
        wall = statistics.median(walls)
        rates[side] = n / wall
        tokens = statistics.median(run["tokens"] for run in runs[side])
        print(f"{label:26s} {n / wall:7.1f} requests/s  {tokens / wall:8.0f} tokens/s  latency p50 "
              f"{percentile(latencies, 50) * 1000:6.0f} ms  p95 {percentile(latencies, 95) * 1000:6.0f} ms")
    mean_batch = (sum1 - sum0) / max(1.0, count1 - count0)
    print(f"mean batch size (ours):    {mean_batch:.1f} requests per generate call")
    reference = runs["baseline"][0]["texts"]
    mismatches = sum(run["texts"][i] != reference[i] for side in runs for run in runs[side] for i in range(n))
    total = n * sum(len(v) for v in runs.values())
    if args.logprobs is not None:  # the same tokens: their log-probabilities agree within 1e-4
        ref = runs["baseline"][0]["values"]
        mismatches += sum(len(run["values"][i]) != len(ref[i]) or any(abs(a - b) > 1e-4 for a, b in
                                                                        zip(run["values"][i], ref[i]))
                          for side in runs for run in runs[side] for i in range(n))
    print(f"identical greedy outputs:  {total - mismatches}/{total}")
    if mismatches:
        print(f"FAIL: {mismatches} outputs differ between the batched and unbatched servers (tolerance: 0)",
              file=sys.stderr)
    print(f"ratio={rates['ours'] / rates['baseline']:.2f}")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
