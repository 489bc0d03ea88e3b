"""Limits that keep one user from taking the server down, and the audit trail of uploads, deletes and jobs.

Each reproduction from the "hosted for a team" issue is a test here: a YAML "billion laughs", a Parquet file
that expands to millions of rows, a CSV parsed whole however long, deep JSON, three clicks queueing three
trainings, and a run estimated at thousands of GB that could still be started.
"""
import io
import json
import re

import pandas as pd
import pytest

from llm_lab import audit, data, jobs, registry, settings, store
from llm_lab.access import LOCAL, Actor
from llm_lab.bench import suite as suites
from llm_lab.errors import DataError, JobError, ModelError
from llm_lab.train import TrainConfig, resources
from llm_lab.train.config import ConfigError

COUNT = "llm_lab.jobs:count"


def _stored_datasets() -> list[str]:
    return [d.name for d in data.list_datasets(LOCAL)]


# ---------------------------------------------------------------- YAML
# 9 aliases of 9 aliases ... nine levels deep: 9**9 = 387,420,489 copies of "lol" once expanded.
BOMB = """name: lol
tasks:
  - name: t
    dataset: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]
    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
    h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
    i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


@pytest.fixture
def no_expansion(monkeypatch):
    """Fail the test if anything turns YAML nodes into values (where aliases would be expanded)."""
    def expanded(*args, **kwargs):
        raise AssertionError("the YAML was expanded before the aliases were refused")

    monkeypatch.setattr(suites, "_plain", expanded)


def test_yaml_aliases_are_refused_before_expansion(no_expansion):
    assert len(BOMB.encode()) < 400  # the bomb was 371 bytes
    with pytest.raises(suites.SuiteError) as err:
        suites.parse(BOMB, "uploaded", "lol.yaml")
    message = str(err.value)
    assert "lol.yaml, line 5: aliases (*a) are not allowed in suite files" in message
    assert "Write the values out" in message
    with pytest.raises(suites.SuiteError, match="aliases"):
        suites.save(LOCAL, BOMB)
    assert "lol" not in [s["name"] for s in suites.list_suites(LOCAL)]


def test_a_merge_key_is_an_alias_too(no_expansion):
    text = ("name: merged\nbase: &base {type: classification, dataset: demo-reviews}\n"
            "tasks:\n  - <<: *base\n    name: t\n")
    with pytest.raises(suites.SuiteError, match=r"line 4: aliases \(\*base\) are not allowed"):
        suites.parse(text)


def test_a_benchmark_job_with_the_bomb_is_not_queued(no_expansion):
    from llm_lab.bench import jobs as bench_job

    with pytest.raises(suites.SuiteError, match="aliases"):
        bench_job.submit(LOCAL, BOMB, ["minilm"])
    assert jobs.list_jobs(LOCAL) == []


def test_yaml_size_cap(monkeypatch, tmp_path):
    body = "name: big\ndescription: " + "x" * 2000 + "\ntasks:\n  - {name: t, type: classification, dataset: d}\n"
    assert suites.parse(body).name == "big"  # 2 KB is fine under the default 64 KB
    monkeypatch.setenv("LLM_LAB_YAML_MAX_KB", "1")
    with pytest.raises(suites.SuiteError, match=r"big.yaml is 2\.\d KB; a suite file may be at most 1 KB "
                                                r"\(setting yaml_max_kb\)"):
        suites.parse(body, "uploaded", "big.yaml")
    path = tmp_path / "big.yaml"
    path.write_text(body)
    with pytest.raises(suites.SuiteError, match="at most 1 KB"):
        suites.load(LOCAL, str(path))
    assert suites.upload_max_mb() == 1


def test_deep_yaml_nesting_is_refused():
    text = "name: deep\ntasks:\n  - name: t\n    type: classification\n    dataset: d\n    columns: " \
           + "[" * 40 + "]" * 40 + "\n"
    with pytest.raises(suites.SuiteError, match="nest more than 32 levels"):
        suites.parse(text)


def test_builtin_suites_still_parse():
    for name in suites.builtin_names():
        assert suites.load(LOCAL, name).tasks


# ---------------------------------------------------------------- uploads
def _csv(rows: int) -> bytes:
    return b"text,label\n" + b"".join(f"example number {i},{'ab'[i % 2]}\n".encode() for i in range(rows))


def test_csv_row_cap_stops_the_parser(monkeypatch):
    monkeypatch.setenv("LLM_LAB_UPLOAD_MAX_ROWS", "1000")
    assert len(data.read_table("ok.csv", _csv(1000))) == 1000
    parsed = []
    real = pd.read_csv

    def counting(*args, **kwargs):
        frame = real(*args, **kwargs)
        parsed.append(len(frame))
        return frame

    monkeypatch.setattr(pd, "read_csv", counting)
    with pytest.raises(DataError, match=r"big.csv has more than 1,000 rows; an upload may hold at most 1,000 "
                                        r"\(setting upload_max_rows\)"):
        data.import_dataset(LOCAL, "big", "big.csv", _csv(50_000))
    assert parsed and max(parsed) <= 1001  # not the 50,000 rows of the file
    assert "big" not in _stored_datasets()


def test_tsv_and_text_row_caps(monkeypatch):
    monkeypatch.setenv("LLM_LAB_UPLOAD_MAX_ROWS", "10")
    tsv = b"text\tlabel\n" + b"".join(f"t{i}\tx\n".encode() for i in range(11))
    with pytest.raises(DataError, match="has more than 10 rows"):
        data.read_table("d.tsv", tsv)
    lines = b"".join(f"line {i}\n\n".encode() for i in range(11))
    with pytest.raises(DataError, match="has more than 10 rows"):
        data.read_table("d.txt", lines)
    assert len(data.read_table("d.txt", b"".join(f"line {i}\n\n".encode() for i in range(10)))) == 10


def _parquet(frame: pd.DataFrame, **kwargs) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buf, **kwargs)
    return buf.getvalue()


def test_parquet_rows_are_counted_from_the_metadata_before_decoding(monkeypatch):
    import pyarrow.parquet as pq

    rows = 200_000
    raw = _parquet(pd.DataFrame({"text": ["the same review"] * rows, "label": ["pos"] * rows}))
    assert len(raw) < 20_000  # a few KB that decode to 200,000 rows
    monkeypatch.setenv("LLM_LAB_UPLOAD_MAX_ROWS", "1000")

    def decoded(*args, **kwargs):
        raise AssertionError("decoded before the row count was checked")

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", decoded)
    monkeypatch.setattr(pq.ParquetFile, "read", decoded)
    monkeypatch.setattr(pq, "read_table", decoded)
    monkeypatch.setattr(pd, "read_parquet", decoded)
    with pytest.raises(DataError, match=r"bomb.parquet has 200,000 rows; an upload may hold at most 1,000 "
                                        r"\(setting upload_max_rows\)"):
        data.import_dataset(LOCAL, "bomb", "bomb.parquet", raw)
    assert "bomb" not in _stored_datasets()


def test_parquet_that_decodes_to_more_than_the_byte_cap(monkeypatch):
    import pyarrow.parquet as pq

    value = "x" * 2**16  # 64 KB, stored once in the column's dictionary
    raw = _parquet(pd.DataFrame({"text": [value] * 100, "label": ["a", "b"] * 50}))
    meta = pq.ParquetFile(io.BytesIO(raw)).metadata
    stored = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    assert len(raw) < 2**20 and stored < 2**20  # small on disk and in the metadata: 6.4 MB only once decoded
    monkeypatch.setenv("LLM_LAB_UPLOAD_MAX_MB", "1")
    with pytest.raises(DataError, match=r"holds at least \d+\.\d MB of data once decoded; the limit is 1\.0 MB "
                                        r"\(setting upload_max_mb\)"):
        data.read_table("dict.parquet", raw)
    monkeypatch.setenv("LLM_LAB_UPLOAD_MAX_MB", "7")  # 100 × 64 KB = 6.25 MB fits
    frame = data.read_table("dict.parquet", raw)
    assert len(frame) == 100 and frame["text"].iloc[0] == value and frame["text"].dtype == object


def test_parquet_uncompressed_size_from_the_metadata(monkeypatch):
    raw = _parquet(pd.DataFrame({"x": [0.0] * 300_000}), use_dictionary=False, compression="zstd")
    assert len(raw) < 2**16  # 2.4 MB of float64 zeros, compressed to a few KB
    monkeypatch.setenv("LLM_LAB_UPLOAD_MAX_MB", "2")
    with pytest.raises(DataError, match=r"holds 2\.\d MB of data uncompressed; the limit is 2\.0 MB"):
        data.read_table("floats.parquet", raw)


def test_json_records_are_counted_before_they_are_built(monkeypatch):
    monkeypatch.setenv("LLM_LAB_UPLOAD_MAX_ROWS", "1000")
    records = [{"text": f"t, [{i}]", "label": "ab"[i % 2]} for i in range(1001)]
    as_json = json.dumps(records).encode()

    class NoLoads:
        JSONDecodeError = json.JSONDecodeError

        @staticmethod
        def loads(*args, **kwargs):
            raise AssertionError("json.loads ran before the rows were counted")

    monkeypatch.setattr(data, "json", NoLoads)
    with pytest.raises(DataError, match="r.json has 1,001 rows; an upload may hold at most 1,000"):
        data.read_table("r.json", as_json)
    columns = json.dumps({"text": [r["text"] for r in records], "label": [r["label"] for r in records]}).encode()
    with pytest.raises(DataError, match="c.json has 1,001 rows"):
        data.read_table("c.json", columns)
    monkeypatch.setattr(data, "json", json)
    lines = "\n".join(json.dumps(r) for r in records).encode()
    with pytest.raises(DataError, match="r.jsonl has more than 1,000 rows"):
        data.read_table("r.jsonl", lines)
    assert len(data.read_table("r.json", json.dumps(records[:1000]).encode())) == 1000


def _nested(levels: int) -> bytes:
    """A records file whose deepest value sits `levels` brackets down (the list and the object are 2)."""
    inner = "[" * (levels - 2) + '"x"' + "]" * (levels - 2)
    return f'[{{"text": {inner}, "label": "a"}}, {{"text": "b", "label": "b"}}]'.encode()


def test_json_nesting_depth(monkeypatch):
    assert len(data.read_table("ok.json", _nested(32))) == 2
    with pytest.raises(DataError, match="nests JSON 33 levels deep; LLM Lab reads flat records"):
        data.read_table("deep.json", _nested(33))
    with pytest.raises(DataError, match="nests JSON 200000 levels deep"):  # json.loads would hit RecursionError
        data.read_table("deeper.json", b"[" * 200_000 + b"]" * 200_000)
    brackets_in_strings = json.dumps([{"text": "[[[[" * 100, "label": "{{" * 100}]).encode()
    assert data.read_table("s.json", brackets_in_strings)["text"].iloc[0] == "[[[[" * 100


def test_json_nesting_the_scan_misses_is_a_message_not_a_recursion_error(monkeypatch):
    """Whatever the bracket scan lets through, json.loads' RecursionError never reaches the user."""
    monkeypatch.setattr(data, "MAX_JSON_DEPTH", 10**9)  # as if the scan had not seen the nesting
    deep = {"lists.json": b"[" * 100_000 + b"]" * 100_000,
            "objects.json": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
            "line.jsonl": b'{"text": "a", "label": "b"}\n' + b"[" * 100_000 + b"]" * 100_000 + b"\n"}
    for filename, body in deep.items():
        with pytest.raises(DataError, match=f"{filename} nests JSON too deep; LLM Lab reads flat records") as err:
            data.read_table(filename, body)
        assert isinstance(err.value.__cause__, RecursionError)


