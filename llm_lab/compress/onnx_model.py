"""An ONNX export opened by the registry: called like a transformers model, run by ONNX Runtime on the CPU.

`OnnxModel(folder)(input_ids=…, attention_mask=…)` returns `.logits` (an exported classifier) and
`.last_hidden_state` (classifiers and encoders) as torch tensors, so inference.classify, the benchmark runner
and Compare use it as they use any model. It has no gradients and returns no attention weights
(capabilities.of_model reads `get_input_embeddings()` None and `attention_weights` False), so Attributions and
Attention refuse it with their usual message. `parameters()` yields shape-only (meta) tensors: the model card's
parameter count and memory are the graph's weights, int8 ones included.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers.utils import ModelOutput

from ..errors import ModelError

ONNX_FILE = "model.onnx"
ONNX_DTYPES = {1: torch.float32, 2: torch.uint8, 3: torch.int8, 6: torch.int32, 7: torch.int64, 10: torch.float16,
               16: torch.bfloat16}


@dataclass
class OnnxOutput(ModelOutput):
    logits: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None


def session_options(threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads() or os.cpu_count() or 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return options


class OnnxModel:
    """The registry's model object for a folder holding config.json, a tokenizer and model.onnx."""
    attention_weights = False  # capabilities: an exported graph returns its outputs only
    device = torch.device("cpu")
    dtype = torch.float32      # what it takes and returns; `weights_dtype` says how the weights are stored

    def __init__(self, folder, head: str, name: str = "", threads: int | None = None):
        import onnxruntime as ort
        from transformers import AutoConfig

        folder = Path(folder)
        self.config = AutoConfig.from_pretrained(folder, local_files_only=True)
        self.name_or_path = str(folder)
        self.session = ort.InferenceSession(str(folder / ONNX_FILE), session_options(threads),
                                            providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]
        wanted = "logits" if head == "classifier" else "last_hidden_state"
        if head == "causal-lm" or wanted not in self.outputs:
            raise ModelError(f"{name or folder.name} is an ONNX export of {', '.join(self.outputs)} only: it cannot "
                             f"be opened as a {head}. Open it as "
                             f"{'a classifier or an encoder' if 'logits' in self.outputs else 'an encoder'}.")
        self.head = head
        self._shapes = _initializers(folder / ONNX_FILE)
        self.weights_dtype = "int8" if any(d == torch.int8 for _, _, d in self._shapes) else "float32"
        # dynamic int8 quantizes activations with one scale per run: a row's outputs depend on the rows run with it,
        # so the batch size is part of a benchmark result's settings (bench.runner)
        self.batch_dependent = self.weights_dtype == "int8"

    def __call__(self, input_ids=None, attention_mask=None, token_type_ids=None, **extra):
        asked = sorted(k for k, v in extra.items() if v not in (None, False) and k not in ("return_dict", "use_cache"))
        if asked:
            raise NotImplementedError(f"an ONNX export takes input_ids, attention_mask and token_type_ids only "
                                      f"(asked for {', '.join(asked)})")
        if input_ids is None:
            raise NotImplementedError("an ONNX export needs input_ids (it has no input-embedding layer)")
        ids = input_ids.detach().cpu().to(torch.int64).numpy()
        given = {"input_ids": ids, "attention_mask": _array(attention_mask, np.ones_like(ids)),
                 "token_type_ids": _array(token_type_ids, np.zeros_like(ids))}
        feed = {k: given[k] for k in self.inputs}
        groups = _length_groups(given["attention_mask"])
        if groups is None:  # no padding, or not right padding: one run as given
            values = self._run(feed)
        else:
            values = _merge([(rows, self._run({k: v[rows, :width] for k, v in feed.items()})) for rows, width in groups],
                            len(ids), ids.shape[1])
        return OnnxOutput(**{k: torch.from_numpy(v) for k, v in values.items() if k in ("logits", "last_hidden_state")})

    def _run(self, feed: dict) -> dict:
        return dict(zip(self.outputs, self.session.run(self.outputs, feed)))

    forward = __call__

    # what the registry and the pages ask of a model
    def to(self, *args, **kwargs):
        return self

    def eval(self):
        return self

    def train(self, mode: bool = True):
        if mode:
            raise ModelError("An ONNX export cannot be trained: fine-tune its parent, then export again.")
        return self

    def get_input_embeddings(self):
        return None  # no gradients: Attributions refuse it

    def can_generate(self) -> bool:
        return False

    def parameters(self):
        return iter([torch.empty(shape, dtype=dtype, device="meta") for _, shape, dtype in self._shapes])

    def named_parameters(self, *args, **kwargs):
        return iter([(name, torch.empty(shape, dtype=dtype, device="meta")) for name, shape, dtype in self._shapes])

    def buffers(self):
        return iter([])


def _array(value, default: np.ndarray) -> np.ndarray:
    if value is None:
        return default
    return np.ascontiguousarray(value.detach().cpu().to(torch.int64).numpy())


MAX_GROUP = 32        # rows run together
MIN_FILL = 0.8        # a group's shortest row is at least this share of its longest: little padding is computed


def _length_groups(mask: np.ndarray) -> list[tuple] | None:
    """A right-padded batch as groups of rows of similar length, each with the width it needs: (row indices,
    width). A graph computes every position it is given, padding too; run this way a batch of mixed lengths
    costs about what its real tokens cost (the torch classifier packs its rows likewise, cls_forward). None when
    there is no padding, or it is not right padding."""
    lengths = mask.sum(1)
    if lengths.min() == mask.shape[1] or not (mask == (np.arange(mask.shape[1]) < lengths[:, None])).all():
        return None
    order = np.argsort(-lengths, kind="stable")
    groups, start = [], 0
    while start < len(order):
        longest, stop = lengths[order[start]], start + 1
        while stop < len(order) and stop - start < MAX_GROUP and lengths[order[stop]] >= MIN_FILL * longest:
            stop += 1
        groups.append((order[start:stop], int(max(longest, 1))))
        start = stop
    return groups


def _merge(parts: list[tuple], rows: int, width: int) -> dict:
    """The groups' outputs back in the batch's row order; hidden states padded back to the batch's width."""
    out = {}
    for index, values in parts:
        for name, value in values.items():
            if name not in out:
                shape = (rows, width, *value.shape[2:]) if name == "last_hidden_state" else (rows, *value.shape[1:])
                out[name] = np.zeros(shape, dtype=value.dtype)
            if name == "last_hidden_state":
                out[name][index, :value.shape[1]] = value
            else:
                out[name][index] = value
    return out


def _initializers(path: Path) -> list[tuple]:
    """(name, shape, torch dtype) of the graph's weights, read without loading their data."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return [(t.name, tuple(t.dims), ONNX_DTYPES.get(t.data_type, torch.float32)) for t in model.graph.initializer]
