"""Snapshots of results for share links: each kind of result in the one generic format `sharing` stores.

    {"kind", "title", "created", "text": [str], "tables": [{"title", "columns", "rows"}],
     "figures": [plotly figure JSON], "meta": {...}}

The builders reuse the figure and table functions the pages draw with (bench/plots, bench/leaderboard,
compare/plots, compare/tables, explain/plots, train/plots), so a shared view shows what the page showed.
Big tables are cut to `MAX_ROWS` rows (the table's title says so). Links into the lab's own pages
(e.g. "attributions ↗") are left out: who opens a link may not see the workspace they point into.
`created` is the result's own time where it has one, so sharing the same result twice stores one file.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone

from .access import Actor

MAX_ROWS = 500


def _iso(timestamp: float | None) -> str | None:
    return datetime.fromtimestamp(float(timestamp), timezone.utc).isoformat(timespec="seconds") if timestamp else None


def new(kind: str, title: str, *, created: float | None = None, text=(), tables=(), figures=(),
        meta: dict | None = None) -> dict:
    """A snapshot dict; `tables` from `table()`, `figures` Plotly figures or their JSON (None entries are skipped)."""
    return {"kind": kind, "title": title, "created": _iso(created) or _iso(datetime.now(timezone.utc).timestamp()),
            "text": [str(t) for t in text if t], "tables": [t for t in tables if t],
            "figures": [f for f in (figure(x) for x in figures) if f], "meta": meta or {}}


def table(title: str, frame, max_rows: int = MAX_ROWS) -> dict | None:
    """A table entry from a DataFrame (or a list of dicts); None when it is empty."""
    import pandas as pd

    from .sharing import jsonable

    if not isinstance(frame, pd.DataFrame):
        frame = pd.DataFrame(list(frame or []))
    if frame.empty and not len(frame.columns):
        return None
    total = len(frame)
    if total > max_rows:
        frame, title = frame.head(max_rows), f"{title} (first {max_rows} of {total} rows)"
    frame = frame.astype(object).where(frame.notna(), None)
    return {"title": title, "columns": [str(c) for c in frame.columns], "rows": jsonable(frame.values.tolist())}


def figure(fig) -> dict | None:
    """A Plotly figure as its JSON dict (what `plotly.io.from_json` reads back)."""
    if fig is None:
        return None
    if isinstance(fig, dict):
        return fig
    return json.loads(fig.to_json())


# ---------------------------------------------------------------- benchmark
def benchmark(results: list, title: str, examples: bool = True) -> dict:
    """A benchmark run: leaderboard, every (model, task) result, the page's charts and (cut) per-example rows.
    `results`: bench.result.TaskResult records (with per-example rows for the examples tables)."""
    from .bench import calibration_view, compare, leaderboard, plots

    results = leaderboard.distinct_models(results)
    summaries = [r.summary() for r in results]
    comparisons = compare.compare_run(results)
    wide = leaderboard.wide_table(summaries, leaderboard.available_metrics(summaries),
                                  compare.tier_table(comparisons))
    shown = wide[[c for c in wide.columns if not c.endswith("(value)")]] if not wide.empty else wide
    long = leaderboard.long_table(summaries)
    long = long[["model", "task", "type", "status", "metric", "value", "low", "high", "n", "interval",
                 "lower_is_better", "seconds", "error", "split", "rows"]]
    lower = list(dict.fromkeys(r.headline.name for r in results if r.headline and r.headline.lower_is_better))
    text = [f"Suites: {', '.join(sorted({r.suite for r in results}))} · models: "
            f"{', '.join(dict.fromkeys(r.model for r in results))} · {len(results)} results",
            "Cells: value [95% interval] n = examples behind it, for every metric computed (speed: min–max over "
            "repeats). "
            + (f"Lower is better for {', '.join(lower)}; higher for the others." if lower else "Higher is better.")]
    text += [f"Rows scored by {task}: {scored}" for task, scored in leaderboard.scored_rows(results).items()]
    text += [f"{t.task} · {t.metric}: {compare.paired.verdict(p)}" for t in comparisons for p in t.pairs]
    text += ["Tier: 1 + the number of models significantly better on the task (paired test, Holm-adjusted "
             "across pairs and tasks); one tier cannot be told apart."] if any(t.tiers for t in comparisons) else []
    text += [f"{r.label}: {r.error}" for r in results if not r.ok]
    text += [f"{r.label}: {n}" for r in results for n in r.notes or []]
    figures = [plots.task_bars(summaries), plots.accuracy_latency(summaries)]
    cls = [r for r in results if r.type == "classification" and r.ok]
    figures += [plots.confusion(r) for r in cls[:8]]
    figures += [plots.per_class_f1(results, task) for task in dict.fromkeys(r.task for r in cls)]
    tables = [table("Leaderboard", shown), table("All results", long)]
    pairs = compare.pairs_table(comparisons)
    if not pairs.empty:
        tables.append(table("Is the difference real? (paired comparisons)", pairs))
    calibration = calibration_view.table(results)
    if not calibration.empty:
        tables.append(table("Calibration", calibration))
    if examples:
        for task in dict.fromkeys(r.task for r in results if r.ok and r.per_example):
            frame = leaderboard.drilldown(results, task, "all")
            frame = frame[[c for c in frame.columns if not c.endswith("attributions")]]
            tables.append(table(f"Examples of {task}", frame))
    meta = {"results": [{"key": r.key, "model": r.model, "suite": r.suite, "suite_version": r.suite_version,
                         "task": r.task, "type": r.type, "status": r.status, "metrics": r.metrics,
                         **({"model_fingerprint": r.repro.model_fingerprint, "dataset": r.repro.dataset,
                             "dataset_fingerprint": r.repro.dataset_fingerprint, "task_hash": r.repro.task_hash,
                             "seed": r.repro.seed} if r.repro else {})} for r in results]}
    created = max((r.created_at for r in results if r.created_at), default=None)
    return new("benchmark", title, created=created, text=text, tables=tables, figures=figures, meta=meta)


# ---------------------------------------------------------------- comparison
def comparison(comp, margin: float | None = None) -> dict:
    """A comparison (compare.runs.Comparison): per-model numbers with their intervals and n, the paired
    comparison of its models (or why there is none), its chart, and the results table."""
    from .compare import plots, runs, statistics, tables as ctables

    gen = comp.mode == "generation"
    ok = comp.ok_models()
    text = [f"{comp.mode.capitalize()} comparison of {', '.join(comp.models)} on {len(comp.inputs)} inputs.",
            f"Settings: {json.dumps(comp.settings or {}, sort_keys=True, default=str)}" if comp.settings else ""]
    text += [f"{m}: {comp.outputs[m].error}" for m in comp.models if comp.outputs[m].error]
    found = statistics.model_intervals(comp)
    summary = [{"model": m, **{k: v for k, v in (comp.summary.get(m) or {}).items() if not isinstance(v, (dict, list))},
                # a score is shown as "value [95% interval] n=…" (the value alone stays in its own column)
                **{f"{statistics.LABELS[k]} [95% CI] n": ci.text() for k, ci in found.get(m, {}).items()}}
               for m in comp.models]
    text.append("Intervals: Wilson for accuracy, exact match and agreement; BCa bootstrap over the inputs for "
                "the others.")
    figures = []
    if gen and ok:
        figures.append(plots.generation_summary(comp))
    elif not gen and len(ok) >= 2:
        agree = statistics.agreement_intervals(comp)
        text.append(f"All models agree on {agree['all'].value:.0%} of the inputs ({agree['all'].text()}, "
                    f"95% {agree['all'].method}).")
        figures.append(plots.confusion_between(runs.confusion_between(comp, ok[0], ok[1])))
    pairs = statistics.pair_rows(statistics.paired_comparisons(comp, margin))
    reason = statistics.no_paired_reason(comp)
    text += [reason] if reason else [row["verdict"] for row in pairs]
    tables = [table("Per model", summary)]
    if pairs:
        tables.append(table("Paired comparisons (McNemar exact, Holm-adjusted)", pairs))
    tables.append(table("Results", ctables.table(comp, details=gen)))
    meta = {"comparison_id": comp.id, "mode": comp.mode, "models": list(comp.models), "settings": comp.settings,
            "source": comp.source}
    return new("comparison", comp.title or "Comparison", created=comp.created_at, text=text, tables=tables,
               figures=figures, meta=meta)


# ---------------------------------------------------------------- attributions
def attribution(results: list[tuple[dict, dict]], text: str, title: str | None = None) -> dict:
    """The Attributions page's side-by-side view: (attribution dict, faithfulness dict) per model × method."""
    from .explain import faithfulness, plots
    from .explain.attributions import Attribution

    lines = [f"Text: {text}"]
    rows, tables, figures = [], [], []
    for a_dict, faith in results:
        a = Attribution(**a_dict)
        lines.append(f"{a.model} · {a.method_name}: target {a.target_label!r}"
                     + (f" (p = {a.f_input:.3f})" if a.f_input is not None else "")
                     + (f" · baseline {a.baseline}" if a.baseline else ""))
        lines += list(a.notes)
        figures.append(plots.top_tokens_bar(a))
        tables.append(table(f"Token scores · {a.model} · {a.method_name}",
                            [{"token": t, "score": s, "special": sp} for t, s, sp in
                             zip(a.tokens, a.scores, a.special or [False] * len(a.tokens))]))
        if faith:
            rows.append({"method": f"{a.model} · {a.method_name}", **faith})
    if rows:
        try:  # a winner only when its lead is beyond the noise of the deletion steps
            ranking = faithfulness.rank_rows(rows)
        except ValueError:  # faithfulness stored without its per-step curves: no interval, no winner
            ranking = {"rows": rows, "verdict": "The methods cannot be ranked: their faithfulness was stored "
                                                "without the per-step values an interval needs."}
        shown = [{k: v for k, v in r.items() if not isinstance(v, (list, dict))} for r in ranking["rows"]]
        figures.append(plots.faithfulness_bar(ranking["rows"]))
        tables.insert(0, table("Faithfulness", shown))
        lines.append(ranking["verdict"])
    models = list(dict.fromkeys(a["model"] for a, _ in results))
    methods = list(dict.fromkeys(a["method_name"] for a, _ in results))
    return new("attribution", title or f"Attributions: {', '.join(models)} · {', '.join(methods)}", text=lines,
               tables=tables, figures=figures, meta={"models": models, "methods": methods})


