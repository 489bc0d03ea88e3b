"""ONNX export (torch.onnx's dynamo exporter, dynamic batch and sequence axes) and int8 by ONNX Runtime's
quantize_dynamic, each checked against the PyTorch outputs before it is registered.

The dynamo exporter is used because the TorchScript one (dynamo=False) traces transformers 5's attention-mask
code into a graph that is wrong on padded batches (logits off by ~5e-3 on a tiny BERT); the dynamo graph
matches within float rounding. A classifier's graph returns its logits and the last hidden state, so the
folder opens as a classifier or an encoder.
"""
from __future__ import annotations

import inspect
import logging
import tempfile
import warnings
from pathlib import Path

from .. import inference
from ..errors import ModelError
from . import checks, common
from .onnx_model import ONNX_FILE, OnnxModel

EXTERNAL_DATA_BYTES = 1.5 * 2**30  # weights above this go to a file beside the graph (protobuf's 2 GB limit)
FP32_TOLERANCE = 1e-4   # largest |output difference| an fp32 export may have against PyTorch
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
EXAMPLE = ["An example sentence to export with.", "A second one, somewhat longer, so the batch is padded."]


def _graph(model, head: str):
    """The module exported: the model's outputs as a tuple (logits and last hidden state, or the latter)."""
    import torch

    class Exported(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
            if head == "encoder":
                return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, **extra)
            return out.logits, out.hidden_states[-1]

    return Exported().eval()


def input_names(model, tokenizer) -> list[str]:
    """The inputs the tokenizer makes and the model takes (token_type_ids for BERT, not for others)."""
    accepted = inspect.signature(model.forward).parameters
    made = tokenizer(EXAMPLE[:1]).keys()
    return [name for name in INPUTS if name in INPUTS[:2] or (name in made and name in accepted)]


def export(loaded, path: Path) -> list[str]:
    """Write `loaded`'s model (float32, CPU) as an ONNX graph at `path`; returns its input names."""
    import torch

    model, tokenizer, head = loaded.model, loaded.tokenizer, loaded.head
    names = input_names(model, tokenizer)
    enc = tokenizer(EXAMPLE, padding=True, return_tensors="pt")
    args = tuple(enc[n] if n in enc else torch.ones_like(enc["input_ids"]) for n in names)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    outputs = ["last_hidden_state"] if head == "encoder" else ["logits", "last_hidden_state"]
    big = sum(p.numel() * p.element_size() for p in model.parameters()) > EXTERNAL_DATA_BYTES
    with loaded.lock, torch.inference_mode(False), _quiet():
        try:
            torch.onnx.export(_graph(model, head), args, str(path), input_names=names, output_names=outputs,
                              dynamic_shapes={n: {0: batch, 1: seq} if n in names else None for n in INPUTS}, dynamo=True,
                              external_data=big, verbose=False)
        except Exception as exc:  # the exporter's errors are long; the first line says what failed
            raise ModelError(f"{loaded.entry.name} could not be exported to ONNX ({_first_line(exc)}), so no variant "
                             f"was made. {INSTEAD}") from exc
    return names


INSTEAD = ("The exporter does not handle every architecture: make an fp16, bf16, magnitude or heads variant "
           "instead (python -m llm_lab compress methods lists them).")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


class _quiet:
    """The exporter and the quantizer print progress and advice through logging and warnings; keep them quiet."""

    def __enter__(self):
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore")
        self._level = logging.root.level
        logging.root.setLevel(logging.ERROR)
        for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript"):
            logging.getLogger(name).setLevel(logging.ERROR)

    def __exit__(self, *exc):
        logging.root.setLevel(self._level)
        self._warnings.__exit__(*exc)


def check(loaded, folder: Path, texts: list[str]) -> dict:
    """The exported graph (opened as the registry opens it) against the PyTorch model, on `texts`."""
    graph = OnnxModel(folder, loaded.head, loaded.entry.name)
    with loaded.lock:
        return checks.compare(loaded.head, checks.outputs_of(loaded.model, loaded.head),
                              checks.outputs_of(graph, loaded.head), loaded.tokenizer, texts,
                              inference.limit(loaded, checks.CHECK_TOKENS))


def _write_folder(loaded, folder: Path) -> None:
    """config.json and the tokenizer beside the graph: what the registry, onnxruntime users and Optimum's
    ORTModelFor… need to open it. The config names the class the graph was exported from (a classifier over
    an encoder's config would still say "BertModel"), on a copy: the loaded model is shared."""
    import copy

    config = copy.deepcopy(loaded.model.config)
    config.architectures = [type(loaded.model).__name__]
    config.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)


def make_onnx(actor, parent: str, params: dict, out_folder, progress) -> dict:
    loaded = common.load_parent(actor, parent)
    progress(0, 2, f"exporting {parent} to ONNX")
    export(loaded, Path(out_folder) / ONNX_FILE)
    _write_folder(loaded, Path(out_folder))
    progress(1, 2, "checking against PyTorch")
    found = check(loaded, Path(out_folder), common.sample_texts(actor, params.get("dataset")))
    if not found["max_abs_diff"] <= FP32_TOLERANCE:
        raise ModelError(f"The ONNX export of {parent} does not match PyTorch: its outputs differ by up to "
                         f"{found['max_abs_diff']:.2g} (allowed {FP32_TOLERANCE:g}) on {found['texts']} texts, so it "
                         "was not registered.")
    return {"checks": found, "runtime": "onnxruntime", "notes": []}


def make_int8(actor, parent: str, params: dict, out_folder, progress) -> dict:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    loaded = common.load_parent(actor, parent)
    progress(0, 3, f"exporting {parent} to ONNX")
    with tempfile.TemporaryDirectory(dir=out_folder, prefix=".fp32-") as tmp:
        fp32 = Path(tmp) / ONNX_FILE
        export(loaded, fp32)
        progress(1, 3, "quantizing the weights to int8")
        try:
            with _quiet():
                quantize_dynamic(fp32, Path(out_folder) / ONNX_FILE, weight_type=QuantType.QInt8,
                                 per_channel=bool(params.get("per_channel")))
        except Exception as exc:
            raise ModelError(f"ONNX Runtime could not quantize {parent}'s ONNX graph to int8 ({_first_line(exc)}), "
                             f"so no variant was made. {INSTEAD}") from exc
    _write_folder(loaded, Path(out_folder))
    progress(2, 3, "checking against PyTorch")
    found = check(loaded, Path(out_folder), common.sample_texts(actor, params.get("dataset")))
    notes = []
    if found.get("argmax_agreement", 1.0) < 0.9:
        notes.append(f"Only {found['argmax_agreement']:.0%} of the sample predictions agree with the parent's.")
    return {"checks": found, "runtime": "onnxruntime", "quantization": "dynamic int8 weights (QInt8), "
            + ("per channel" if params.get("per_channel") else "per tensor"), "notes": notes}
