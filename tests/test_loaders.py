"""The registry's loader table (llm_lab/loaders.py): which loader opens each kind of entry, and no import cycles."""
import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llm_lab import loaders, registry
from llm_lab.access import LOCAL
from llm_lab.errors import ModelError

ROOT = Path(__file__).resolve().parent.parent


def _imported_modules(path: Path) -> set[str]:
    """Every module a file imports, anywhere in it (module level or inside a function), as absolute names."""
    package = "llm_lab"
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative to llm_lab (registry.py is at the package's top)
                base = ".".join(filter(None, [package, base]))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def test_the_registry_imports_neither_compress_nor_endpoints():
    imported = _imported_modules(ROOT / "llm_lab" / "registry.py")
    bad = {m for m in imported if m.startswith(("llm_lab.compress", "llm_lab.endpoints"))}
    assert not bad, f"registry.py imports {sorted(bad)}: register a loader instead (llm_lab/loaders.py)"
    assert "llm_lab.loaders" in imported
    text = (ROOT / "llm_lab" / "registry.py").read_text()
    assert "import_module" not in text and "__import__" not in text  # nor by name


def test_loaders_imports_nothing_of_llm_lab_but_errors():
    imported = _imported_modules(ROOT / "llm_lab" / "loaders.py")
    assert {m for m in imported if m.startswith("llm_lab")} <= {"llm_lab.errors", "llm_lab.errors.ModelError"}


@pytest.mark.parametrize("first", ["llm_lab.registry", "llm_lab.loaders", "llm_lab.compress.loading",
                                   "llm_lab.compress.heads", "llm_lab.compress.common", "llm_lab.endpoints",
                                   "llm_lab.compress", "llm_lab.gguf"])
def test_no_import_cycle_whichever_module_comes_first(first):
    script = (f"import {first}\n"
              "import sys\n"
              "from llm_lab import loaders\n"
              "print([loader.name for loader in loaders.registered()])\n"
              "print('torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    names, torch_imported = done.stdout.splitlines()[-2:]
    assert names == "['endpoint', 'gguf', 'adapter', 'compressed', 'transformers']"
    if first in ("llm_lab.registry", "llm_lab.loaders", "llm_lab.endpoints", "llm_lab.gguf", "llm_lab.compress.loading"):
        assert torch_imported == "False"  # the loader table costs no heavy import


def test_importing_the_registry_imports_no_feature_until_a_load():
    script = ("import sys\nimport llm_lab.registry\n"
              "print(sorted(m for m in sys.modules if m.startswith(('llm_lab.compress', 'llm_lab.endpoints'))))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_each_shipped_kind_of_entry_is_opened_by_its_loader(tmp_path):
    builtins = {e.name: e for e in registry.builtin_models()}
    assert loaders.opening(builtins["tiny-gpt"]).name == "transformers"
    assert loaders.opening(builtins["minilm"]).name == "transformers"
    assert loaders.opening(builtins["minilm-sentiment"]).name == "adapter"  # LoRA weights over minilm
    assert loaders.opening(registry.ModelEntry("gpt2", "hub", "gpt2", "unknown")).name == "transformers"

    from llm_lab import endpoints

    endpoint = endpoints.make_entry("remote", "http://127.0.0.1:9/v1", "some-model")
    assert loaders.opening(endpoint).name == "endpoint"

    onnx = tmp_path / "tb-onnx"  # what compress.onnx_export writes: a config, a graph, no safetensors
    onnx.mkdir()
    (onnx / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (onnx / "model.onnx").write_bytes(b"")
    assert loaders.opening(registry.ModelEntry("tb-onnx", "local", str(onnx), "classifier")).name == "compressed"
    # a Hub id is never looked at as a variant folder, whatever a same-named local folder holds
    assert loaders.opening(registry.ModelEntry("x", "hub", str(onnx), "unknown")).name == "transformers"

    pruned = tmp_path / "tb-pruned"
    pruned.mkdir()
    (pruned / "config.json").write_text(json.dumps({"model_type": "bert", "llm_lab_pruned_heads": {"0": [1]}}))
    (pruned / "model.safetensors").write_bytes(b"")
    assert loaders.opening(registry.ModelEntry("tb-pruned", "local", str(pruned), "classifier")).name == "compressed"


def test_a_cast_variant_opens_in_its_recipes_dtype_and_nothing_else_has_one(tiny_bert):
    fp16 = registry.ModelEntry("tb-fp16", "local", str(tiny_bert), "classifier",
                               meta={"recipe": {"method": "fp16", "params": {}}})
    assert loaders.opening(fp16).name == "transformers"  # a plain folder, in the dtype compress's recipe says
    assert loaders.default_dtype(fp16) == "float16"
    plain = registry.ModelEntry("tb", "local", str(tiny_bert), "classifier")
    assert loaders.default_dtype(plain) is None


def test_the_registry_loads_through_the_loader_that_opens_an_entry(tiny_bert, tmp_path):
    folder = tmp_path / "spied"
    shutil.copytree(tiny_bert, folder)
    calls = []

    def load(request):
        calls.append((request.entry.location, request.head, request.kwargs["dtype"]))
        return request.model_class.from_pretrained(request.source, **request.kwargs)

    loaders.register(loaders.Loader("spy", opens=lambda entry: entry.location == str(folder.resolve()), load=load,
                                    dtype=lambda entry: "bfloat16" if entry.location == str(folder.resolve())
                                    else None, order=5))
    try:
        loaded = registry.load(LOCAL, str(folder), head="encoder")
        assert calls and calls[0][:2] == (str(folder.resolve()), "encoder")
        assert loaded.dtype == "bfloat16"  # the spy's dtype hook
        registry.load(LOCAL, str(tiny_bert), head="encoder", dtype="float32")
        assert len(calls) == 1  # another folder: the plain loader
    finally:
        loaders.unregister("spy")
        registry.forget()


def test_an_endpoint_is_opened_and_checked_by_its_loader_not_cached():
    from llm_lab import endpoints

    entry = endpoints.make_entry("remote", "http://127.0.0.1:9", "some-model", "$MY_KEY")
    registry.register(LOCAL, entry)
    assert entry.location == "http://127.0.0.1:9" and entry.meta == {"model": "some-model", "api_key_env": "MY_KEY"}
    loaded = registry.load(LOCAL, "remote")
    assert loaded.capabilities.endpoint and loaded.device == "endpoint"
    assert registry.load(LOCAL, "remote") is not loaded  # nothing to cache: an endpoint holds no weights here
    with pytest.raises(endpoints.EndpointError, match="opens only as causal-lm"):
        registry.load(LOCAL, "remote", head="classifier")
    bad = registry.ModelEntry("bad", "endpoint", "ftp://nowhere", "causal-lm", meta={"model": "m"})
    with pytest.raises(ModelError):
        registry.register(LOCAL, bad)  # the endpoint loader's check_entry refuses the URL


def test_a_loader_gives_exactly_one_way_to_open():
    with pytest.raises(ValueError, match="exactly one"):
        loaders.Loader("neither", opens=lambda entry: True)
    with pytest.raises(ValueError, match="exactly one"):
        loaders.Loader("both", opens=lambda entry: True, load=lambda r: None, open=lambda e, h: None)
