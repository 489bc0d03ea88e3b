"""lm-evaluation-harness tasks in Benchmarks: an uploaded task YAML over local JSONL, run by the Benchmarks runner
through LLM Lab's inference layer, equals lm-eval's own `hf` backend on the same folder; catalogue tasks whose data
is on the Hub fail fast offline; uploaded YAMLs that would run code or read server files are refused; a changed
data file is a new result; the page builds a suite with an lm-eval task."""
import json
import time

import pytest

from llm_lab.access import LOCAL, Actor
from llm_lab.bench import runner
from llm_lab.bench import suite as suites
from llm_lab.bench.tasks import lm_eval_task
from tests.conftest import app_test, no_exceptions
from tests.test_endpoint_scoring import key, models, served  # noqa: F401  (a served tiny model as an endpoint)

MC_ROWS = [{"question": f"Which word comes after {w}?", "choices": ["zero", "one", "two", "many"], "answer": i % 4}
           for i, w in enumerate(["the", "a", "module", "function", "class", "value", "return", "import"])]
GEN_ROWS = [{"question": f"Name the {w} keyword.", "answer": w} for w in ["def", "class", "return", "import", "with"]]

MC_YAML = """task: tiny_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: mc.jsonl
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{question}}\\nAnswer:"
doc_to_choice: choices
doc_to_target: answer
metric_list:
  - metric: acc
  - metric: acc_norm
"""
GEN_YAML = """task: tiny_gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: gen.jsonl
test_split: test
output_type: generate_until
doc_to_text: "Q: {{question}}\\nA:"
doc_to_target: "{{answer}}"
generation_kwargs:
  until: ["\\n", "."]
  max_gen_toks: 6
  do_sample: false
metric_list:
  - metric: exact_match
"""


def _write(folder, name, rows):
    (folder / name).write_text("\n".join(json.dumps(r) for r in rows) + "\n")


@pytest.fixture
def uploads():
    folder = lm_eval_task.workspace_folder("default")
    _write(folder, "mc.jsonl", MC_ROWS)
    _write(folder, "gen.jsonl", GEN_ROWS)
    (folder / "mc.yaml").write_text(MC_YAML)
    return folder


def _suite(*tasks) -> suites.Suite:
    return suites.parse(suites.to_yaml("lm-eval-suite", list(tasks)), "test")


def _hf_reference(folder, config: dict) -> dict:
    import lm_eval

    return lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={folder}", tasks=[config], device="cpu",
                                   log_samples=True, bootstrap_iters=0, batch_size=4)


def _absolute(yaml_text: str, folder) -> dict:
    import yaml

    config = yaml.safe_load(yaml_text)
    config["dataset_kwargs"]["data_files"] = {k: str(folder / v) for k, v in config["dataset_kwargs"]["data_files"].items()}
    return config


