"""The team queue on Redis: 8 short evaluation jobs through 1 worker and through 2 workers, and the queue's
overhead per job against calling the job function directly.

A private redis-server (tests/servers.py) is the queue; the store is SQLite in a temporary LLM_LAB_HOME (or the
PostgreSQL of --database-url). Each job (`--job eval`, the default) is a real benchmark job: the built-in
tiny-gpt scoring a multiple-choice task on demo-reviews by log-likelihood (`--examples` rows, its own suite name
so no job is served another's cached result). Workers and the direct baseline run torch on one thread each
(OMP_NUM_THREADS=1), one worker per core. `--job burn` is a fixed amount of single-threaded pure-Python
arithmetic instead (llm_lab.jobs:burn), which isolates the queue from torch.

- throughput: submit 8 jobs at once, time until all 8 succeeded; once with 1 worker, once with 2 (workers
  are started, registered and warmed by one job each before the clock starts).
- outputs: every job's metrics through 1 worker and through 2 workers equal the job function called directly
  in this process (exit 1 otherwise).
- overhead: one worker, jobs of zero work submitted one at a time; per job, the time from `submit` until the
  store says succeeded (polled every 2 ms), minus the direct call's time of the same function with a
  JobContext in this process. Includes the submit's store writes, the Redis push/pop, the worker's poll
  interval (jobs.POLL_S, 50 ms: on average half of it), the claim, the final write. Goal: under 100 ms.

On a 2-core machine the ratio is bounded by 2 and lowered by whatever else runs there (the store writes of
both workers and this process, this process's polling, other users of the cores).

    python benchmarks/workers.py [--quick] [--job eval|burn] [--jobs 8] [--examples 40] [--database-url postgresql://…]

Last line: ratio=<1-worker time / 2-worker time for the 8 jobs> (2.0 = perfect scaling on two cores).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OVERHEAD_GOAL_MS = 100.0


def start_workers(n: int) -> list[subprocess.Popen]:
    from llm_lab import store

    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")  # one core per worker
    procs = [subprocess.Popen([sys.executable, "-m", "llm_lab", "worker", "--queue", "cpu"], cwd=ROOT,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for _ in range(n)]
    deadline = time.time() + 120
    while len(store.query("SELECT id FROM workers WHERE status='alive'")) < n:
        if time.time() > deadline or any(p.poll() is not None for p in procs):
            raise SystemExit("the workers did not start")
        time.sleep(0.05)
    return procs


def stop_workers(procs: list[subprocess.Popen]) -> None:
    from llm_lab import store

    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(timeout=60)
    store.execute("DELETE FROM workers")


def wait_done(ids: list[str], poll: float) -> None:
    from llm_lab import jobs
    from llm_lab.access import LOCAL

    while True:
        states = [jobs.get(LOCAL, i)["status"] for i in ids]
        if all(s == "succeeded" for s in states):
            return
        if any(s in ("failed", "cancelled", "interrupted") for s in states):
            raise SystemExit(f"a job did not succeed: {states}")
        time.sleep(poll)


EVAL_SUITE = """name: workers-{i}
tasks:
  - name: reviews-choice
    type: multiple_choice
    dataset: demo-reviews
    columns: {{text: text, label: label}}
    prompt: "Review: {{text}}\\nSentiment:"
    choices: [negative, neutral, positive]
    limit: {examples}