def generation_attribution(gen: dict, title: str | None = None) -> dict:
    """A causal LM's generated tokens attributed to the earlier ones (explain.generation result dict)."""
    from .explain import plots
    from .explain.generation import GenerationAttribution

    g = GenerationAttribution(**gen)
    text = [f"Prompt: {g.prompt}", "Output: " + "".join(g.output_tokens),
            f"{g.method_name} · {len(g.output_tokens)} generated tokens"] + list(g.notes)
    return new("attribution", title or f"Generation attributions: {g.model} · {g.method_name}", text=text,
               tables=[table("Top contributing prompt tokens per output token", g.top_prompt_tokens(3))],
               figures=[plots.generation_heatmap(g)], meta={"model": g.model, "method": g.method})


def attribution_job(res: dict, title: str | None = None) -> dict:
    """The dataset job's result: faithfulness per method and the tokens that matter per class."""
    from .explain import plots

    ranking = res.get("ranking") or {}
    text = [f"{res.get('model')} on this {res.get('source', 'sample')} ({res.get('n')} examples): "
            + (ranking.get("verdict") or "faithfulness stored without intervals (rerun the job to rank the methods).")]
    figures = [plots.faithfulness_bar(res.get("faithfulness") or [])]
    figures += [plots.class_tokens_bar(agg) for agg in (res.get("class_tokens") or {}).values()]
    tables = [table("Faithfulness per method", res.get("faithfulness") or [])]
    tables += [table(f"Tokens per class · {method}", [{"class": c, **r} for c, rs in agg.items() for r in rs])
               for method, agg in (res.get("class_tokens") or {}).items()]
    return new("attribution", title or f"Attributions: {res.get('model')} on {res.get('dataset') or 'a dataset'}",
               text=text, tables=tables, figures=figures,
               meta={k: res.get(k) for k in ("model", "dataset", "n", "source", "most_faithful")})


