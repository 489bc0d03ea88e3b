"""Team server hardening (issue 22, found by a hostile review of hosted mode): Streamlit's metrics closed on a
hosted server, another workspace's ids "not found" on delete, CSV exports safe in a spreadsheet, /admin says
why for a non-admin, bad uploads refused before they cost memory (peak RSS measured in a child process),
deeply nested JSON a 400 on `serve`, and a full disk during training said truthfully and left clean."""
from __future__ import annotations

import copy
import csv
import errno
import io
import json
import os
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from llm_lab import accounts, audit, data, jobs, paths, registry, sharing
from llm_lab.access import LOCAL, Actor
from llm_lab.cli import main as cli
from llm_lab.csv_safe import cell, frame_to_csv, rows_to_csv
from llm_lab.errors import DataError
from tests.conftest import ROOT
from tests.hosted import EDITOR, VIEWER, hosted, oidc, people  # noqa: F401

CSV = b"text,label\nlovely,pos\nawful,neg\ngreat,pos\nbad,neg\nfine,pos\npoor,neg\n"
ANA = Actor("ana@example.com", "editor", "ana-space", ("ana-space",))
BOB = Actor("bob@example.com", "editor", "bob-space", ("bob-space",))
FORMULAS = ["=HYPERLINK(\"http://evil\",\"x\")", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A2)", "\t=1", "\r=1"]


