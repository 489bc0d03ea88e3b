"""A self-contained HTML report: leaderboard, charts (plotly.js inlined, no CDN) and reproducibility data."""
from __future__ import annotations

import html
import json
import time

from ..stats import multiple
from . import calibration_view, compare, plots
from .leaderboard import available_metrics, distinct_models, long_table, scored_rows, wide_table
from .result import TaskResult


def html_report(results: list[TaskResult], title: str = "LLM Lab benchmark report", adjust: str = "holm",
                margin: float | None = None) -> str:
    results = distinct_models(results)
    summaries = [r.summary() for r in results]
    comparisons = compare.compare_run(results, adjust=adjust, margin=margin)
    wide = wide_table(summaries, available_metrics(summaries), compare.tier_table(comparisons))
    table = wide[[c for c in wide.columns if not c.endswith("(value)")]].to_html(index=False, border=0) if not wide.empty else ""
    legend = ("<p>Cells: value [95% interval] n=examples. Intervals: Wilson score for shares of right answers, BCa "
              "bootstrap for other metrics, percentile bootstrap for ROC AUC and latency, min–max of repeats for "
              "throughput. Tier: 1 + the number of models significantly better on the task's headline metric "
              f"(paired test, p-values adjusted across pairs and tasks: {html.escape(multiple.NAMES[adjust])}).</p>")
    verdicts = "".join(f"<li><b>{html.escape(t.task)}</b> · {html.escape(t.metric)}: "
                       + ("; ".join(html.escape(compare.paired.verdict(p)) for p in t.pairs) or html.escape(t.note))
                       + "</li>" for t in comparisons)
    cal = calibration_view.table(results)
    cal_html = cal.to_html(index=False, border=0) if not cal.empty else ""
    charts = [plots.task_bars(summaries), plots.accuracy_latency(summaries)]
    if not cal.empty:
        charts.append(calibration_view.reliability_figure(results))
    for r in results:
        if r.ok and r.type == "classification":
            charts.append(plots.confusion(r))
    for task in dict.fromkeys(r.task for r in results if r.type == "classification"):
        charts.append(plots.per_class_f1(results, task))
    parts = []
    for i, fig in enumerate(c for c in charts if c is not None):
        parts.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0)))  # plotly.js inline once
    errors = "".join(f"<li><b>{html.escape(r.model)} / {html.escape(r.task)}</b>: {html.escape(str(r.error))}</li>"
                     for r in results if not r.ok)
    repro = {r.label: r.repro.to_dict() if r.repro else {} for r in results if r.ok}
    scored = "".join(f"<li><b>{html.escape(task)}</b>: {html.escape(text)}</li>"
                     for task, text in scored_rows(results).items())
    details = long_table(summaries).drop(columns=["key"]).to_html(index=False, border=0, na_rep="")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}} table{{border-collapse:collapse}}
td,th{{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left}} pre{{background:#f6f6f6;padding:1em;overflow:auto}}</style>
</head><body><h1>{html.escape(title)}</h1><p>Generated {time.strftime('%Y-%m-%d %H:%M:%S')} by LLM Lab.</p>
<h2>Leaderboard</h2>{table}{legend}{'<h2>Is the difference real?</h2><ul>' + verdicts + '</ul>' if verdicts else ''}{'<h2>Calibration</h2>' + cal_html if cal_html else ''}{'<p>Rows scored:</p><ul>' + scored + '</ul>' if scored else ''}{'<h2>Errors</h2><ul>' + errors + '</ul>' if errors else ''}
<h2>Charts</h2>{''.join(parts)}<h2>All results</h2>{details}
<h2>Reproducibility</h2><pre>{html.escape(json.dumps(repro, indent=1, default=str))}</pre></body></html>"""