def test_uploaded_yaml_tasks_equal_lm_eval_hf_backend(tiny_gpt2, uploads):
    suite = _suite({"name": "mc", "type": "lm_eval", "yaml": "mc.yaml"},
                   {"name": "gen", "type": "lm_eval", "yaml": GEN_YAML})
    mc, gen = runner.run_suite(LOCAL, suite, [str(tiny_gpt2)])
    assert mc.ok and gen.ok, (mc.error, gen.error)

    ref = _hf_reference(tiny_gpt2, _absolute(MC_YAML, uploads))
    ref_rows = sorted(ref["samples"]["tiny_mc"], key=lambda s: s["doc_id"])
    ours = sorted(mc.per_example, key=lambda r: r["doc_id"])
    assert len(ours) == len(ref_rows) == len(MC_ROWS)
    for row, s in zip(ours, ref_rows):
        ref_ll = [float(r[0]) for r in s["filtered_resps"]]
        assert list(row["loglik"].values()) == pytest.approx(ref_ll, abs=1e-4)
        assert row["correct"] == bool(s["acc"]) and row["correct_norm"] == bool(s["acc_norm"])
    assert mc.metrics["accuracy"] == pytest.approx(ref["results"]["tiny_mc"]["acc,none"], abs=1e-12)
    assert mc.metrics["acc_norm"] == pytest.approx(ref["results"]["tiny_mc"]["acc_norm,none"], abs=1e-12)
    for name in ("accuracy", "acc_norm"):  # every metric with its Wilson interval and n
        ci = mc.intervals[name]
        assert ci["n"] == len(MC_ROWS) and ci["low"] <= ci["value"] <= ci["high"] and "Wilson" in ci["method"]
    lm = mc.details["lm_eval"]
    assert lm["lm_eval_version"] == "0.4.13" and lm["source"] == "yaml"
    assert [p.rsplit("/", 1)[-1] for p in lm["data_files"]] == ["mc.jsonl"]
    assert set(lm["task_hashes"]) == {"tiny_mc"}
    assert mc.repro.environment["packages"]["lm_eval"] == "0.4.13"

    ref = _hf_reference(tiny_gpt2, _absolute(GEN_YAML, uploads))
    ref_rows = sorted(ref["samples"]["tiny_gen"], key=lambda s: s["doc_id"])
    ours = sorted(gen.per_example, key=lambda r: r["doc_id"])
    assert [r["prediction"] for r in ours] == [s["filtered_resps"][0] for s in ref_rows]
    assert [r["correct"] for r in ours] == [bool(s["exact_match"]) for s in ref_rows]
    assert gen.metrics["exact_match"] == ref["results"]["tiny_gen"]["exact_match,none"]
    assert gen.intervals["exact_match"]["n"] == len(GEN_ROWS)

    again = runner.run_suite(LOCAL, suite, [str(tiny_gpt2)])
    assert all(r.cached for r in again)


def test_a_changed_data_file_gives_a_new_result(tiny_gpt2, uploads):
    suite = _suite({"name": "mc", "type": "lm_eval", "yaml": "mc.yaml", "limit": 3})
    (first,) = runner.run_suite(LOCAL, suite, [str(tiny_gpt2)])
    assert first.ok and not first.cached
    rows = [dict(r, question=r["question"].upper()) for r in MC_ROWS]
    _write(uploads, "mc.jsonl", rows)  # same name, new content
    (second,) = runner.run_suite(LOCAL, suite, [str(tiny_gpt2)])
    assert second.ok and not second.cached and second.key != first.key
    assert second.details["lm_eval"]["data_files"] != first.details["lm_eval"]["data_files"]
    assert second.per_example[0]["text"].startswith("Question: WHICH WORD")
    (third,) = runner.run_suite(LOCAL, suite, [str(tiny_gpt2)])
    assert third.cached and third.key == second.key


