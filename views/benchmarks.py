"""Benchmarks: run a suite on models in the background, then a leaderboard, charts, drill-down and exports."""
import json

import pandas as pd
import streamlit as st

from llm_lab import metrics as metrics_table
from llm_lab.bench import (calibration_view, compare as bench_compare, jobs as bench_jobs, leaderboard, plots, report,
                           robustness_view, slicing, suite as suites)
from llm_lab.stats import multiple, paired
from llm_lab import snapshots
from ui import backend, job_panel, share, suite_builder
from ui.common import (cannot_run, header, keep_valid, local_link, permalink, plain, show_permalink, url_choice,
                       user_errors)

header(":material/leaderboard: Benchmarks", "Pick models and a suite of declared tasks; the run goes on in the background (cached "
       "and resumable). Compare models on a leaderboard with 95% intervals, see whether differences are real, then "
       "look at the examples.")
JOB_KEY = "bench_job"

# ---------------------------------------------------------------- what to run
c1, c2 = st.columns([1, 1])
models = c1.multiselect("Models", backend.model_names(), default=[n for n in backend.model_names()[:1]],
                        key="b_models", help="Registry models; the suite tells which head each task needs.")
source = c2.radio("Suite", ["Built-in or saved", "Upload YAML", "Build one"], horizontal=True, key="b_source")
suite_text = None
with user_errors():
    if source == "Built-in or saved":
        available = suites.list_suites(backend.actor())
        names = [s["name"] for s in available]
        pick = c2.selectbox("Suite", names, key="b_suite", index=names.index("demo-classifier") if "demo-classifier" in names else 0,
                            format_func=lambda n: f"{n} ({next(s['source'] for s in available if s['name'] == n)})")
        if pick:
            suite_text = open(next(s["path"] for s in available if s["name"] == pick)).read()
    elif source == "Upload YAML":
        up = c2.file_uploader("Suite YAML", type=["yaml", "yml"], key="b_upload", max_upload_size=suites.upload_max_mb(),
                              help=f"At most {suites.max_bytes() // 1024} KB (setting yaml_max_kb); no aliases.")
        if up is not None:
            suite_text = up.getvalue().decode("utf-8", errors="replace")
            suites.parse(suite_text, "uploaded", up.name)
            if c2.button("Save this suite", key="b_save_upload"):
                st.success(f"Saved suite {plain(repr(suites.save(backend.actor(), suite_text).name))}.")
    else:  # dataset, split(s) and columns, with n and what it can detect
        suite_text = suite_builder.build()
    if suite_text:
        parsed = suites.parse(suite_text, "selected", "the suite")
        with st.expander(plain(f"Suite {parsed.name} v{parsed.version}: {len(parsed.tasks)} tasks — {parsed.description}")):
            st.dataframe(pd.DataFrame([{"task": t.name, "type": t.type, "dataset": t.dataset or f"lm-eval: {t.task or 'uploaded YAML'}", "split": t.split_shown,
                                        "limit": str(t.limit or "all"), "metrics": ", ".join(t.metrics)} for t in parsed.tasks]),
                         hide_index=True)
            st.code(suite_text, language="yaml")

r1, r2, r3 = st.columns([1, 1, 2])
use_cache = r1.checkbox("Use cached results", True, key="b_cache", help="Finished tasks are reused (same model, "
                        "dataset, task and settings); unfinished ones resume where they stopped.")
limit = r3.number_input("Examples per task (0 = as the suite says)", 0, 1_000_000, 0, key="b_limit_run",
                        help="A quick look: cap every task at this many examples.")
if r2.button("Run benchmark", type="primary", disabled=not (models and suite_text) or bool(cannot_run()), key="b_run",
             help=cannot_run()):
    with user_errors():
        job_panel.remember(JOB_KEY, bench_jobs.submit(backend.actor(), suite_text, models, use_cache,
                                                   limit=int(limit) or None))

job_id = job_panel.current(JOB_KEY)
if job_id:
    job_panel.show(job_id, key="bench", link=permalink("views/benchmarks.py", bench_job=job_id))

# ---------------------------------------------------------------- which results
st.divider()
runs = backend.bench_runs(must_include=job_id)
wanted = st.query_params.get("result")  # a permalink: /benchmarks?result=RUN
if wanted and wanted not in {r["id"] for r in runs}:
    runs = backend.bench_runs(must_include=wanted)
    if wanted not in {r["id"] for r in runs}:
        st.warning(f"No benchmark result {plain(repr(wanted))} here: it is in a workspace you cannot see, or "
                   "it never existed.", icon=":material/link_off:")
if not runs:
    st.info("No benchmark results yet: pick models and a suite above and press **Run benchmark**.")
    st.stop()