# ---------------------------------------------------------------- 1. /_stcore/metrics
def _get(url: str, headers: dict | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


def test_a_hosted_server_closes_streamlit_metrics_and_a_local_one_keeps_them(hosted, lab_server):  # noqa: F811
    """`python -m llm_lab dashboard` in hosted mode: 404 for anyone, signed in or not (and no page HTML with 200);
    the same path on a local `streamlit run app.py` is Streamlit's metrics, so the URL tested is the right one."""
    status, body = _get(f"{lab_server['url']}/_stcore/metrics")
    assert status == 200 and "# TYPE" in body and "session" in body  # local: Streamlit's OpenMetrics text
    for headers in ({}, {"X-Forwarded-Email": "admin@example.com"}, {"Accept": "application/x-protobuf"}):
        status, body = _get(f"{hosted['url']}/_stcore/metrics", headers)
        assert (status, body) == (404, "Not Found"), headers
    assert _get(f"{hosted['url']}/_stcore/health")[0] == 200  # the server is up; only the metrics are closed


def test_the_launcher_refuses_a_streamlit_without_the_metrics_hook(monkeypatch):
    from streamlit.web.server.starlette import starlette_app

    from ui import streamlit_server

    monkeypatch.delattr(starlette_app, "create_metrics_routes")
    with pytest.raises(SystemExit, match="will not start in hosted mode"):
        streamlit_server.close_metrics()


# ---------------------------------------------------------------- 2. deleting another workspace's ids
def _saved_comparison(actor: Actor) -> str:
    from llm_lab.compare import runs, saved
    from tests.test_compare import OLD_SAVED

    comp = runs.Comparison.from_dict(dict(copy.deepcopy(OLD_SAVED), id=None))
    return saved.save(actor, comp)


def _same_answer(call, theirs: str, unknown: str) -> str:
    """`call(id)` raises for an id of another workspace exactly as for an id that does not exist."""
    messages = []
    for key in (theirs, unknown):
        with pytest.raises(Exception) as raised:
            call(key)
        messages.append((type(raised.value), str(raised.value).replace(key, "ID").replace(key[:12], "ID")))
    assert messages[0] == messages[1], messages
    return messages[0][1]


def test_deleting_an_id_of_another_workspace_is_not_found_and_deletes_nothing(tiny_gpt2):
    from llm_lab.compare import saved

    data.import_dataset(ANA, "ana-reviews", "r.csv", CSV)
    comparison = _saved_comparison(ANA)
    token = sharing.create(ANA, "benchmark", "Ana's board", {"title": "t", "tables": [], "text": ["x"]})
    link = sharing.list_links(ANA)[0]["id"]
    job = jobs.submit(ANA, "llm_lab.jobs:count", {"steps": 1, "delay": 0}, "count")
    registry.register(ANA, registry.ModelEntry("ana-model", "local", str(tiny_gpt2), "causal-lm"))

    said = [_same_answer(lambda k: data.delete(BOB, k), "ana-reviews", "no-such-dataset"),
            _same_answer(lambda k: saved.delete(BOB, k), comparison, "0123456789"),
            _same_answer(lambda k: sharing.revoke(BOB, k), link, "0123456789ab"),
            _same_answer(lambda k: sharing.revoke(BOB, k), token, "not-a-token-at-all-0123456789"),
            _same_answer(lambda k: jobs.cancel(BOB, k), job, "20260101-000000-abcdef"),
            _same_answer(lambda k: registry.unregister(BOB, k), "ana-model", "no-such-model")]
    assert all("no " in m.lower() for m in said), said  # each says the thing is not there
    # nothing of Ana's was touched
    assert "ana-reviews" in [d.name for d in data.list_datasets(ANA)]
    assert saved.get(ANA, comparison).id == comparison
    assert sharing.list_links(ANA)[0]["status"] == "active"
    assert "ana-model" in [e.name for e in registry.list_models(ANA)]
    assert not [r for r in audit.entries(LOCAL, limit=100) if r["user"] == BOB.user and r["action"].endswith("delete")]


def test_the_cli_says_not_found_for_a_dataset_of_another_workspace(capsys, monkeypatch):
    monkeypatch.setenv("LLM_LAB_MODE", "hosted")
    monkeypatch.setenv("LLM_LAB_ADMINS", "root@example.com")
    for email in ("root@example.com", ANA.user, BOB.user):
        accounts.sign_in(email)
    admin = accounts.actor_for("root@example.com")
    for email in (ANA.user, BOB.user):
        accounts.set_role(admin, email, "editor")
    data.import_dataset(accounts.actor_for(ANA.user), "ana-reviews", "r.csv", CSV)
    capsys.readouterr()
    assert cli(["--as", BOB.user, "data", "delete", "ana-reviews"]) == 1
    theirs = capsys.readouterr()
    assert cli(["--as", BOB.user, "data", "delete", "no-such-dataset"]) == 1
    unknown = capsys.readouterr()
    assert "deleted" not in theirs.out and "No dataset named 'ana-reviews'" in theirs.err
    assert theirs.err.replace("ana-reviews", "X") == unknown.err.replace("no-such-dataset", "X")
    assert "ana-reviews" in [d.name for d in data.list_datasets(accounts.actor_for(ANA.user))]


# ---------------------------------------------------------------- 3. CSV formula injection
def test_the_csv_helper_quotes_text_that_starts_like_a_formula_and_keeps_numbers():
    assert [cell(v) for v in FORMULAS] == ["'" + v for v in FORMULAS]
    assert [cell(v) for v in ("plain", "a=b", " =1", "", None, -0.25, 3)] == ["plain", "a=b", " =1", "", None, -0.25, 3]
    import pandas as pd

    frame = pd.DataFrame({"=name": FORMULAS, "score": [-0.25, 1.0, -3.0, 0.0, 2.5, -1.0],
                          "n": [-1, 2, 3, 4, 5, 6]})
    rows = list(csv.reader(io.StringIO(frame_to_csv(frame).decode(), newline="")))
    assert rows[0] == ["'=name", "score", "n"]
    assert [r[0] for r in rows[1:]] == ["'" + v for v in FORMULAS]
    assert [float(r[1]) for r in rows[1:]] == [-0.25, 1.0, -3.0, 0.0, 2.5, -1.0]  # numbers stay numbers
    assert [int(r[2]) for r in rows[1:]] == [-1, 2, 3, 4, 5, 6]
    back = list(csv.reader(io.StringIO(rows_to_csv(["a", "b"], [["@x", -1], ["ok", "=1"], ["a\r=1", "b\n+1"]]),
                                       newline="")))
    assert back == [["a", "b"], ["'@x", "-1"], ["ok", "'=1"], ["a\r=1", "b\n+1"]]  # a CR inside a cell is quoted


def test_compare_show_csv_writes_no_formula(tmp_path, capsys):
    from llm_lab.compare import runs, saved
    from tests.test_compare import OLD_SAVED

    raw = copy.deepcopy(OLD_SAVED)
    raw["id"] = None
    raw["inputs"] = [{"id": "1", "text": FORMULAS[0], "label": "positive"},
                     {"id": "2", "text": FORMULAS[1], "label": "@SUM(A1:A2)"}]
    cid = saved.save(LOCAL, runs.Comparison.from_dict(raw))
    out = tmp_path / "c.csv"
    assert cli(["compare", "show", cid, "--csv", str(out)]) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    cells = [v for r in rows for v in r.values()]
    assert FORMULAS[0] not in cells and "'" + FORMULAS[0] in cells and "'" + FORMULAS[1] in cells
    assert not [v for v in cells if v[:1] in ("=", "+", "@", "\t", "\r")], cells
    # the model's probabilities are still numbers
    probs = [v for r in rows for k, v in r.items() if k.endswith("· p") and v]
    assert probs and all(0 <= float(v) <= 1 for v in probs)


def test_leaderboard_and_audit_csv_quote_formulas(capsys):
    from llm_lab.bench import leaderboard
    from llm_lab.bench.result import Headline, TaskResult

    result = TaskResult(key="k1", model="=cmd|' /C calc'!A0", suite="s", task="@evil", type="classification",
                        metrics={"accuracy": -0.5}, headline=Headline("accuracy", -0.5, n=4))
    rows = list(csv.DictReader(io.StringIO(leaderboard.export_csv([result]).decode())))
    assert rows[0]["model"] == "'=cmd|' /C calc'!A0" and rows[0]["task"] == "'@evil"
    assert float(rows[0]["value"]) == -0.5  # a negative score is a number, unquoted
    data.import_dataset(LOCAL, "plain", "r.csv", CSV)
    audit.record(LOCAL, "test.event", "=HYPERLINK(\"http://evil\")", {})
    exported = audit.to_csv(audit.entries(LOCAL, limit=10))
    targets = [r["target"] for r in csv.DictReader(io.StringIO(exported))]
    assert "'=HYPERLINK(\"http://evil\")" in targets and not [t for t in targets if t.startswith("=")]


# ---------------------------------------------------------------- 4. /admin for a non-admin
def test_an_editor_or_viewer_opening_admin_is_told_why(people, hosted):  # noqa: F811
    from tests.hosted import connected
    from ui.common import strip_invisible

    for email, role in ((EDITOR, "editor"), (VIEWER, "viewer")):
        page = people(email)
        page.goto(f"{hosted['url']}/admin")
        connected(page)
        alert = page.locator("[data-testid='stAlertContentError']")
        alert.wait_for()
        text = strip_invisible(alert.inner_text())  # plain() keeps the address from becoming a mailto link
        assert "The Admin page is for admins" in text and email in text and f"the {role} role" in text
        assert page.get_by_role("link", name="Go to Home").count() == 1
        assert page.locator("[data-testid='stDataFrame']").count() == 0  # no user list, no audit log
        sidebar = page.locator("[data-testid='stSidebarNav']").inner_text()
        assert "Admin" not in sidebar  # still not listed for them


# ---------------------------------------------------------------- 6. uploads that would cost gigabytes
def list_parquet(path: Path, columns: int = 1, groups: int = 8, rows: int = 10_000, per_row: int = 1_000,
                 text: bool = False) -> Path:
    """A small Parquet file whose list columns decode to `groups * rows * per_row` values each (8 bytes for
    int64; a 20-character string each for `text`): repeated values compress to a few KB."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = rows * per_row
    values = (pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array(["x" * 20]))
              if text else pa.array(np.zeros(n, dtype=np.int64)))
    lists = pa.ListArray.from_arrays(pa.array(np.arange(rows + 1, dtype=np.int32) * per_row), values)
    table = pa.table({**{f"values{i}": lists for i in range(columns)}, "text": pa.array(["a"] * rows)})
    with pq.ParquetWriter(path, table.schema, compression="zstd") as writer:
        for _ in range(groups):
            writer.write_table(table, row_group_size=rows)
    return path


PEAK = """
import json, sys
sys.path.insert(0, {root!r})
from llm_lab.errors import LabError
outcome = "accepted"
try:
{body}
except LabError as exc:
    outcome = str(exc)
except SystemExit as exc:
    outcome = "exit %s" % exc.code
peak = [int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")][0]
print(json.dumps({{"outcome": outcome, "peak_mb": peak / 1024}}))
"""


def peak_of(body: str, env: dict | None = None) -> dict:
    """Run `body` (Python) in a fresh process; return its outcome (an error message, or "accepted") and its
    peak resident memory in MB (VmHWM), measured in that process alone."""
    script = PEAK.format(root=str(ROOT), body=textwrap.indent(textwrap.dedent(body), "    "))
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, **(env or {})), cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _baseline() -> float:
    return peak_of("from llm_lab import data\nimport pandas, pyarrow.parquet\n")["peak_mb"]


# what reading a refused file may add to a process that imported pandas and pyarrow: well under the 200 MB
# the file's data would be, let alone the 0.6-1.1 GB it decodes to
REFUSAL_HEADROOM_MB = 60


def test_parquet_list_columns_are_counted_by_their_values_and_refused_before_decoding(tmp_path):
    cases = {"one list column, 610 MB of int64": list_parquet(tmp_path / "one.parquet"),
             "four list columns": list_parquet(tmp_path / "four.parquet", columns=4, groups=2),
             "list of strings, 1.1 GB of text": list_parquet(tmp_path / "text.parquet", groups=5, text=True)}
    base = _baseline()
    for what, path in cases.items():
        assert path.stat().st_size < 16_000, (what, path.stat().st_size)  # a few KB on disk
        got = peak_of(f"from llm_lab import data\ndata.read_table({path.name!r}, open({str(path)!r}, 'rb').read())")
        assert "once decoded; the limit is 200.0 MB" in got["outcome"], (what, got)
        assert got["peak_mb"] < base + REFUSAL_HEADROOM_MB, (what, got, base)
    assert "holds at least 610." in peak_of(f"from llm_lab import data\ndata.read_table('one.parquet', "
                                            f"open({str(cases['one list column, 610 MB of int64'])!r}, 'rb').read())")[
        "outcome"]


def test_list_columns_under_the_cap_are_refused_by_name_not_dropped(tmp_path):
    path = list_parquet(tmp_path / "small.parquet", groups=1, rows=100, per_row=10)
    with pytest.raises(DataError, match=r"values0 \(list<element: int64>\).*one value per cell"):
        data.read_table("small.parquet", path.read_bytes())


def test_data_import_refuses_a_3_gb_file_by_its_size_before_reading_it(tmp_path):
    big = tmp_path / "big.csv"
    with open(big, "wb") as handle:  # sparse: 3 GB long, no disk used, and no byte of it read
        handle.write(b"text,label\n")
        handle.truncate(3 * 2**30)
    base = _baseline()
    got = peak_of(f"from llm_lab.cli import main\nraise SystemExit(main(['data', 'import', {str(big)!r}]))",
                  env={"LLM_LAB_HOME": str(tmp_path / "home"), "LLM_LAB_JOBS_INLINE": "1"})
    assert got["outcome"] == "exit 1", got
    assert got["peak_mb"] < base + REFUSAL_HEADROOM_MB, (got, base)
    with pytest.raises(DataError, match=r"big.csv is 3072.0 MB; the limit is 200.0 MB \(setting upload_max_mb\)"):
        data.read_file(big)


def test_an_accepted_parquet_upload_stays_within_a_stated_bound(tmp_path):
    """200,000 distinct texts (19 MB, under the cap) are read within a stated bound: 250 MB above a process that
    imported pandas and pyarrow (measured: about 200 MB; pyarrow's reader builds a dictionary of every value
    seen so far for each batch, which was 470 MB before each batch was decoded and freed as it came)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "ok.parquet"
    rows = 200_000
    pq.write_table(pa.table({"text": [f"review number {i} " + "x" * 80 for i in range(rows)],
                             "label": ["pos", "neg"] * (rows // 2)}), path)
    base = _baseline()
    got = peak_of(f"from llm_lab import data\nframe = data.read_table('ok.parquet', open({str(path)!r}, 'rb').read())\n"
                  "assert len(frame) == 200_000 and list(frame.columns) == ['text', 'label']")
    assert got["outcome"] == "accepted" and got["peak_mb"] < base + 250, (got, base)


# ---------------------------------------------------------------- 7. serve and deeply nested JSON
@pytest.fixture(scope="module")
def lm_server(tmp_path_factory, tiny_gpt2):
    from tests.test_serve import _start, _stop

    server = _start(tmp_path_factory, "tiny-lm", tiny_gpt2, "causal-lm", "--api-key-env", "LLM_LAB_TEST_SERVE_KEY")
    yield server
    _stop(server)


def test_serve_answers_deeply_nested_json_with_400_invalid_json(lm_server):
    import httpx

    from tests.test_serve import KEY

    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    body = b"[" * 20_000 + b"]" * 20_000
    for route in ("/v1/completions", "/v1/chat/completions"):
        response = httpx.post(lm_server["url"] + route, content=body, headers=headers, timeout=60)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid_json" and "nested too deeply" in error["message"]
    ok = httpx.post(lm_server["url"] + "/v1/completions", headers=headers, timeout=60,
                    json={"model": "tiny-lm", "prompt": "hi", "max_tokens": 2})
    assert ok.status_code == 200  # the server still answers


# ---------------------------------------------------------------- 8. a full disk during training
def _fail_checkpoint_save(monkeypatch, at_step: int) -> None:
    """The disk fills up while the Trainer saves checkpoint-`at_step`: config.json is written, then ENOSPC."""
    from transformers import PreTrainedModel

    real = PreTrainedModel.save_pretrained

    def save(self, folder, *args, **kwargs):
        if Path(folder).name == f"checkpoint-{at_step}":
            self.config.save_pretrained(folder)  # what the real save writes first
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, folder, *args, **kwargs)

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", save)


@pytest.mark.parametrize("fail_at, kept", [(2, []), (4, ["checkpoint-2"])])
def test_a_full_disk_during_training_says_what_resuming_does_and_leaves_no_half_checkpoint(
        tiny_bert, monkeypatch, fail_at, kept):
    from llm_lab.train.config import TrainConfig
    from tests.test_train import add_dataset, fast, sentiment_csv

    add_dataset("sent", sentiment_csv(40))
    _fail_checkpoint_save(monkeypatch, fail_at)
    cfg = TrainConfig(task="classify", model=str(tiny_bert), dataset="sent", name="full-disk", save_steps=2,
                      **fast(epochs=2.0))
    job = jobs.get(LOCAL, jobs.submit(LOCAL, "llm_lab.train:run", cfg.as_dict(), "disk"))
    assert job["status"] == "failed" and "The disk is full" in job["error"], job["error"]
    folder = paths.home() / "jobs" / job["id"] / "checkpoints"
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith("checkpoint-")) == kept
    if kept:
        assert f"it continues from its last checkpoint ({kept[0]})" in job["error"]
    else:
        assert "last checkpoint" not in job["error"] and "no checkpoint was saved" in job["error"]
        assert "starts from the beginning" in job["error"]
