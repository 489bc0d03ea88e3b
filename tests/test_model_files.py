"""The Models page's card read from a folder's files must say what the loaded model's card says."""
import pytest

from llm_lab import capabilities, model_files, registry
from llm_lab.access import LOCAL

SIZES = ("parameters", "layers", "heads", "hidden_size", "vocab_size", "max_positions", "labels")


@pytest.mark.parametrize("name", ["minilm", "minilm-sentiment", "tiny-gpt"])
def test_the_card_from_files_matches_the_loaded_model(name):
    entry = registry.resolve(LOCAL, name)
    head = capabilities.default_head(entry)
    from_files = model_files.card(LOCAL, entry, head)
    loaded = registry.load(LOCAL, name, head=head).info()
    assert {k: from_files[k] for k in SIZES} == {k: loaded[k] for k in SIZES}
    assert from_files["parameters"] == sum(p.numel() for p in registry.load(LOCAL, name, head=head).model.parameters())


def test_integer_buffers_and_lora_matrices_are_not_parameters(tmp_path):
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(3, 4), "position_ids": torch.arange(7).unsqueeze(0),
               "layer.lora_A.weight": torch.zeros(2, 4), "mask": torch.ones(5, dtype=torch.bool),
               "half": torch.zeros(6, dtype=torch.bfloat16)}, str(tmp_path / "model.safetensors"))
    assert model_files.parameter_count(tmp_path) == 12 + 6


def test_a_file_that_is_not_safetensors_is_refused(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"\xff" * 16)
    with pytest.raises(ValueError, match="not a safetensors file"):
        model_files.parameter_count(tmp_path)


def test_a_hub_id_has_no_card_from_files():
    entry = registry.ModelEntry("x", "hub", "org/model", "encoder")
    assert model_files.card(LOCAL, entry, "encoder") is None
