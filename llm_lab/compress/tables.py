"""The tables of a compress-then-evaluate report (the Compress page, the benchmark script): plain rows."""
from __future__ import annotations


def _mb(value) -> float | None:
    return None if value is None else round(value / 2**20, 2)


def _r(value, digits: int = 4):
    return None if value is None else round(float(value), digits)


def _interval(low, high) -> str:
    return "" if low is None or high is None else f"[{low:.4f}, {high:.4f}]"


def _drift_cell(drift) -> str | None:
    """The mean ρ, or why there is none, as text either way: a column of numbers and words is no Arrow column
    (Streamlit logs a traceback for it on every run, then shows it as text anyway)."""
    if drift is None:
        return None
    if drift.status == "ok":
        return "—" if drift.mean is None else f"{drift.mean:.3f}"
    return drift.reason.split(" (")[0]


def summary(report) -> list[dict]:
    """One row per model: size, memory, speed, the main task's headline with its interval, the agreement with
    the parent and its verdict, and the attribution drift."""
    task = report.main_task
    rows = []
    for m in report.models:
        q = m.task(task) if task else None
        p = m.paired.get(task) if task else None
        s, mem = m.speed, m.memory
        row = {"model": m.name, "role": m.role, "size (MB)": _mb(m.size_bytes),
               "peak memory (MB)": mem.peak_mb if mem else None,
               "latency p50 (ms)": _r(s and s.latency_p50_ms, 3), "latency p95 (ms)": _r(s and s.latency_p95_ms, 3),
               "throughput (examples/s)": _r(s and s.throughput, 1)}
        if q:  # each metric as "value [low, high] n=…" (95%), with how the interval was made
            row[q.metric or "quality"] = q.text()
            for name in (q.intervals or {}):
                if name != q.metric:
                    row[name] = q.text(name)
            methods = {q.metric: getattr(q, "method", None)} | {
                name: ci.get("method") for name, ci in (q.intervals or {}).items() if name != q.metric}
            row["intervals (95%)"] = "; ".join(f"{name}: {m}" for name, m in methods.items() if name and m)
        row.update({"identical predictions": None if p is None or p.identical_share is None else f"{p.identical_share:.1%}",
                    "right→wrong": p and p.right_to_wrong, "wrong→right": p and p.wrong_to_right,
                    "McNemar p": _r(p and p.mcnemar_p), "verdict": p.verdict if p else ("(reference)" if m.role == "parent" else ""),
                    "attribution ρ (mean)": _drift_cell(m.drift)})
        rows.append(row)
    return rows


def paired_rows(report) -> list[dict]:
    """Every variant × task with a paired comparison: the counts, the test, the interval and the verdict."""
    rows = []
    for m in report.models[1:]:
        for task, p in m.paired.items():
            rows.append({"variant": m.name, "task": task, "examples": p.n,
                         "identical": None if p.identical_share is None else f"{p.identical_share:.1%}",
                         "both right": p.both_right, "both wrong": p.both_wrong, "right→wrong": p.right_to_wrong,
                         "wrong→right": p.wrong_to_right, "accuracy difference (points)": _r(p.difference and 100 * p.difference, 2),
                         f"{p.confidence:.0%} interval (points)": "" if p.low is None else
                         f"[{100 * p.low:+.2f}, {100 * p.high:+.2f}]",
                         "margin (points)": 100 * p.margin, "McNemar p": _r(p.mcnemar_p), "verdict": p.verdict,
                         "examples needed": p.more_needed})
    return rows


def drift_rows(report) -> list[dict]:
    rows = []
    for m in report.models[1:]:
        d = m.drift
        if d is None:
            continue
        if d.status != "ok":
            rows.append({"variant": m.name, "example": None, "text": "", "target": "", "spearman ρ": None,
                         "note": d.reason})
            continue
        for ex in d.examples:
            rows.append({"variant": m.name, "example": ex["id"], "text": ex["text"], "target": ex["target"],
                         "spearman ρ": ex.get("spearman"), "note": ex.get("note", "")})
    return rows