"""


def job_call(kind: str, i: int, size: int) -> tuple[str, dict]:
    """The job function and its parameters: job i of `kind` with `size` (examples, or arithmetic steps)."""
    if kind == "eval":
        return "llm_lab.bench.jobs:run", {"suite_text": EVAL_SUITE.format(i=i, examples=size),
                                          "models": ["tiny-gpt"], "use_cache": False}
    return "llm_lab.jobs:burn", {"n": size, "seed": i}


def outputs(kind: str, result: dict) -> object:
    """What a job computed, to compare across runs: the metrics of its results (eval), its return value (burn)."""
    if kind != "eval":
        return result
    from llm_lab.access import LOCAL
    from llm_lab.bench import cache

    return [cache.get(LOCAL, key).metrics for key in result["keys"]]


def run_batch(kind: str, n_jobs: int, size: int, tag: str) -> tuple[float, list]:
    from llm_lab import jobs
    from llm_lab.access import LOCAL

    t0 = time.perf_counter()
    ids = []
    for i in range(n_jobs):
        fn, params = job_call(kind, i, size)
        ids.append(jobs.submit(LOCAL, fn, params, f"{kind} {tag} {i}", resources=jobs.Resources(gpu=False)))
    wait_done(ids, 0.02)
    seconds = time.perf_counter() - t0
    return seconds, [outputs(kind, jobs.get(LOCAL, i)["result"]) for i in ids]


def direct_seconds(kind: str, size: int, repeats: int) -> tuple[float, list]:
    """The job function called in this process (one torch thread, as a worker): median seconds, outputs."""
    import torch

    from llm_lab import jobs
    from llm_lab.bench import jobs as bench_jobs

    torch.set_num_threads(1)
    call = {"llm_lab.bench.jobs:run": bench_jobs.run, "llm_lab.jobs:burn": jobs.burn}
    times, outs = [], []
    for i in range(repeats):
        fn, params = job_call(kind, i, size)
        ctx = jobs.JobContext(id=f"direct-{kind}-{size}-{i}", params=params)
        t0 = time.perf_counter()
        result = call[fn](ctx, **params)
        times.append(time.perf_counter() - t0)
        outs.append(outputs(kind, result))
    return statistics.median(times), outs


def overhead_ms(repeats: int) -> dict:
    from llm_lab import jobs
    from llm_lab.access import LOCAL

    direct, _ = direct_seconds("burn", 0, repeats)
    latencies = []
    for i in range(repeats):
        t0 = time.perf_counter()
        job_id = jobs.submit(LOCAL, "llm_lab.jobs:burn", {"n": 0, "seed": i}, f"empty {i}",
                             resources=jobs.Resources(gpu=False))
        wait_done([job_id], 0.002)
        latencies.append(time.perf_counter() - t0 - direct)
    ms = sorted(1000 * x for x in latencies)
    return {"median_ms": round(statistics.median(ms), 1), "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 1),
            "direct_ms": round(1000 * direct, 2), "n": repeats}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller jobs and fewer repeats (about a minute)")
    ap.add_argument("--job", choices=["eval", "burn"], default="eval")
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--examples", type=int, default=None, help="eval: examples per job (default 60, --quick 24)")
    ap.add_argument("--work", type=int, default=None, help="burn: arithmetic steps per job (default 3e6, --quick 1e6)")
    ap.add_argument("--database-url", default=None, help="a PostgreSQL store instead of SQLite")
    args = ap.parse_args()
    if args.job == "eval":
        size = args.examples or (24 if args.quick else 60)
    else:
        size = args.work or (1_000_000 if args.quick else 3_000_000)
    from tests.servers import RedisServer

    with RedisServer() as redis, tempfile.TemporaryDirectory() as home:
        os.environ.update(LLM_LAB_HOME=home, LLM_LAB_QUEUE_URL=redis.url(), LLM_LAB_JOBS_INLINE="0")
        if args.database_url:
            os.environ["LLM_LAB_DATABASE_URL"] = args.database_url
        direct_s, expected = direct_seconds(args.job, size, args.jobs)
        figures = {"job": args.job, "jobs": args.jobs, "size": size,
                   "store": "postgresql" if args.database_url else "sqlite",
                   "cores": os.cpu_count(), "direct_s_per_job": round(direct_s, 3)}
        differ = []
        for n in (1, 2):
            procs = start_workers(n)
            try:
                run_batch(args.job, n, size, f"warm{n}")  # each worker's first job pays its imports
                figures[f"workers_{n}_s"], got = run_batch(args.job, args.jobs, size, f"w{n}")
                figures[f"workers_{n}_s"] = round(figures[f"workers_{n}_s"], 2)
                differ += [f"{n} worker(s), job {i}" for i, (a, b) in enumerate(zip(got, expected)) if a != b]
                if n == 1:
                    figures["overhead"] = overhead_ms(10 if args.quick else 30)
            finally:
                stop_workers(procs)
        figures["serial_s"] = round(args.jobs * figures["direct_s_per_job"], 2)
        ratio = figures["workers_1_s"] / figures["workers_2_s"]
        print(json.dumps(figures))
        over = figures["overhead"]["median_ms"]
        print(f"goal: queue overhead under {OVERHEAD_GOAL_MS:.0f} ms per job: "
              f"{'met' if over < OVERHEAD_GOAL_MS else 'not met'} ({over} ms median)")
        if differ:
            print(f"outputs differ from the direct call: {', '.join(differ)}")
        print(f"ratio={ratio:.2f}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
