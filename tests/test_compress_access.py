"""Who may compress, evaluate and serve, on a hosted server.

A viewer reads a workspace's evaluations but neither makes variants nor starts evaluations; an editor of
workspace A makes variants of A's models into A's models folder and evaluates them, and an editor of workspace B
can neither open, compress, evaluate nor serve them (by name or by the folder's path), nor read A's reports.
"""
import shutil

import pytest

from llm_lab import cli, jobs, paths, registry
from llm_lab.access import Actor, PermissionDenied
from llm_lab.compress import evaluate, jobs as compress_jobs
from llm_lab.compress.recipes import make_variant
from llm_lab.errors import JobError, ModelError

EDITOR_A = Actor("eve@example.com", "editor", "team-a", ("team-a",))
VIEWER_A = Actor("val@example.com", "viewer", "team-a", ("team-a",))
EDITOR_B = Actor("bob@example.com", "editor", "team-b", ("team-b",))
NOT_HERE = "is not a model you can open here"


@pytest.fixture
def team_a(monkeypatch, tmp_path, tiny_bert):
    """A hosted server (model roots: an empty folder); team-a has a fine-tuned classifier `parent-a` in its models
    folder (as a training run leaves it) and its bf16 variant `parent-a-bf16`, made by its editor."""
    roots = tmp_path / "roots"
    roots.mkdir()
    monkeypatch.setenv("LLM_LAB_MODE", "hosted")
    monkeypatch.setenv("LLM_LAB_MODEL_ROOTS", str(roots))
    registry.forget()
    folder = paths.workspace_dir("models", "team-a") / "parent-a"
    shutil.copytree(tiny_bert, folder)
    registry.register(EDITOR_A, registry.ModelEntry("parent-a", "trained", str(folder), "classifier"))
    variant = make_variant(EDITOR_A, "parent-a", "bf16")
    yield {"folder": folder, "variant": variant}
    registry.forget()


def test_an_editors_variant_lands_in_its_workspace_and_is_evaluated_there(team_a):
    variant = team_a["variant"]
    assert variant.name == "parent-a-bf16" and variant.parent == "parent-a" and variant.workspace == "team-a"
    assert variant.location == str(paths.workspace_dir("models", "team-a") / "parent-a-bf16")
    assert "parent-a-bf16" not in {e.name for e in registry.list_models(EDITOR_B)}
    job_id = evaluate.submit(EDITOR_A, "parent-a", ["parent-a-bf16"], dataset="demo-reviews", limit=6,
                             speed_examples=2, repeats=1, drift_examples=0, memory=False)
    assert jobs.get(EDITOR_A, job_id)["status"] == "succeeded", jobs.get(EDITOR_A, job_id)["error"]
    assert [m.name for m in evaluate.report_of(VIEWER_A, job_id).models] == ["parent-a", "parent-a-bf16"]
    assert [j["id"] for j in evaluate.history(VIEWER_A)] == [job_id]     # a viewer reads the team's reports
    with pytest.raises(JobError, match="No job with id"):                 # another workspace does not
        evaluate.report_of(EDITOR_B, job_id)
    assert evaluate.history(EDITOR_B) == []


def test_a_viewer_neither_makes_variants_nor_starts_evaluations(team_a):
    with pytest.raises(PermissionDenied, match=r"val@example.com \(viewer\) may not make model variants"):
        make_variant(VIEWER_A, "parent-a", "magnitude")
    with pytest.raises(PermissionDenied, match="may not make model variants"):
        compress_jobs.submit(VIEWER_A, "parent-a", "magnitude")
    with pytest.raises(PermissionDenied, match="may not start jobs"):
        evaluate.submit(VIEWER_A, "parent-a", ["parent-a-bf16"], dataset="demo-reviews")
    with pytest.raises(PermissionDenied, match="may not evaluate models"):   # the job's own check, run as a viewer
        evaluate.evaluate(VIEWER_A, "parent-a", ["parent-a-bf16"],
                          evaluate.build_suite(VIEWER_A, "parent-a", "demo-reviews"))
    assert jobs.list_jobs(VIEWER_A) == []
    assert {e.name for e in registry.list_models(VIEWER_A) if e.source == "trained"} == {"parent-a", "parent-a-bf16"}


@pytest.mark.parametrize("how", ["name", "path"])
def test_another_workspace_can_neither_compress_nor_evaluate_nor_serve_its_models(team_a, how, capsys):
    parent = "parent-a" if how == "name" else str(team_a["folder"])
    for attempt in (lambda: make_variant(EDITOR_B, parent, "bf16"),
                    lambda: compress_jobs.submit(EDITOR_B, parent, "bf16"),
                    lambda: evaluate.submit(EDITOR_B, parent, ["parent-a-bf16"], dataset="demo-reviews"),
                    lambda: evaluate.submit(EDITOR_B, "tiny-gpt", [parent], dataset="demo-docs")):
        with pytest.raises(ModelError, match=NOT_HERE):
            attempt()
    assert jobs.list_jobs(EDITOR_B) == []
    assert not paths.workspace_dir("models", "team-b").exists() or \
        list(paths.workspace_dir("models", "team-b").iterdir()) == []
    # `serve MODEL` loads as the command line's actor: B's user cannot serve A's model either
    args = cli.build_parser().parse_args(["serve", parent, "--check", "--api-key", "k"])
    args.actor = EDITOR_B
    from llm_lab.serve import cli as serve_cli

    with pytest.raises(ModelError, match=NOT_HERE):
        serve_cli.run(args)
    args.actor = EDITOR_A
    if how == "name":  # A's editor can (a path to a workspace folder is not under the model roots, for anyone)
        assert serve_cli.run(args) == 0 and "serving parent-a (classifier" in capsys.readouterr().out
