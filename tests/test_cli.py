"""`python -m llm_lab …` as a Unix user runs it: output on stdout, errors on stderr, exit codes 0/1/2."""
import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

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


# ---------------------------------------------------------------- a full disk
@pytest.fixture
def full_disk(tmp_path):
    """A 4 MB tmpfs to fill up (mounting needs root; skipped where it cannot be made)."""
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (the monkeypatched test covers the message)")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4M", "tmpfs", str(mnt)], capture_output=True)
    if made.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(folder: Path) -> None:
    with open(folder / "filler", "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    try:  # the last few blocks
        with open(folder / "filler2", "wb") as handle:
            while True:
                handle.write(b"\0" * 512)
                handle.flush()
    except OSError:
        pass


def test_on_a_full_disk_lists_work_and_an_import_says_the_disk_is_full(full_disk, tmp_path):
    home = full_disk / "home"
    csv = tmp_path / "t.csv"
    csv.write_text("text,label\n" + "".join(f"example {i},{'ab'[i % 2]}\n" for i in range(20)))
    assert cli("data", "import", csv, home=home).returncode == 0
    assert cli("data", "list", home=home).returncode == 0  # the demo datasets are written now, while there is room
    _fill(full_disk)
    assert shutil.disk_usage(full_disk).free < 64 * 1024

    jobs = cli("jobs", "list", home=home)  # reads only: it used to fail opening the store ("disk I/O error")
    assert jobs.returncode == 0, jobs.stderr
    assert jobs.stdout.split() == ["ID", "STATUS", "KIND", "PROGRESS", "TITLE", "MESSAGE"]
    listed = cli("data", "list", home=home)
    assert listed.returncode == 0, listed.stderr
    assert {"t", "demo-reviews"} <= {line.split()[0] for line in listed.stdout.splitlines()[1:]}

    again = cli("data", "import", csv, "--name", "t2", home=home)
    assert again.returncode == 1 and "Traceback" not in again.stderr, again.stderr
    assert f"the disk holding LLM_LAB_HOME ({home}) is full" in again.stderr
    assert "Free space on it" in again.stderr
    assert not [p.name for p in (home / "datasets").iterdir() if "t2" in p.name]  # nothing half-written

    (full_disk / "filler").unlink()  # room again: the same commands write as usual
    assert cli("data", "import", csv, "--name", "t2", home=home).returncode == 0
    assert "t2" in cli("data", "list", home=home).stdout


def test_data_import_on_a_full_disk_prints_the_message_not_a_traceback(lab_home, tmp_path, monkeypatch, capsys):
    from llm_lab import cli as lab_cli

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    csv = tmp_path / "t.csv"
    csv.write_text("text,label\na,x\nb,y\nc,x\n")
    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    assert lab_cli.main(["data", "import", str(csv)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: t.csv was not saved: the disk holding LLM_LAB_HOME ({lab_home}) is full")
    assert "Free space on it" in err