def test_a_catalogue_task_on_the_hub_fails_fast_offline(tiny_gpt2, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    lm_eval_task.task_manager()  # the catalogue's index is built once per process (seconds), not per run
    started = time.time()
    (result,) = runner.run_suite(LOCAL, _suite({"name": "arc", "type": "lm_eval", "task": "arc_easy"}),
                                 [str(tiny_gpt2)])
    assert time.time() - started < 10
    assert not result.ok
    assert "allenai/ai2_arc" in result.error and "dataset_path: json" in result.error


HOSTED = Actor("alice@example.com", "editor", "team", ("team",))


@pytest.mark.parametrize("text, field", [
    ("task: t\ndataset_path: json\ndoc_to_text: !function utils.doc_to_text\n", "!function"),
    ("task: t\ninclude: other.yaml\ndataset_path: json\n", "`include`"),
    ("task: t\ndataset_path: json\nprocess_docs: utils.process\n", "`process_docs`"),
    ("task: t\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: /etc/passwd\n", "`dataset_kwargs.data_files.test`"),
    ("task: t\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: ../default/mc.jsonl\n", "outside your workspace"),
    ("task: t\ndataset_path: allenai/ai2_arc\n", "`dataset_path`"),
    ("task: t\ndataset_path: json\nmetric_list:\n  - metric: /tmp/evil.py\n", "`metric_list.0.metric`"),
    ("task: t\ndataset_path: json\nfilter_list:\n  - name: x\n    filter:\n      - function: custom\n", "function"),
])
def test_hosted_uploads_that_could_run_code_or_read_files_are_refused(monkeypatch, uploads, text, field):
    monkeypatch.setenv("LLM_LAB_MODE", "hosted")
    spec = _suite({"name": "x", "type": "lm_eval", "yaml": text}).tasks[0]
    with pytest.raises(lm_eval_task.LmEvalTaskError) as err:
        lm_eval_task.prepare(HOSTED, spec)
    assert field in str(err.value) and "line" in str(err.value)


def test_templates_render_in_a_sandbox():
    from jinja2.exceptions import SecurityError
    from lm_eval import utils

    lm_eval_task.sandbox_templates()
    assert utils.apply_template("Q: {{q}}", {"q": "hi"}) == "Q: hi"
    with pytest.raises(SecurityError):
        utils.apply_template("{{ q.__class__.__mro__[1].__subclasses__() }}", {"q": "hi"})


def test_the_llm_lab_model_is_registered_with_lm_eval():
    from lm_eval.api.registry import get_model

    from llm_lab.bench.lm_eval_model import LabLM

    assert get_model("llm-lab") is LabLM


def test_benchmarks_page_builds_a_suite_with_an_lm_eval_task(monkeypatch):
    monkeypatch.setattr(lm_eval_task, "catalogue", lambda: ["arc_easy", "hellaswag", "tiny_task"])
    at = app_test("views/benchmarks.py").run()
    at.radio(key="b_source").set_value("Build one").run()
    at.selectbox(key="b_type").set_value("lm_eval").run()
    no_exceptions(at)
    at.selectbox(key="b_lm_task").set_value("hellaswag")
    at.number_input(key="b_lm_fewshot").set_value(2)
    at.number_input(key="b_limit").set_value(20).run()
    at.button(key="b_add").click().run()
    no_exceptions(at)
    suite = suites.parse(at.code[0].value, "test", "the built suite")
    (task,) = suite.tasks
    assert (task.type, task.task, task.num_fewshot, task.limit) == ("lm_eval", "hellaswag", 2, 20)


# ---------------------------------------------------------------- review regressions (R2)
DEFAULT_HOSTED = Actor("bob@example.com", "editor", "default", ("default",))


def test_hosted_default_workspace_cannot_reach_another_workspaces_uploads(monkeypatch, uploads):
    """The default workspace's lm-eval folder holds the other workspaces' folders (@team/): a hosted user of the
    default workspace must not name their files."""
    monkeypatch.setenv("LLM_LAB_MODE", "hosted")
    team = lm_eval_task.workspace_folder("team")
    _write(team, "secret.jsonl", MC_ROWS)
    (team / "theirs.yaml").write_text(MC_YAML)
    assert team.parent == lm_eval_task.workspace_folder("default")  # why the check must be "directly in"
    reach_data = MC_YAML.replace("test: mc.jsonl", "test: \"@team/secret.jsonl\"")
    for value in (reach_data, "@team/theirs.yaml"):
        spec = _suite({"name": "x", "type": "lm_eval", "yaml": value}).tasks[0]
        with pytest.raises(lm_eval_task.LmEvalTaskError, match="outside your workspace"):
            lm_eval_task.prepare(DEFAULT_HOSTED, spec)
    assert "secret.jsonl" not in lm_eval_task.stored_files(DEFAULT_HOSTED)
    ok = _suite({"name": "x", "type": "lm_eval", "yaml": "mc.yaml"}).tasks[0]  # its own files still work
    assert lm_eval_task.prepare(DEFAULT_HOSTED, ok).label == "tiny_mc"


def _loaded(folder):
    from llm_lab import capabilities as caps
    from llm_lab import registry

    head = caps.require_entry(caps.SCORE, registry.resolve(LOCAL, str(folder)))
    return registry.load(LOCAL, str(folder), head=head)


def test_a_tag_of_tasks_reports_every_document_not_its_first_task(tiny_gpt2, uploads):
    """A catalogue tag (ai2_arc = arc_easy + arc_challenge) has no aggregate in lm-eval's results: its metrics pool
    both tasks' documents, and the headline's value is the value its interval is about."""
    import lm_eval
    import numpy as np

    from llm_lab.bench.lm_eval_model import LabLM

    lm, first = LabLM(_loaded(tiny_gpt2)), _absolute(MC_YAML, uploads)

    def evaluate(tasks):
        return lm_eval.simple_evaluate(model=lm, tasks=tasks, log_samples=True, bootstrap_iters=0,
                                       task_manager=lm_eval_task._upload_manager())

    # a second task the model gets all right: its answers are the model's own picks on the first
    picks = {s["doc_id"]: int(np.argmax([r[0] for r in s["filtered_resps"]]))
             for s in evaluate([first])["samples"]["tiny_mc"]}
    _write(uploads, "mc2.jsonl", [dict(r, answer=picks[i]) for i, r in enumerate(MC_ROWS)])
    second = dict(first, task="tiny_mc2", dataset_kwargs={"data_files": {"test": str(uploads / "mc2.jsonl")}})
    out = evaluate([first, second])
    accs = {t: out["results"][t]["acc,none"] for t in ("tiny_mc", "tiny_mc2")}
    assert accs["tiny_mc"] != accs["tiny_mc2"]  # else the test could not tell pooled from first
    pooled = np.mean([s["acc"] for t in ("tiny_mc", "tiny_mc2") for s in out["samples"][t]])
    prepared = lm_eval_task.Prepared(["my_tag"], "my_tag", "catalogue", "x")
    result = lm_eval_task.to_result(out, prepared)
    assert result["metrics"]["accuracy"] == pytest.approx(pooled, abs=1e-12)
    assert result["headline"].value == pytest.approx(result["intervals"]["accuracy"]["value"], abs=1e-12)
    assert result["intervals"]["accuracy"]["n"] == 2 * len(MC_ROWS)


def test_a_cancelled_run_resumes_from_its_answered_requests(tiny_gpt2, uploads, monkeypatch):
    """Progress comes a chunk of requests at a time (so a long task can be cancelled), the answered ones are kept,
    and a rerun resumes with them to the same numbers as an uninterrupted run."""
    from llm_lab.bench import lm_eval_model
    from llm_lab.errors import JobCancelled

    monkeypatch.setattr(lm_eval_model, "CHUNK_REQUESTS", 8)
    suite = _suite({"name": "mc", "type": "lm_eval", "yaml": "mc.yaml", "batch_size": 4})
    seen = []

    def cancel_midway(done, total, message="", **_):
        seen.append(message)
        if "loglikelihood: 16/32" in message:
            raise JobCancelled()

    with pytest.raises(JobCancelled):
        runner.run_suite(LOCAL, suite, [str(tiny_gpt2)], progress=cancel_midway)
    assert any("loglikelihood: 8/32" in m for m in seen)
    (resumed,) = runner.run_suite(LOCAL, suite, [str(tiny_gpt2)])
    assert resumed.ok and resumed.stats["resumed_outputs"] == 16
    (fresh,) = runner.run_suite(LOCAL, suite, [str(tiny_gpt2)], use_cache=False)
    assert fresh.stats["resumed_outputs"] == 0
    assert [r["loglik"] for r in resumed.per_example] == [r["loglik"] for r in fresh.per_example]
    assert resumed.metrics == fresh.metrics


def test_benchmarks_page_uploads_a_task_yaml_and_its_data(monkeypatch):
    """The upload path: a task YAML and its data file stored in the workspace's folder, picked, built into the
    suite; a corrected YAML of the same name and size replaces the first; a bad file name is refused by name."""
    monkeypatch.setattr(lm_eval_task, "catalogue", lambda: ["arc_easy"])
    folder = lm_eval_task.workspace_folder("default")
    at = app_test("views/benchmarks.py").run()
    at.radio(key="b_source").set_value("Build one").run()
    at.selectbox(key="b_type").set_value("lm_eval").run()
    at.radio(key="b_lm_source").set_value("uploaded YAML").run()
    mc_data = "\n".join(json.dumps(r) for r in MC_ROWS).encode()
    at.file_uploader(key="b_lm_yaml_up").upload("mc.yaml", MC_YAML.encode(), "application/x-yaml")
    at.file_uploader(key="b_lm_data_up").upload("mc.jsonl", mc_data, "application/json").run()
    no_exceptions(at)
    assert (folder / "mc.yaml").read_text() == MC_YAML and (folder / "mc.jsonl").read_bytes() == mc_data
    at.selectbox(key="b_lm_yaml_pick").set_value("mc.yaml")
    at.number_input(key="b_limit").set_value(0).run()
    at.button(key="b_add").click().run()
    no_exceptions(at)
    (task,) = suites.parse(at.code[0].value, "test", "the built suite").tasks
    assert (task.type, task.yaml, task.task, task.limit) == ("lm_eval", "mc.yaml", None, None)
    assert lm_eval_task.prepare(LOCAL, task).data_files  # the stored files make a runnable task

    fixed = MC_YAML.replace("Answer:", "ANSWER:")  # same name, same size, new content
    assert len(fixed) == len(MC_YAML)
    at.file_uploader(key="b_lm_yaml_up").set_value(("mc.yaml", fixed.encode(), "application/x-yaml")).run()
    no_exceptions(at)
    assert (folder / "mc.yaml").read_text() == fixed

    at.file_uploader(key="b_lm_yaml_up").set_value(("my task.yaml", b"task: x\n", "application/x-yaml")).run()
    assert "my task.yaml" in " ".join(e.value for e in at.error) and not (folder / "my task.yaml").exists()


@pytest.mark.parametrize("edit, message", [
    (("doc_to_text", "doc_to_txt"), ("line 8, field `doc_to_txt`: not a field of an lm-eval task; did you mean "
                                     "`doc_to_text`?")),
    (("test_split: test", "test_split: validation"), ("line 6, field `test_split`: 'validation' is not a split "
                                                      "of the data: `data_files` makes 'test'.")),
    (("test_split: test\n", ""), "field `test_split`: name the split to score: `test_split: test`"),
])
def test_a_bad_task_yaml_is_refused_before_it_runs_naming_line_and_field(uploads, edit, message):
    spec = _suite({"name": "x", "type": "lm_eval", "yaml": MC_YAML.replace(*edit)}).tasks[0]
    with pytest.raises(lm_eval_task.LmEvalTaskError) as err:
        lm_eval_task.prepare(LOCAL, spec)
    assert message in str(err.value)


def test_a_task_yaml_that_fails_in_lm_eval_says_what_to_fix(tiny_gpt2, uploads):
    (uploads / "broken.jsonl").write_text("{not json\n")
    suite = _suite({"name": "column", "type": "lm_eval", "yaml": MC_YAML.replace("{{question}}", "{{qestion}}")},
                   {"name": "data", "type": "lm_eval", "yaml": MC_YAML.replace("mc.jsonl", "broken.jsonl")})
    column, data = runner.run_suite(LOCAL, suite, [str(tiny_gpt2)])
    assert "'qestion' is undefined" in column.error and "column names in doc_to_text" in column.error
    assert "could not be read as `json`" in data.error and "JSON parse error" in data.error


def test_acc_mutual_info_rows_show_each_option_given_its_question(tiny_gpt2, uploads):
    """With acc_mutual_info lm-eval also scores each option without its context; a row's log-likelihoods and
    prediction are still those of the options given the question (as the hf backend's)."""
    text = MC_YAML + "  - metric: acc_mutual_info\n"
    (mc,) = runner.run_suite(LOCAL, _suite({"name": "mc", "type": "lm_eval", "yaml": text}), [str(tiny_gpt2)])
    assert mc.ok, mc.error
    ref = _hf_reference(tiny_gpt2, _absolute(text, uploads))
    for row, s in zip(sorted(mc.per_example, key=lambda r: r["doc_id"]),
                      sorted(ref["samples"]["tiny_mc"], key=lambda s: s["doc_id"])):
        conditional = [float(r[0]) for r in s["filtered_resps"][:len(s["doc"]["choices"])]]
        assert list(row["loglik"].values()) == pytest.approx(conditional, abs=1e-4)
        assert row["prediction"] == s["doc"]["choices"][conditional.index(max(conditional))]
    assert mc.metrics["acc_mutual_info"] == ref["results"]["tiny_mc"]["acc_mutual_info,none"]


def test_registering_llm_lab_keeps_lm_evals_own_models():
    """lm-eval adds its own models (hf, local-completions, ...) only while its registry is empty: a process that
    imported the llm-lab model first must still find them (a fresh interpreter: the registry is per process)."""
    import subprocess
    import sys

    code = ("import llm_lab.bench.lm_eval_model\nfrom lm_eval.api.registry import get_model\n"
            "print(get_model('hf').__name__, get_model('local-completions').__name__, get_model('llm-lab').__name__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.stdout.split() == ["HFLM", "LocalCompletionsAPI", "LabLM"], done.stderr[-2000:]


def test_rolling_loglikelihood_on_an_endpoint_is_refused_not_short_of_its_first_token(models, uploads):  # noqa: F811
    """Over HTTP a text's first token has no log-probability; lm-eval's word_perplexity divides by all the words,
    so a sum without it would flatter the endpoint: the task fails saying why (the local model runs it)."""
    _write(uploads, "texts.jsonl", [{"text": t} for t in ("def add(a, b): return a + b", "import os")])
    text = ("task: tiny_ppl\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: texts.jsonl\n"
            "test_split: test\noutput_type: loglikelihood_rolling\ndoc_to_text: \"\"\ndoc_to_target: \"{{text}}\"\n"
            "metric_list:\n  - metric: word_perplexity\n")
    ep, local = runner.run_suite(LOCAL, _suite({"name": "ppl", "type": "lm_eval", "yaml": text}), ["ep", "local"])
    assert local.ok and local.metrics["word_perplexity"] > 1
    assert not ep.ok and "first token has no log-probability" in ep.error


def test_an_unweighted_group_reports_lm_evals_number_with_an_interval_of_that_number(tiny_gpt2, uploads):
    """A group with weight_by_size: false scores the mean of its subtasks' means: LLM Lab reports lm-eval's
    number, and its interval is about that number (not the pooled proportion of all documents)."""
    import lm_eval
    import numpy as np

    from llm_lab.bench.lm_eval_model import LabLM

    lm, first = LabLM(_loaded(tiny_gpt2)), _absolute(MC_YAML, uploads)

    def evaluate(tasks):
        return lm_eval.simple_evaluate(model=lm, tasks=tasks, log_samples=True, bootstrap_iters=0,
                                       task_manager=lm_eval_task._upload_manager())

    picks = {s["doc_id"]: int(np.argmax([r[0] for r in s["filtered_resps"]]))
             for s in evaluate([first])["samples"]["tiny_mc"]}
    _write(uploads, "mc2.jsonl", [dict(r, answer=picks[i]) for i, r in enumerate(MC_ROWS[:4])])  # all right
    second = dict(first, task="tiny_mc2", dataset_kwargs={"data_files": {"test": str(uploads / "mc2.jsonl")}})
    import yaml
    from lm_eval.tasks import TaskManager

    tasks_dir = uploads / "group"
    tasks_dir.mkdir()
    for cfg in (first, second):
        (tasks_dir / f"{cfg['task']}.yaml").write_text(yaml.safe_dump(cfg))
    (tasks_dir / "g.yaml").write_text(yaml.safe_dump({"group": "g", "task": ["tiny_mc", "tiny_mc2"],
                                                      "aggregate_metric_list": [{"metric": "acc", "aggregation": "mean",
                                                                                 "weight_by_size": False}]}))
    out = lm_eval.simple_evaluate(model=lm, tasks=["g"], log_samples=True, bootstrap_iters=0,
                                  task_manager=TaskManager(include_path=str(tasks_dir), include_defaults=False))
    means = [np.mean([s["acc"] for s in out["samples"][t]]) for t in ("tiny_mc", "tiny_mc2")]
    assert out["results"]["g"]["acc,none"] == pytest.approx(np.mean(means))
    result = lm_eval_task.to_result(out, lm_eval_task.Prepared(["g"], "g", "catalogue", "x"))
    ci = result["intervals"]["accuracy"]
    assert result["metrics"]["accuracy"] == pytest.approx(out["results"]["g"]["acc,none"], abs=1e-12)
    assert ci["value"] == pytest.approx(np.mean(means), abs=1e-12) and ci["low"] <= ci["value"] <= ci["high"]
    assert ci["n"] == 12 and "unweighted" in ci["method"]
