"""Data-parallel benchmarks: 2 CPU processes (torchrun, gloo) give the results one process gives, and only the
main process writes; a process that fails alone does not leave the other waiting; the launch command a
multi-GPU worker runs for a training job."""
import json
import os
import subprocess
import sys

import pytest

from llm_lab import data
from llm_lab.access import LOCAL
from llm_lab.bench import cache, runner
from llm_lab.bench import suite as suites
from tests.conftest import ROOT

REVIEWS = [("great product, works perfectly", "positive"), ("terrible, it broke after a day", "negative"),
           ("I love it", "positive"), ("awful service and a cracked lid when it arrived", "negative"),
           ("does exactly what it says, very happy", "positive"), ("meh", "negative"),
           ("the best kettle I have owned", "positive"), ("stopped working", "negative"),
           ("fine", "positive"), ("would not buy again, the handle melted", "negative"), ("five stars", "positive")]
SUITE = """name: dp
tasks:
  - name: sentiment
    type: classification
    dataset: dp-reviews
  - name: choice
    type: multiple_choice
    dataset: dp-reviews
    prompt: "Review: {text}\\nSentiment:"
    choices: [negative, positive]
  - name: perplexity
    type: language_modeling
    dataset: dp-reviews
"""


def _import_reviews():
    import csv
    import io

    buf = io.StringIO()
    csv.writer(buf).writerows([("text", "label"), *REVIEWS])
    data.import_dataset(LOCAL, "dp-reviews", "r.csv", buf.getvalue().encode(), {"text": "text", "label": "label"},
                        data.Recipe(train=1.0, validation=0.0))


def _torchrun(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           *args], check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_two_gloo_processes_give_the_results_of_one(tiny_bert, tiny_gpt2, lab_home, tmp_path):
    _import_reviews()
    suite_file = tmp_path / "dp.yaml"
    suite_file.write_text(SUITE)
    models = [str(tiny_bert), str(tiny_gpt2)]
    # one process, in this one: 3 tasks x 2 models (BERT scores no language, GPT-2 classifies nothing: errors)
    single = runner.run_suite(LOCAL, suites.parse(SUITE, "test"), models, use_cache=False)
    assert [r.status for r in single] == ["ok", "error", "error", "error", "ok", "ok"], [(r.status, r.error) for r in single]
    out = tmp_path / "dp.json"
    done = _torchrun("-m", "llm_lab.bench", "--suite", str(suite_file), "--model", models[0], "--model", models[1],
                     "--no-cache", "--out", str(out))
    assert done.returncode == 1, done.stderr[-3000:]  # 1: the suite has error results
    assert done.stdout.count("rows scored:") == 1, done.stdout  # the leaderboard is printed once, by the main process
    parallel = json.loads(out.read_text())["results"]
    assert len(parallel) == len(single)
    for one, two in zip(single, parallel):
        assert (two["model"], two["task"], two["status"]) == (one.model, one.task, one.status)
        if one.status != "ok":
            assert two["error"] == one.error
            continue
        assert two["key"] == one.key  # the same computation, so the same cache key
        assert _close(two["metrics"], one.metrics), (one.task, two["metrics"], one.metrics)
        assert _close(two["intervals"], one.intervals), one.task
        assert len(two["per_example"]) == len(one.per_example) == len(REVIEWS)
        assert _close(two["per_example"], one.per_example), one.task  # every example's outputs, in order
    # the main process wrote each result once; nothing partial is left behind
    assert not list(cache.partial_dir().glob("*.json"))
    runs = cache.runs(LOCAL)
    assert len(runs) == 1 and len(runs[0]["keys"]) == 6


def _close(a, b) -> bool:
    """Equal, numbers to 1e-6 relative (floats summed in another order may differ in the last bits)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return a == pytest.approx(b, rel=1e-6, abs=1e-9)
    return a == b


def _two_processes(rank: int, init_file: str, home: str, results: dict) -> None:
    """One of 2 gloo processes: a ShardedPartial splits 37 examples, the gather gives both all; then a failure on
    process 1 alone fails the step on both, and the next collective still pairs up."""
    import torch.distributed as dist

    from llm_lab.bench import distributed
    from llm_lab.errors import LabError

    os.environ["LLM_LAB_HOME"] = home
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    part = distributed.partial("k")
    mine = part.missing(37)
    part.add(mine, [p * 10 for p in mine])
    everything = dict(part.outputs)
    few = distributed.partial("few")  # fewer examples than two blocks: process 1 has none, and still gathers
    todo = few.missing(7)
    few.add(todo, ["x"] * len(todo))
    everything_few = dict(few.outputs)

    def fails_on_one():
        if rank == 1:
            raise LabError("out of memory on this one")
        return "fine"

    try:
        distributed.agreed(fails_on_one)
        failure = None
    except LabError as exc:
        failure = str(exc)
    after = distributed.all_gather(rank)
    results[rank] = (mine, everything, failure, after, everything_few)
    dist.destroy_process_group()


def test_processes_share_the_examples_and_fail_together(tmp_path, lab_home):
    import torch.multiprocessing as mp

    results = mp.Manager().dict()
    mp.spawn(_two_processes, args=(str(tmp_path / "init"), str(lab_home), results), nprocs=2, join=True)
    (mine0, all0, fail0, after0, few0), (mine1, all1, fail1, after1, few1) = results[0], results[1]
    # blocks of 16 (the generation task's chunk) dealt in turn, nothing run twice
    assert (mine0, mine1) == ([*range(16), *range(32, 37)], list(range(16, 32)))
    assert all0 == all1 == {p: p * 10 for p in range(37)}
    assert few0 == few1 == {p: "x" for p in range(7)}
    assert fail1 == "out of memory on this one" and fail0 == "Process 1 of 2 failed: out of memory on this one"
    assert after0 == after1 == [0, 1]  # still in step after the failure


def test_the_launch_a_two_gpu_worker_runs_for_a_training_job(monkeypatch):
    from llm_lab.errors import LabError
    from llm_lab.train import launch

    assert launch.command([0, 1], "job-7") == [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                               "--nproc_per_node", "2", "-m", "llm_lab.train.launch", "job-7"]
    assert launch.command([2, 3, 5], "job-7", resume=True)[5:] == ["3", "-m", "llm_lab.train.launch", "job-7",
                                                                   "--resume"]
    env = launch.environment([2, 3], base={"LLM_LAB_HOME": "/shared/lab", launch.GPUS_ENV: "2,3"})
    assert env["CUDA_VISIBLE_DEVICES"] == "2,3" and env["LLM_LAB_HOME"] == "/shared/lab"
    assert launch.GPUS_ENV not in env  # the launched processes do not launch again
    monkeypatch.setenv(launch.GPUS_ENV, "0,1")
    assert launch.worker_gpus() == [0, 1] and launch.should_launch([0, 1]) and not launch.should_launch([0])
    monkeypatch.setenv("LOCAL_RANK", "0")  # already one process of a launch
    assert not launch.should_launch([0, 1])
    monkeypatch.setenv(launch.GPUS_ENV, "0;1")
    with pytest.raises(LabError, match="0,1"):
        launch.worker_gpus()