labels = {r["id"]: f"{r['id']} — {r['suite']} on {', '.join(r['models'])}" for r in runs}
url_choice("result", "b_run_pick", labels)  # a permalink's run (once per address)
# the run of the job this page watches (?bench_job=), once it is there: selected the first time this session
# sees it, after the permalink's, so a run that just finished wins over the run the address showed before
if job_id in labels and st.session_state.get("b_run_job") != job_id:
    st.session_state["b_run_job"] = st.session_state["b_run_pick"] = job_id
if st.session_state.get("b_run_pick") not in labels:  # nothing picked yet (or the widget's state was dropped)
    st.session_state["b_run_pick"] = job_id if job_id in labels else runs[0]["id"]
run_id = st.selectbox("Results of run", list(labels), format_func=labels.get, key="b_run_pick")
if wanted and wanted != run_id:
    st.query_params["result"] = run_id  # the address follows the choice: it is the permalink
show_permalink(permalink("views/benchmarks.py", result=run_id))
run = next(r for r in runs if r["id"] == run_id)
results = leaderboard.distinct_models(leaderboard.run_results(backend.actor(), run))  # one name per model row

st.subheader("Leaderboard")
slice_options = slicing.options(results)
slice_labels = {"all": "all examples"} | {f"{n}\x1f{v}": f"{n} = {v} ({k} examples)" for n, v, k in slice_options}
keep_valid("b_slice", list(slice_labels), "all")
slice_pick = st.selectbox("Examples", list(slice_labels), format_func=slice_labels.get, key="b_slice",
                          help="Cut every result to one slice: a task's declared slices (by column, text length "
                               "or a filter) and each gold label. Metrics, intervals, tiers and the paired "
                               "comparisons are recomputed on that slice's examples.")
if slice_pick != "all":
    results = slicing.cut(results, *slice_pick.split("\x1f", 1))
    st.caption(plain(f"Slice {slice_labels[slice_pick]}: metrics that are not sums over examples (ROC AUC, "
                     "speed) are not recomputed on a slice."))
summaries = [r.summary() for r in results]
# what the exports, the report and a share link are of: the run, or the run cut to a slice
view_id = run_id if slice_pick == "all" else f"{run_id}-" + "-".join(
    "".join(ch if ch.isalnum() else "_" for ch in part)[:40] for part in slice_pick.split("\x1f", 1))
view_title = f"Benchmark {labels[run_id]}" + ("" if slice_pick == "all" else f" · slice {slice_labels[slice_pick]}")
metric_names = leaderboard.available_metrics(summaries)
headlines = list(dict.fromkeys(r.headline.name for r in results if r.ok and r.headline))
if "b_metrics_shown" in st.session_state:  # a slice may not have every metric the whole set has
    st.session_state["b_metrics_shown"] = [m for m in st.session_state["b_metrics_shown"] if m in metric_names]
m1, m2, m3 = st.columns([3, 1, 1])
shown_metrics = m1.multiselect("Metrics", metric_names, default=headlines, key="b_metrics_shown",
                               help="Every metric the tasks computed; each cell shows its 95% interval and n.")
adjust = m2.selectbox("p-value adjustment", list(multiple.NAMES), format_func=multiple.NAMES.get, key="b_adjust",
                      help="Across every pair of models and every task: Holm controls the chance of any false "
                           "claim; Benjamini–Hochberg the share of false claims.")
margin_points = m3.number_input("Equivalence margin (points)", 0.0, 50.0, 1.0, 0.5, key="b_margin",
                                help="Two models whose difference's 90% interval lies inside ± this margin are "
                                     "called equivalent (two one-sided tests). In points of a 0–1 metric (accuracy, F1, "
                                     "exact match, ...); 0 turns the equivalence verdict off.")
result_keys = tuple((r.key, r.model, r.status) for r in results)
comparisons = backend.bench_comparisons(backend.actor().workspace, view_id, result_keys, None, adjust,
                                        margin_points / 100 or None, results)
tiers = bench_compare.tier_table(comparisons)
wide = leaderboard.wide_table(summaries, shown_metrics or None, tiers)
value_cols = [c for c in wide.columns if c.endswith("(value)")]
s1, s2 = st.columns([2, 1])
sort_by = s1.selectbox("Sort by", value_cols, key="b_sort", format_func=lambda c: c.replace(" (value)", ""))
low_first = sort_by is not None and not leaderboard.higher_is_better(summaries, shown_metrics or None).get(sort_by, True)
shown = wide.sort_values(sort_by, ascending=low_first, na_position="last") if sort_by else wide
st.dataframe(shown[[c for c in wide.columns if c not in value_cols]], hide_index=True, width="stretch",
             key="b_leaderboard")
methods = sorted({str(i.get("method")) for r in results if r.ok for i in (r.intervals or {}).values()
                  if isinstance(i, dict) and i.get("method")})
