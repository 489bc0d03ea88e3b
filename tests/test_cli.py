"""`python -m llm_lab …` as a Unix user runs it: output on stdout, errors on stderr, exit codes 0/1/2."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
BAD = Path(__file__).parent / "bad_files"


def cli(*args, home):
    env = dict(os.environ, LLM_LAB_HOME=str(home), HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "llm_lab", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)


def test_models_list_and_show(lab_home):
    out = cli("models", "list", home=lab_home)
    assert out.returncode == 0, out.stderr
    header, *rows = out.stdout.splitlines()
    assert header.split()[:3] == ["NAME", "SOURCE", "HEAD"]
    assert any(r.split()[:3] == ["minilm", "builtin", "encoder"] for r in rows)
    listed = json.loads(cli("models", "list", "--json", home=lab_home).stdout)
    assert "minilm" in [m["name"] for m in listed]

    out = cli("models", "show", "minilm", home=lab_home)
    assert out.returncode == 0, out.stderr
    card = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in out.stdout.splitlines() if ":" in line
                                               and not line.startswith("note"))}
    assert (card["layers"], card["heads"], card["hidden_size"], card["vocab_size"]) == ("6", "12", "384", "30522")
    assert card["device"] == "cpu" and card["head_is_new"] == "False"

    out = cli("models", "show", "minilm", "--head", "classifier", home=lab_home)
    assert out.returncode == 0 and "freshly initialised" in out.stdout


def test_models_show_failures(lab_home, tmp_path):
    out = cli("models", "show", str(tmp_path), home=lab_home)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.startswith("error: ") and "config.json is missing" in out.stderr
    assert "Traceback" not in out.stderr
    out = cli("models", "show", "some-org/missing", home=lab_home)
    assert out.returncode == 1 and "HF_HUB_OFFLINE=1" in out.stderr and "minilm" in out.stderr


def test_data_import_and_list(lab_home, tmp_path):
    csv = tmp_path / "my_reviews.csv"
    pd.DataFrame({"body": [f"review number {i}" for i in range(40)],
                  "stars": ["good", "bad"] * 20}).to_csv(csv, index=False)
    out = cli("data", "import", csv, "--text-col", "body", "--label-col", "stars", "--seed", "3", home=lab_home)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("imported my_reviews: 40 rows")
    assert "'text': 'body'" in out.stdout and "'label': 'stars'" in out.stdout

    out = cli("data", "list", home=lab_home)
    assert out.returncode == 0
    rows = {line.split()[0]: line.split() for line in out.stdout.splitlines()[1:]}
    assert rows["my_reviews"][1] == "40"
    assert {"demo-reviews", "demo-prompts", "demo-docs"} <= set(rows)
    listed = {d["name"]: d for d in json.loads(cli("data", "list", "--json", home=lab_home).stdout)}
    assert listed["my_reviews"]["labels"] == 2 and set(listed["my_reviews"]["roles"].split(",")) == {"text=body", "label=stars"}

    again = cli("data", "import", csv, "--text-col", "body", home=lab_home)
    assert again.returncode == 1 and "exists already" in again.stderr

    out = cli("data", "delete", "my_reviews", home=lab_home)
    assert out.returncode == 0 and out.stdout.strip() == "deleted my_reviews"
    assert cli("data", "delete", "my_reviews", home=lab_home).returncode == 1


def test_data_import_errors(lab_home, tmp_path):
    out = cli("data", "import", tmp_path / "nope.csv", home=lab_home)
    assert out.returncode == 1 and out.stdout == "" and "no such file" in out.stderr
    out = cli("data", "import", BAD / "latin1.csv", home=lab_home)
    assert out.returncode == 1 and "not UTF-8" in out.stderr and "Traceback" not in out.stderr
    out = cli("data", "import", BAD / "missing_mapped_column.csv", "--text-col", "review", home=lab_home)
    assert out.returncode == 1 and "no column 'review'" in out.stderr


def test_usage_errors_exit_2(lab_home):
    out = cli(home=lab_home)
    assert out.returncode == 2 and "usage:" in out.stdout
    out = cli("frobnicate", home=lab_home)
    assert out.returncode == 2 and "invalid choice" in out.stderr
    out = cli("data", "import", home=lab_home)
    assert out.returncode == 2 and "required" in out.stderr
    assert cli("--help", home=lab_home).returncode == 0