# ---------------------------------------------------------------- training
def training(actor: Actor, job_id: str, title: str | None = None) -> dict:
    """A training run: its configuration, final metrics and the metric curves (jobs.metrics)."""
    from . import jobs
    from .stats.intervals import Interval
    from .train import evaluation, history, plots
    from .train.config import TrainConfig

    job = jobs.get(actor, job_id)
    cfg = TrainConfig.from_params(job["params"])
    result = job["result"] or {}
    name = result.get("model") or cfg.name or job["title"]
    frame = history.curves(actor, job_id)
    text = [f"{job['title']} · {job['status']}" + (f" · model {result['model']}" if result.get("model") else "")]
    if job.get("error"):
        text.append(f"Error: {job['error']}")
    config = [{"setting": k, "value": json.dumps(v, default=str) if isinstance(v, (dict, list)) else v}
              for k, v in cfg.as_dict().items()]
    found = (result.get("evaluation") or {}).get("intervals") or {}
    metrics = [{"metric": k.removeprefix("eval_"), "value": v,
                "95% interval and n": Interval.from_dict(found[k]).text() if k in found else "",
                "interval": found[k]["method"] if k in found else ""}
               for k, v in (result.get("metrics") or {}).items()]
    text += evaluation.lines(result.get("evaluation"))[len(found):]  # the comparison with the base, or why none
    tables = [table("Final metrics", metrics), table("Configuration", config)]
    return new("training", title or f"Training run {name}", created=job.get("finished_at") or job["created_at"],
               text=text, tables=tables, figures=[plots.run_curves(frame, str(name))],
               meta={"job_id": job_id, "status": job["status"], "task": cfg.task, "model": result.get("model")})