lower_better = [m for m in (shown_metrics or headlines) if not metrics_table.higher_is_better(m)]
st.caption("Cells: value [95% interval] n=examples (robustness: perturbed cases; " + ("; ".join(methods) or "intervals as stored") + "). "
           + (f"Lower is better for {', '.join(lower_better)}; higher for the others. " if lower_better
              else "Higher is better. ")
           + ("**Tier**: 1 + the number of models significantly better on the task's headline metric (paired "
              f"test, {multiple.NAMES[adjust]}); models in one tier cannot be told apart on these examples."
              if tiers else ""))
with st.container(key="b_tiers"):
    for t in comparisons:
        if t.tiers:
            groups = {}
            for model, tier in sorted(t.tiers.items(), key=lambda kv: kv[1]):
                groups.setdefault(tier, []).append(model)
            st.caption(plain(f"Tiers on {t.task} · {t.metric} (n = {t.n}): " + "; ".join(
                f"tier {tier}: {', '.join(names)}" for tier, names in groups.items())))
scored = leaderboard.scored_rows(results)
if scored:  # a score on the rows a model trained on is no test score: say which rows each task scored
    st.caption("Rows scored: " + plain("; ".join(f"{task}: {text}" for task, text in scored.items())) + ".")
for r in results:
    if not r.ok:
        st.error(f"**{plain(r.label)}**: {plain(r.error)}", icon=":material/warning:")
notes = [f"**{plain(r.label)}**: {plain(n)}" for r in results for n in r.notes or []]
if notes:
    with st.expander(f"Notes ({len(notes)})"):
        st.markdown("\n".join(f"- {n}" for n in notes))

leaks = robustness_view.contamination_table(results)
if not leaks.empty:
    st.markdown("**Did the test set leak into training?**")
    st.dataframe(leaks, hide_index=True, width="stretch", key="b_leaks")
    st.caption("Each evaluation row against the model's own training rows (models trained in LLM Lab) or a "
               "dataset the task names (`contamination:`): exact duplicates after normalising case, punctuation "
               "and spaces, and near duplicates sharing at least the threshold of their word n-grams.")

# ---------------------------------------------------------------- is the difference real?
st.subheader("Is the difference real?")
comparable = [m for m in metric_names if m in bench_compare.COMPARABLE]
if len({r.model for r in results if r.ok}) < 2:
    st.info("Run two or more models on the suite to compare them example by example.")
else:
    c_metric = st.selectbox("Compare on", ["headline of each task"] + comparable, key="b_cmp_metric")
    found = comparisons if c_metric == "headline of each task" else backend.bench_comparisons(
        backend.actor().workspace, view_id, result_keys, c_metric, adjust, margin_points / 100 or None, results)
    for t in found:
        st.markdown(f"**{plain(t.task)}** · {plain(t.metric)}" + (f" · n = {t.n}" if t.n else ""))
        if t.note:
            st.caption(plain(t.note))
        for p in t.pairs:
            st.text(paired.verdict(p))
    table = bench_compare.pairs_table(found)
    if not table.empty:
        st.dataframe(table, hide_index=True, width="stretch", key="b_pairs")
        st.caption("Paired on the same examples: the interval resamples examples (bootstrap, 1,000 resamples); "
                   "McNemar's exact test for right/wrong metrics, a paired permutation test for the others; "
                   f"p-values adjusted across every pair and task ({multiple.NAMES[adjust]}). MDE: the smallest "
                   "difference these examples detect 80% of the time at α = 0.05.")

tabs = st.tabs(["Per task", "Quality vs latency", "Confusion matrix", "F1 per class", "Calibration", "Robustness",
                "Slices"])
tabs[0].plotly_chart(plots.task_bars(summaries), key="b_fig_bars")
tabs[1].plotly_chart(plots.accuracy_latency(summaries), key="b_fig_scatter")
cls = [r for r in results if r.type == "classification" and r.ok]
if cls:
    which = tabs[2].selectbox("Result", range(len(cls)), format_func=lambda i: cls[i].label, key="b_cm_pick")
    figure = plots.confusion(cls[which])
    if figure is None:  # its task did not ask for one (a suite's own metrics, a compress-then-evaluate run)
        tabs[2].info("No confusion matrix for this result: its task does not list the confusion_matrix metric.")
    else:
        tabs[2].plotly_chart(figure, key="b_fig_cm")
    fig = plots.per_class_f1(results, cls[which].task)
    if fig is not None:
        tabs[3].plotly_chart(fig, key="b_fig_f1")
else:
    tabs[2].info("No classification results in this run.")
