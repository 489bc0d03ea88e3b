"""Shared basics: padding and length buckets, context length, out-of-memory detection, attribution
links and failure messages (llm_lab.batching, llm_lab.device, llm_lab.explain.links, llm_lab.errors)."""
import errno
from types import SimpleNamespace
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
import torch
import transformers

from llm_lab import batching, device, errors
from llm_lab.explain.links import attribution_link

ROWS = [[5, 6, 7], [8], [9, 10]]


# ---------------------------------------------------------------- padding
def test_pad_right_matches_a_hand_built_tensor():
    ids, mask = batching.pad(ROWS, 0)
    assert ids.dtype == mask.dtype == torch.int64
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0], [9, 10, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0], [1, 1, 0]]


def test_pad_left_matches_a_hand_built_tensor():
    ids, mask = batching.pad(ROWS, -1, side="left")
    assert torch.equal(ids, torch.tensor([[5, 6, 7], [-1, -1, 8], [-1, 9, 10]]))
    assert torch.equal(mask, torch.tensor([[1, 1, 1], [0, 0, 1], [0, 1, 1]]))


def test_pad_rounds_the_width_up_takes_tensors_and_refuses_an_unknown_side():
    ids, mask = batching.pad([torch.tensor([1, 2, 3]), np.array([4])], 0, multiple_of=4, device="cpu")
    assert ids.tolist() == [[1, 2, 3, 0], [4, 0, 0, 0]] and mask.sum(1).tolist() == [3, 1]
    ids, mask = batching.pad([[], []], 7)
    assert ids.tolist() == [[7], [7]] and mask.tolist() == [[0], [0]]  # never a zero-width tensor
    with pytest.raises(ValueError):
        batching.pad(ROWS, 0, side="middle")


def test_length_buckets_group_similar_lengths_within_size_and_budget():
    lengths = [5, 1, 3, 1, 4, 2]
    assert batching.length_order(range(6), lengths) == [1, 3, 5, 2, 4, 0]  # ties keep their order
    assert batching.length_order(range(6), lengths, longest_first=True) == [0, 4, 2, 5, 1, 3]
    assert batching.length_buckets(lengths, batch_size=4) == [[1, 3, 5, 2], [4, 0]]
    # budget 6: a bucket of n members padded to width w holds while n x w <= 6
    assert batching.length_buckets(lengths, token_budget=6) == [[1, 3, 5], [2], [4], [0]]
    assert batching.length_buckets([10, 10], token_budget=1) == [[0], [1]]  # at least one each
    assert batching.length_buckets(lengths, batch_size=2, positions=[0, 2, 4]) == [[2, 4], [0]]


# ---------------------------------------------------------------- context length
def _model(config):
    return SimpleNamespace(config=config)


def test_context_length_of_gpt2_and_bert_configs():
    assert batching.context_length(_model(transformers.GPT2Config())) == 1024
    assert batching.context_length(_model(transformers.BertConfig())) == 512
    assert batching.context_length(transformers.GPT2Config(n_positions=64)) == 64  # a config works too


def test_context_length_takes_the_smaller_of_config_and_a_real_tokenizer_limit():
    roberta_like = _model(transformers.BertConfig(max_position_embeddings=514))
    assert batching.context_length(roberta_like, SimpleNamespace(model_max_length=512)) == 512
    gpt2 = _model(transformers.GPT2Config())
    assert batching.context_length(gpt2, SimpleNamespace(model_max_length=int(1e30))) == 1024  # "no limit"
    assert batching.context_length(gpt2, SimpleNamespace(model_max_length=4096)) == 1024


def test_context_length_falls_back_to_the_tokenizer_then_512():
    bare = _model(SimpleNamespace())
    assert batching.context_length(bare, SimpleNamespace(model_max_length=300)) == 300
    assert batching.context_length(bare, SimpleNamespace(model_max_length=int(1e30))) == 512
    assert batching.context_length(bare) == batching.FALLBACK_CONTEXT == 512


def test_context_length_of_the_tiny_models(tiny_gpt2, tiny_bert):
    for folder in (tiny_gpt2, tiny_bert):
        config = transformers.AutoConfig.from_pretrained(folder)
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
        assert batching.context_length(_model(config), tokenizer) == 128


# ---------------------------------------------------------------- out of memory
def test_is_out_of_memory():
    assert device.is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert device.is_out_of_memory(torch.cuda.OutOfMemoryError("x"))  # by class, whatever the message
    assert device.is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert device.is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"))
    assert not device.is_out_of_memory(RuntimeError("Expected all tensors to be on the same device"))
    assert not device.is_out_of_memory(ValueError("bad value"))
    assert not device.is_out_of_memory(MemoryError())


def test_run_batched_halves_on_torch_out_of_memory():
    def forward(batch):
        if len(batch) > 3:
            raise torch.OutOfMemoryError("CUDA out of memory.")
        return batch

    assert batching.run_batched(list(range(20)), np.arange(20), forward, 16) == 2


# ---------------------------------------------------------------- links and messages
def test_attribution_link_encodes_text_and_names_a_dataset_row():
    link = attribution_link("my model", "great & more?")
    assert link == "/attributions?model=my+model&text=great+%26+more%3F"
    assert parse_qs(urlparse(link).query) == {"model": ["my model"], "text": ["great & more?"]}
    assert attribution_link("m", dataset="d", example=np.int64(3)) == "/attributions?model=m&dataset=d&example=3"
    assert attribution_link("m", "t", "d", "row-7").endswith("&dataset=d&example=row-7")
    assert attribution_link("m", "t", None, 3) == "/attributions?model=m&text=t"  # a row needs its dataset


def test_failure_message():
    assert errors.failure_message(errors.DataError("Column 'x' is missing.")) == "Column 'x' is missing."
    assert errors.failure_message(KeyError("k")) == "KeyError: 'k'"
    oom = errors.failure_message(RuntimeError("CUDA out of memory"))
    assert oom == f"{errors.OOM_ADVICE} (RuntimeError: CUDA out of memory)"
    assert errors.failure_message(RuntimeError("CUDA out of memory"), oom_advice="Smaller!").startswith("Smaller! (")
    full = OSError(errno.ENOSPC, "No space left on device")
    assert errors.is_disk_full(full) and not errors.is_disk_full(OSError(errno.ENOENT, "gone"))
    assert errors.failure_message(full, disk_folder="/lab").startswith("The disk is full: free space under /lab")
    assert errors.failure_message(ValueError("v"), unexpected="Unexpected error. ") == "Unexpected error. ValueError: v"
