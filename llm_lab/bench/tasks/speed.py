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
VERSION = 3  # 2: exact batches of the own forward; 3: intervals for rates and latencies


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
    rate_range = {"value": eps, "low": float(min(rates)), "high": float(max(rates)), "confidence": "min-max",
                  "n_resamples": spec.repeats, "n": spec.repeats, "method": f"min–max of {spec.repeats} repeats"}
    found = {"examples_per_s": rate_range,
             "tokens_per_s": {**rate_range, "value": values["tokens_per_s"],
                              "low": rate_range["low"] * float(lengths.mean()),
                              "high": rate_range["high"] * float(lengths.mean())},
             **_latency_intervals(lat, spec.seed),
             **{name: {"value": values[name], "low": None, "high": None, "n": 1, "method": "one measurement"}
                for name in ("peak_memory_mb", "load_seconds")}}
    head = headline("examples_per_s", values, rate_range)
    rows = [{"id": int(frame["id"].iloc[i]), "text": texts[i][:200], "tokens": int(lengths[i]),
             "latency_ms": round(float(lat[i]), 3)} for i in range(len(texts))]
    return {"metrics": values, "details": {"rates": rates}, "headline": head, "per_example": rows,
            "intervals": found}


def _latency_intervals(lat_ms, seed: int, n_resamples: int = 1000) -> dict:
    """Median and 95th-percentile latency with percentile-bootstrap intervals over the examples timed."""
    lat_ms = np.asarray(lat_ms, dtype=float)
    n = len(lat_ms)
    if n == 0:
        return {}
    idx = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))
    out = {}
    for name, q in (("latency_p50_ms", 50), ("latency_p95_ms", 95)):
        boot = np.percentile(lat_ms[idx], q, axis=1)
        low, high = np.quantile(boot, [0.025, 0.975])
        out[name] = {"value": float(np.percentile(lat_ms, q)), "low": float(low), "high": float(high), "n": n,
                     "method": "percentile bootstrap", "confidence": 0.95, "n_resamples": n_resamples}
    return out