with tabs[4]:
    cal_table = calibration_view.table(results)
    if cal_table.empty:
        st.info("Calibration is measured for classification results (stored since every metric has an interval).")
    else:
        st.dataframe(cal_table, hide_index=True, width="stretch", key="b_calibration")
        st.caption("ECE: top-label expected calibration error (15 equal-width bins; adaptive: 15 bins of equal "
                   "counts). Brier and log loss (the NLL of the true class) from the full probability vectors. Lower is better for all. Temperature "
                   "scaling divides the log-probabilities by T fitted on the validation split; the model is unchanged.")
        after = st.toggle("After temperature scaling", False, key="b_cal_after")
        st.plotly_chart(calibration_view.reliability_figure(results, after), key="b_fig_reliability")
with tabs[5]:
    robust = robustness_view.table(results)
    if robust.empty:
        st.info("No robustness results in this run: add an `invariance` or `directional` task (the built-in "
                "`robustness` suite has both). The perturbed texts are in the examples below.")
    else:
        st.dataframe(robust, hide_index=True, width="stretch", key="b_robust")
        st.caption("Flip rate: the share of perturbed inputs whose prediction changed (lower is better); failure "
                   "rate: the share where the expected label's probability did not rise. Intervals: Wilson per "
                   "kind; the overall rate is a bootstrap over examples (an example's perturbations are not "
                   "independent).")
with tabs[6]:
    names = list(dict.fromkeys(n for n, _, _ in slice_options))
    if not names:
        st.info("No slices: declare `slices:` in a task (a column, text-length buckets or a filter).")
    else:
        by = st.selectbox("Slice by", names, key="b_slice_by")
        per_slice = slicing.table(results, by)
        st.dataframe(per_slice, hide_index=True, width="stretch", key="b_slice_table")
        st.caption("Each task's headline metric per slice, with its 95% interval and n; pick a slice above the "
                   "leaderboard to see every metric, the tiers and the paired comparisons on it.")

# ---------------------------------------------------------------- drill-down
st.subheader("Examples")
task_names = list(dict.fromkeys(r.task for r in results if r.ok and r.per_example))
if task_names:
    d1, d2 = st.columns([1, 2])
    task = d1.selectbox("Task", task_names, key="b_dd_task")
    show = d2.radio("Show", ["all", "errors", "disagreements"], horizontal=True, key="b_dd_show",
                    help="errors: some model is wrong; disagreements: the models' predictions differ")
    table = leaderboard.drilldown(results, task, show)
    links = {c: st.column_config.LinkColumn(c, display_text="open ↗") for c in table.columns if c.endswith("attributions")}
    for c in links:  # they open in a new tab, a new session: the workspace goes along
        table[c] = table[c].map(lambda link: local_link(link) if isinstance(link, str) else link)
    st.caption(f"{len(table)} examples." + (" 'open ↗' shows the example on the Attributions page." if links else ""))
    if table.empty and show != "all":
        every = leaderboard.drilldown(results, task, "all")
        predicting = [c for c in every.columns if c.endswith(": prediction")]
        if show == "disagreements" and len(predicting) >= 2:
            st.info(f"The {len(predicting)} models agree on every one of the {len(every)} examples.")
        elif show == "errors" and not every.empty and any(c.endswith(": correct") for c in every.columns):
            st.info(f"No model is wrong on any of the {len(every)} examples.")
        else:
            st.info("Nothing to show: errors need a task with right/wrong answers; disagreements need the "
                    "predictions of two or more models.")
    st.dataframe(table, hide_index=True, column_config=links, width="stretch", height=360)

# ---------------------------------------------------------------- export and reproducibility
e1, e2, e3, e4 = st.columns(4)
e1.download_button("Download CSV", leaderboard.export_csv(summaries), f"{view_id}.csv", "text/csv", key="b_csv")
e2.download_button("Download JSON", leaderboard.export_json(results), f"{view_id}.json", "application/json", key="b_json")
# built only when asked (plotly.js inlined: a few MB); kept under a key no widget uses, since a button's or
# download button's own key is read-only in st.session_state
built = st.session_state.get("b_html_report")
if not (isinstance(built, tuple) and built[0] == view_id):  # another run or slice: build it again
    built = None
if e3.button("Build HTML report", key="b_html_build"):
    built = (view_id, report.html_report(results, view_title, adjust=adjust, margin=margin_points / 100 or None))
    st.session_state["b_html_report"] = built
if built:
    e3.download_button("Download HTML report", built[1], f"{view_id}.html", "text/html", key="b_html_download",
                       on_click="ignore")
with e4:
    share.control("benchmark", view_title, lambda: snapshots.benchmark(results, view_title),
                  key=f"b_share_{view_id}")
with st.expander("Reproducibility: fingerprints, versions, seeds"):
    st.code(json.dumps({r.label: r.repro.to_dict() if r.repro else None for r in results if r.ok},
                       indent=1, default=str), language="json")
