"""Speed: latency of one example (p50/p95), batched throughput (examples/s, tokens/s), peak memory and
the model's load time, on the task's texts with the model's own head."""
from __future__ import annotations

import resource
import time

import numpy as np
import torch

from ... import inference
from .common import headline, render


# What the timings mean changed (version 2: the forward every feature runs for the head, `inference.infer`, in
# batches of exactly the size asked for): results measured the old way are another computation (runner.result_key).
VERSION = 2


def run(state) -> dict:
    spec, loaded, frame = state.spec, state.loaded, state.frame
    device = loaded.device
    texts = render(spec.prompt, frame, "text")
    tokens = inference.tokenize(loaded, texts, max_length=spec.max_length)  # once: latency is the model's alone
    lengths = np.array(tokens.lengths)

    def forward(batch, batch_size=1, on_batch=None) -> int:
        """The model's own head over `batch`, as every feature runs it (`inference.infer`): the batch size that ran."""
        return inference.infer(loaded, texts, batch_size=batch_size, positions=batch, on_batch=on_batch,
                               tokens=tokens)

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

            state.stats["batch_size"] = forward(list(range(len(texts))), state.batch_size, on_batch)
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
