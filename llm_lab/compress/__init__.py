"""Compressed variants of registry models: each method a declared recipe (`recipes.RECIPES`), each variant a
registry model with its parent and its recipe, so it can be rebuilt and fingerprinted.

`recipes`: the declarations, `methods(head)` and `make_variant` · `save`: the variant folder written and
registered crash-safely · `common`: loading the parent, sample texts, sizes · `onnx_export` (ONNX fp32 and int8
via ONNX Runtime, checked against PyTorch) and `onnx_model` (the registry's ONNX-backed model) · `cast` (fp16 /
bf16) · `magnitude` (global magnitude pruning) · `heads` (head importance and head pruning, and rebuilding a
head-pruned model at load) · `loading` (what the registry asks of a variant folder) · `jobs` (the background
job) · `cli` (`python -m llm_lab compress`).
"""

from . import loading  # noqa: F401  (registers the registry's loader of variant folders)