def test_cli_import_of_100000_nested_lists_says_what_is_wrong(tmp_path, capsys):
    from llm_lab import cli

    deep = tmp_path / "deep.json"
    deep.write_bytes(b"[" * 100_000 + b"]" * 100_000)
    assert cli.main(["data", "import", str(deep)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: deep.json nests JSON 100000 levels deep; LLM Lab reads flat records (at most 32")
    assert "Flatten it" in err and "Traceback" not in err and "RecursionError" not in err


def test_byte_cap_is_the_setting_with_the_old_variable_still_honoured(monkeypatch):
    raw = _csv(2000)
    assert len(raw) > 2**15
    monkeypatch.setenv("LLM_LAB_MAX_UPLOAD_MB", "100")  # the older name
    monkeypatch.setenv("LLM_LAB_UPLOAD_MAX_MB", str(2**14 / 2**20))
    assert data.max_upload_bytes() == 2**14  # the setting's own variable wins over the older name
    with pytest.raises(DataError, match=r"is \d+\.\d KB; the limit is 16\.0 KB \(setting upload_max_mb\)"):
        data.read_table("r.csv", raw)
    monkeypatch.delenv("LLM_LAB_UPLOAD_MAX_MB")
    assert data.max_upload_bytes() == 100 * 2**20  # the older name, where the new one is not set
    monkeypatch.delenv("LLM_LAB_MAX_UPLOAD_MB")
    settings.put(LOCAL, "upload_max_mb", 0.25)
    assert data.max_upload_bytes() == 2**18 and len(data.read_table("r.csv", raw)) == 2000


# ---------------------------------------------------------------- jobs
@pytest.fixture
def held_queue(monkeypatch):
    """Jobs stay queued: nothing runs them (what a busy worker looks like)."""
    monkeypatch.setattr(jobs, "_enqueue", lambda job_id: None)


def _count(steps: int, actor=LOCAL, **kw) -> str:
    return jobs.submit(actor, COUNT, {"steps": steps, "delay": 0, **kw}, f"count to {steps}")


def test_three_clicks_queue_one_job(held_queue):
    first = _count(5)
    for _ in range(2):
        with pytest.raises(JobError, match=f"The same job is queued already: {first} \\(count to 5\\)"):
            _count(5)
    assert [j["id"] for j in jobs.list_jobs(LOCAL)] == [first]
    jobs.cancel(LOCAL, first)
    assert jobs.get(LOCAL, _count(5))["status"] == "queued"  # once the first is cancelled, it may go again


def test_active_job_quota_per_user_across_workspaces(held_queue, monkeypatch):
    monkeypatch.setenv("LLM_LAB_MODE", "hosted")  # locally the quota applies only when the user sets one
    assert settings.get("max_active_jobs") == 3
    team = Actor("local", "admin", "team", ("team", "default"))
    ids = [_count(1), _count(2), _count(3, actor=team)]
    with pytest.raises(JobError) as err:
        _count(4)
    message = str(err.value)
    assert "local has 3 job(s) queued or running" in message and "at most 3 at a time (setting max_active_jobs)" in message
    assert all(i in message for i in ids)
    with pytest.raises(JobError, match="at most 3"):
        _count(4, actor=team)
    assert _count(4, actor=Actor("bob@example.com", "editor"))  # another user has a quota of their own
    jobs.store.execute("UPDATE jobs SET status='succeeded' WHERE id=?", (ids[0],))  # a finished job frees its slot
    assert _count(4)
    monkeypatch.setenv("LLM_LAB_MAX_ACTIVE_JOBS", "1")
    with pytest.raises(JobError, match="at most 1 at a time"):
        _count(5, actor=Actor("bob@example.com", "editor"))


def test_resume_is_held_to_the_quota(held_queue, monkeypatch):
    monkeypatch.setenv("LLM_LAB_MAX_ACTIVE_JOBS", "1")
    stopped = _count(1)
    jobs.cancel(LOCAL, stopped)
    _count(2)
    with pytest.raises(JobError, match="at most 1 at a time"):
        jobs.resume(LOCAL, stopped)
    assert jobs.get(LOCAL, stopped)["status"] == "cancelled"


def test_a_dead_workers_running_job_does_not_count(held_queue, monkeypatch):
    monkeypatch.setenv("LLM_LAB_MAX_ACTIVE_JOBS", "1")
    orphan = _count(1)
    jobs.store.execute("UPDATE jobs SET status='running', worker_pid=? WHERE id=?", (2**22 + 4321, orphan))
    assert _count(2)
    assert jobs.get(LOCAL, orphan)["status"] == "interrupted"


def test_max_running_jobs_is_gone():
    # the worker runs one job at a time: one user's running jobs are never more than one
    assert "max_running_jobs" not in settings.DEFAULTS
    assert "one job at a time" in jobs.__doc__


def test_two_trainings_differing_only_in_their_name_are_one(held_queue):
    cfg = dict(task="pretrain", preset="1M", max_steps=5, batch_size=4, device="cpu")
    from llm_lab import train

    first = train.submit(LOCAL, TrainConfig(**cfg))  # an automatic name
    with pytest.raises(JobError, match=f"The same job is queued already: {first}"):
        train.submit(LOCAL, TrainConfig(**cfg, name="another-name"))
    assert train.submit(LOCAL, TrainConfig(**dict(cfg, seed=1)))  # another seed is another run


# ---------------------------------------------------------------- training
def _gpt2_parameters(vocab, d, layers, positions) -> int:
    per_layer = 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + 2 * d + (d * 4 * d + 4 * d) + (4 * d * d + d)
    return vocab * d + positions * d + layers * per_layer + 2 * d  # the LM head shares the token embedding


def test_run_bigger_than_the_device_is_refused(monkeypatch, held_queue):
    from llm_lab import train

    monkeypatch.setattr(resources, "device_memory", lambda device: 16 * 2**30)
    cfg = TrainConfig(task="pretrain", preset="1M", arch={"n_positions": 65536}, batch_size=1024, max_steps=10,
                      device="cpu")
    # the 1M preset: vocab 2048, 128 wide, 3 layers, 4 heads; fp32 on the CPU
    params = _gpt2_parameters(2048, 128, 3, 65536)
    b, s = 1024, 65536
    activations = 3 * b * s * (17 * 128 + 2.5 * 4 * s) * 4 + 3 * b * s * 2048 * 4
    need_gb = (16 * params + activations) / 2**30
    assert need_gb > 30_000  # the 34,000 GB, about
    est = train.estimate(LOCAL, cfg)
    assert est["parameters"] == params
    shown = float(re.search(r"needs about ([\d,.]+) GB", est["refusal"]).group(1).replace(",", ""))
    assert shown == pytest.approx(need_gb, abs=0.06)
    assert "the cpu has 16.0 GB in all, so it cannot start: lower the batch size (now 1024)" in est["refusal"]
    with pytest.raises(ConfigError, match="cannot start"):
        train.submit(LOCAL, cfg)
    assert jobs.list_jobs(LOCAL) == []
    small = TrainConfig(task="pretrain", preset="1M", batch_size=4, max_steps=5, device="cpu")
    assert train.estimate(LOCAL, small)["refusal"] is None


def test_a_job_queued_around_submit_is_still_checked(monkeypatch):
    from llm_lab.train import runner

    def started(*args, **kwargs):
        raise AssertionError("the training started")

    monkeypatch.setattr(runner, "train", started)  # never a real run of this size, whatever happens
    monkeypatch.setattr(resources, "device_memory", lambda device: 2**30)
    cfg = TrainConfig(task="pretrain", preset="1M", arch={"n_positions": 65536}, batch_size=64, max_steps=3,
                      device="cpu", name="too-big")
    job = jobs.get(LOCAL, jobs.submit(LOCAL, "llm_lab.train:run", cfg.to_params(), "raw"))
    assert job["status"] == "failed" and "cannot start" in job["error"]
    assert "too-big" not in [e.name for e in registry.list_models(LOCAL)]


def test_epoch_and_step_caps(monkeypatch):
    TrainConfig(task="pretrain", epochs=50).validate()
    with pytest.raises(ConfigError, match=r"50\.5 epochs is more than a run may take here: at most 50 "
                                          r"\(setting max_epochs\)"):
        TrainConfig(task="pretrain", epochs=50.5).validate()
    with pytest.raises(ConfigError, match=r"100,001 steps is more than a run may take here: at most 100,000 "
                                          r"\(setting max_steps\)"):
        TrainConfig(task="pretrain", max_steps=100_001).validate()
    monkeypatch.setenv("LLM_LAB_MAX_EPOCHS", "2")
    with pytest.raises(ConfigError, match="at most 2 "):
        TrainConfig(task="pretrain", epochs=3).validate()


def test_steps_worked_out_from_epochs_are_capped(monkeypatch, held_queue):
    from llm_lab import train

    rows = "text,label\n" + "".join(f"review {i} of something,{'ab'[i % 2]}\n" for i in range(200))
    data.import_dataset(LOCAL, "two-hundred", "r.csv", rows.encode(), recipe=data.Recipe(train=1.0, validation=0.0))
    monkeypatch.setenv("LLM_LAB_MAX_STEPS", "100")
    cfg = TrainConfig(task="classify", model="minilm", dataset="two-hundred", epochs=10, batch_size=16, device="cpu")
    # 200 training rows, 10 % held out (no validation split): 180 rows, 12 batches of 16, 10 epochs: 120 steps
    with pytest.raises(ConfigError, match=r"120 optimizer steps \(10 epochs × 12 steps per epoch\); a run may take "
                                          r"at most 100 \(setting max_steps\)"):
        train.submit(LOCAL, cfg)
    cfg.epochs = 8  # 96 steps
    assert resources.check(LOCAL, cfg)["steps"] == 96


# ---------------------------------------------------------------- audit
def _audit(action: str) -> list[dict]:
    return audit.entries(LOCAL, action=action)


def test_uploads_deletes_and_models_are_audited(tiny_bert):
    data.list_datasets(LOCAL)  # the demo datasets are imported: not by anyone, not audited
    assert _audit("dataset") == []
    raw = _csv(20)
    data.import_dataset(LOCAL, "audited", "a.csv", raw)
    [upload] = _audit("dataset.upload")
    detail = json.loads(upload["detail"])
    assert (upload["user"], upload["target"], upload["workspace"]) == ("local", "audited", "default")
    assert detail["rows"] == 20 and detail["bytes"] == len(raw) and detail["file"] == "a.csv"
    data.delete(LOCAL, "audited")
    [deleted] = _audit("dataset.delete")
    assert deleted["target"] == "audited"

    registry.register(LOCAL, registry.ModelEntry("audited-model", "local", str(tiny_bert), "classifier"))
    registry.unregister(LOCAL, "audited-model")
    assert [(e["action"], e["target"]) for e in _audit("model")] == [
        ("model.delete", "audited-model"), ("model.register", "audited-model")]
    with pytest.raises(ModelError, match="No registered model named 'audited-model'"):
        registry.unregister(LOCAL, "audited-model")
    assert len(_audit("model")) == 2


def test_jobs_are_audited_with_what_they_do(held_queue):
    from llm_lab import train
    from llm_lab.bench import jobs as bench_job
    from llm_lab.compare import jobs as compare_jobs
    from llm_lab.explain import jobs as explain_jobs

    assert [jobs.what(fn) for fn in (train.JOB_FN, bench_job.JOB_FN, compare_jobs.JOB_FN, explain_jobs.JOB_FN)] \
        == ["train", "benchmark", "compare", "explain"]
    job_id = _count(3)
    jobs.cancel(LOCAL, job_id)
    cancel, submit = _audit("job")
    assert (submit["action"], submit["target"], json.loads(submit["detail"])) == (
        "job.submit", job_id, {"what": "jobs", "fn": COUNT, "title": "count to 3"})
    assert (cancel["action"], cancel["target"], json.loads(cancel["detail"])["was"]) == ("job.cancel", job_id, "queued")
    trained = train.submit(LOCAL, TrainConfig(task="pretrain", preset="1M", max_steps=2, batch_size=4, device="cpu"))
    entry = _audit("job.submit")[0]
    assert entry["target"] == trained and json.loads(entry["detail"])["what"] == "train"
    assert json.loads(entry["detail"])["title"].startswith("Train pretrain: GPT-2 1M on pydoc")


def test_refused_job_leaves_no_audit_entry(held_queue, monkeypatch):
    monkeypatch.setenv("LLM_LAB_MAX_ACTIVE_JOBS", "0")
    with pytest.raises(JobError):
        _count(1)
    assert _audit("job") == [] and store.query("SELECT * FROM jobs") == []


def test_audit_needs_an_admin():
    from llm_lab.access import PermissionDenied

    with pytest.raises(PermissionDenied):
        audit.entries(Actor("bob@example.com", "editor"))


# ---------------------------------------------------------------- pages
def _open_data_page():
    from tests.conftest import app_test, no_exceptions

    at = app_test("app.py").run()
    at.switch_page("views/data.py").run()
    no_exceptions(at)
    return at


def test_data_page_parses_an_upload_once_and_shows_the_caps(monkeypatch):
    from tests.conftest import no_exceptions

    data.list_datasets(LOCAL)  # the demo datasets are in: only uploads are read from here on
    calls = []
    real = data.read_table

    def counting(filename, raw):
        calls.append(filename)
        return real(filename, raw)

    monkeypatch.setattr(data, "read_table", counting)
    monkeypatch.setenv("LLM_LAB_UPLOAD_MAX_MB", "5")
    at = _open_data_page()
    assert at.file_uploader(key="ds_upload").proto.max_upload_size_mb == 5  # the browser refuses bigger files
    at.file_uploader(key="ds_upload").set_value(("r.csv", _csv(40), "text/csv")).run()
    at.slider(key="ds_train").set_value(0.5).run()
    at.text_input(key="ds_desc").set_value("forty rows").run()
    no_exceptions(at)
    assert calls == ["r.csv"]  # reruns use the parsed upload kept in the session
    at.button(key="ds_save").click().run()
    no_exceptions(at)
    assert calls == ["r.csv"] and data.get(LOCAL, "r").splits["train"] == 20

    monkeypatch.setenv("LLM_LAB_UPLOAD_MAX_ROWS", "30")
    at.file_uploader(key="ds_upload").set_value(("big.csv", _csv(40), "text/csv")).run()
    no_exceptions(at)
    assert any("big.csv has more than 30 rows" in e.value for e in at.error), [e.value for e in at.error]
    assert not any(b.key == "ds_save" for b in at.button)
    assert len(at.session_state["ds_parsed"]) == 0  # the previous upload's frame is not kept


def test_train_page_disables_start_for_a_run_too_big_for_the_device(monkeypatch):
    from tests.conftest import app_test, no_exceptions

    monkeypatch.setattr(resources, "device_memory", lambda device: 16 * 2**30)
    at = app_test("views/train.py").run()
    at.radio(key="t_task").set_value("pretrain").run()
    at.selectbox(key="t_preset").set_value("1M").run()
    at.number_input(key="t_bs_pretrain").set_value(1024)
    at.number_input(key="t_arch_1M_n_positions").set_value(65536)
    at.selectbox(key="t_dev").set_value("cpu")
    at.run()
    no_exceptions(at)
    assert at.button(key="t_start").disabled
    assert any("cannot start" in e.value and "16.0 GB" in e.value for e in at.error), [e.value for e in at.error]
    at.number_input(key="t_arch_1M_n_positions").set_value(256)
    at.number_input(key="t_bs_pretrain").set_value(8)
    at.run()
    no_exceptions(at)
    assert not at.button(key="t_start").disabled and not at.error


def test_a_laptop_has_no_job_quota_unless_its_user_sets_one(held_queue, monkeypatch):
    """Local mode: nothing gets harder for a solo user; identical jobs are still refused."""
    ids = [_count(n) for n in range(1, 6)]
    assert len(set(ids)) == 5
    monkeypatch.setenv("LLM_LAB_MAX_ACTIVE_JOBS", "5")
    with pytest.raises(JobError, match="at most 5"):
        _count(6)
