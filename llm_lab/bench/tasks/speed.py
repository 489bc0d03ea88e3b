"""Speed: latency of one example (p50/p95), batched throughput (examples/s, tokens/s), peak memory and
the model's load time, on the task's texts with the model's own head."""
from __future__ import annotations

import resource
import time

import numpy as np
import torch

from ...batching import pad, run_batched
from .common import headline, render


def _sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def run(state) -> dict:
    spec, loaded, frame = state.spec, state.loaded, state.frame
    tok, model, device = loaded.tokenizer, loaded.model, loaded.device
    texts = render(spec.prompt, frame, "text")
    enc = tok(texts, truncation=True, max_length=state.max_length, padding=False, return_attention_mask=False)["input_ids"]
    lengths = np.array([len(x) for x in enc])
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0

    @torch.inference_mode()
    def forward(batch):
        ids, mask = pad([enc[p] for p in batch], pad_id)
        model(input_ids=ids.to(device), attention_mask=mask.to(device))
        _sync(device)

    cuda = str(device).startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    total_steps = len(texts) * (1 + spec.repeats)
    step = [0]
    latencies = []
    with loaded.lock:
        forward([0])  # warm-up
        for i in range(len(texts)):
            t0 = time.perf_counter()
            forward([i])
            latencies.append(time.perf_counter() - t0)
            step[0] += 1
            state.progress(step[0], total_steps, f"latency {i + 1}/{len(texts)}")
        rates = []
        for r in range(spec.repeats):
            t0 = time.perf_counter()

            def on_batch(batch, _):
                step[0] += len(batch)
                state.progress(step[0], total_steps, f"throughput run {r + 1}/{spec.repeats}")

            state.stats["batch_size"] = run_batched(list(range(len(texts))), lengths, forward, state.batch_size,
                                                    device, on_batch)
            rates.append(len(texts) / (time.perf_counter() - t0))
    lat = np.array(latencies) * 1000
    peak = (torch.cuda.max_memory_allocated() / 2**20 if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    eps = float(np.median(rates))
    values = {"examples_per_s": eps, "tokens_per_s": eps * float(lengths.mean()),
              "latency_p50_ms": float(np.percentile(lat, 50)), "latency_p95_ms": float(np.percentile(lat, 95)),
              "peak_memory_mb": float(peak), "load_seconds": float(loaded.load_seconds)}
    state.notes.append("Peak memory is " + ("CUDA memory allocated by torch during the task." if cuda else
                       "the process's resident-set high-water mark (CPU)."))
    head = headline("examples_per_s", values, {"low": float(min(rates)), "high": float(max(rates)),
                                              "confidence": "min-max", "n_resamples": spec.repeats})
    rows = [{"id": int(frame["id"].iloc[i]), "text": texts[i][:200], "tokens": int(lengths[i]),
             "latency_ms": round(float(lat[i]), 3)} for i in range(len(texts))]
    return {"metrics": values, "details": {"rates": rates}, "headline": head, "per_example": rows}
