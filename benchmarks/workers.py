"""The team queue on Redis: 8 short CPU-bound jobs through 1 worker and through 2 workers, and the queue's
overhead per job against calling the job function directly.

A private redis-server (tests/servers.py) is the queue; the store is SQLite in a temporary LLM_LAB_HOME (or the
PostgreSQL of --database-url). The job is `llm_lab.jobs:burn`: a fixed amount of single-threaded pure-Python
arithmetic with ten progress writes, the shape of a one-core evaluation loop; it runs the same in both
settings, so the ratio measures the queue and the workers, not the job.

- throughput: submit 8 jobs at once, time until all 8 succeeded; once with 1 worker, once with 2 (workers
  are started and registered before the clock starts).
- overhead: one worker, jobs of zero work submitted one at a time; per job, the time from `submit` until the
  store says succeeded (polled every 2 ms), minus the direct call's time of the same function with a
  JobContext in this process. Includes the submit's store writes, the Redis push/pop, the worker's poll
  interval (jobs.POLL_S, 50 ms: on average half of it), the claim, the final write. Goal: under 100 ms.

On a 2-core machine the ratio is bounded by 2 and lowered by whatever else runs there (the store writes of
both workers and this process, other users of the cores).

    python benchmarks/workers.py [--quick] [--jobs 8] [--work 3000000] [--database-url postgresql://…]

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

    procs = [subprocess.Popen([sys.executable, "-m", "llm_lab", "worker", "--queue", "cpu"], cwd=ROOT,
                              env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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


def run_batch(n_jobs: int, work: int, tag: str) -> float:
    from llm_lab import jobs
    from llm_lab.access import LOCAL

    t0 = time.perf_counter()
    ids = [jobs.submit(LOCAL, "llm_lab.jobs:burn", {"n": work, "seed": i}, f"burn {tag} {i}",
                       resources=jobs.Resources(gpu=False)) for i in range(n_jobs)]
    wait_done(ids, 0.02)
    return time.perf_counter() - t0


def direct_seconds(work: int, repeats: int) -> float:
    from llm_lab import jobs

    times = []
    for i in range(repeats):
        ctx = jobs.JobContext(id=f"direct-{i}", params={})
        t0 = time.perf_counter()
        jobs.burn(ctx, n=work, seed=i)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def overhead_ms(repeats: int) -> dict:
    from llm_lab import jobs
    from llm_lab.access import LOCAL

    direct = direct_seconds(0, repeats)
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
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--work", type=int, default=None, help="arithmetic steps per job (default 3e6, --quick 1e6)")
    ap.add_argument("--database-url", default=None, help="a PostgreSQL store instead of SQLite")
    args = ap.parse_args()
    work = args.work or (1_000_000 if args.quick else 3_000_000)
    from tests.servers import RedisServer

    with RedisServer() as redis, tempfile.TemporaryDirectory() as home:
        os.environ.update(LLM_LAB_HOME=home, LLM_LAB_QUEUE_URL=redis.url(), LLM_LAB_JOBS_INLINE="0")
        if args.database_url:
            os.environ["LLM_LAB_DATABASE_URL"] = args.database_url
        figures = {"jobs": args.jobs, "work": work, "store": "postgresql" if args.database_url else "sqlite",
                   "cores": os.cpu_count(), "direct_s_per_job": round(direct_seconds(work, 2 if args.quick else 3), 3)}
        for n in (1, 2):
            procs = start_workers(n)
            try:
                run_batch(1, min(work, 100_000), f"warm{n}")  # the workers' first job pays their imports
                figures[f"workers_{n}_s"] = round(run_batch(args.jobs, work, f"w{n}"), 2)
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
        print(f"ratio={ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
