"""Benchmarks: run a suite on models in the background, then a leaderboard, charts, drill-down and exports."""
import json

import pandas as pd
import streamlit as st

from llm_lab.bench import jobs as bench_jobs, leaderboard, plots, report, suite as suites
from llm_lab.bench.suite import TASK_TYPES
from llm_lab import snapshots
from ui import backend, job_panel, share
from ui.common import cannot_run, header, local_link, permalink, plain, show_permalink, url_choice, user_errors

header(":material/leaderboard: Benchmarks", "Pick models and a suite of declared tasks; the run goes on in the background (cached "
       "and resumable). Compare models on a leaderboard with 95% intervals, then look at the examples.")
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
    else:
        tasks = st.session_state.setdefault("b_built", [])
        with st.form("b_builder", clear_on_submit=False):
            f1, f2, f3 = st.columns(3)
            name = f1.text_input("Suite name", "my-suite", key="b_name")
            ttype = f2.selectbox("Task type", list(TASK_TYPES), key="b_type")
            dataset = f3.selectbox("Dataset", [d.name for d in backend.datasets()], key="b_dataset")
            g1, g2, g3 = st.columns(3)
            metric_choice = g1.multiselect("Metrics", list(TASK_TYPES[ttype].metrics), list(TASK_TYPES[ttype].default_metrics),
                                           key="b_metrics")
            limit = g2.number_input("Examples (0 = all)", 0, 100_000, 200, key="b_limit")
            prompt = g3.text_input("Prompt template (optional)", "", key="b_prompt", help="e.g. Review: {text}")
            choices = st.text_input("Choices (multiple choice, comma separated)", "", key="b_choices")
            if st.form_submit_button("Add task"):
                task = {"name": f"{dataset}-{ttype}-{len(tasks) + 1}", "type": ttype, "dataset": dataset}
                if metric_choice:
                    task["metrics"] = metric_choice
                if limit:
                    task["limit"] = int(limit)
                if prompt:
                    task["prompt"] = prompt
                if choices.strip():
                    task["choices"] = [c.strip() for c in choices.split(",") if c.strip()]
                tasks.append(task)
        if tasks:
            suite_text = suites.to_yaml(name, tasks)
            suites.parse(suite_text, "built", "the suite you built")
            b1, b2 = st.columns(2)
            if b1.button("Save suite", key="b_save_built"):
                st.success(f"Saved suite {plain(repr(suites.save(backend.actor(), suite_text).name))}.")
            if b2.button("Clear tasks", key="b_clear"):
                st.session_state["b_built"] = []
                st.rerun()
    if suite_text:
        parsed = suites.parse(suite_text, "selected", "the suite")
        with st.expander(plain(f"Suite {parsed.name} v{parsed.version}: {len(parsed.tasks)} tasks — {parsed.description}")):
            st.dataframe(pd.DataFrame([{"task": t.name, "type": t.type, "dataset": t.dataset, "split": t.split_shown,
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
summaries = [r.summary() for r in results]

st.subheader("Leaderboard")
wide = leaderboard.wide_table(summaries)
value_cols = [c for c in wide.columns if c.endswith("(value)")]
s1, s2 = st.columns([2, 1])
sort_by = s1.selectbox("Sort by", value_cols, key="b_sort", format_func=lambda c: c.replace(" (value)", ""))
low_first = sort_by is not None and not leaderboard.higher_is_better(summaries).get(sort_by, True)
shown = wide.sort_values(sort_by, ascending=low_first, na_position="last") if sort_by else wide
st.dataframe(shown[[c for c in wide.columns if c not in value_cols]], hide_index=True, width="stretch")
lower_better = list(dict.fromkeys(r.headline.name for r in results if r.headline and r.headline.lower_is_better))
st.caption("Cells: headline metric ± half-width of its 95% bootstrap interval (speed: min–max over repeats). "
           + (f"Lower is better for {', '.join(lower_better)}; higher for the others." if lower_better
              else "Higher is better."))
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

tabs = st.tabs(["Per task", "Quality vs latency", "Confusion matrix", "F1 per class"])
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
    st.caption(f"{len(table)} examples. 'open ↗' shows the example on the Attributions page.")
    if table.empty and show != "all":
        st.info("Nothing to show: errors need a task with right/wrong answers; disagreements need the "
                "predictions of two or more models.")
    st.dataframe(table, hide_index=True, column_config=links, width="stretch", height=360)

# ---------------------------------------------------------------- export and reproducibility
e1, e2, e3, e4 = st.columns(4)
e1.download_button("Download CSV", leaderboard.export_csv(summaries), f"{run_id}.csv", "text/csv", key="b_csv")
e2.download_button("Download JSON", leaderboard.export_json(results), f"{run_id}.json", "application/json", key="b_json")
# built only when asked (plotly.js inlined: a few MB); kept under a key no widget uses, since a button's or
# download button's own key is read-only in st.session_state
built = st.session_state.get("b_html_report")
if not (isinstance(built, tuple) and built[0] == run_id):
    built = None
if e3.button("Build HTML report", key="b_html_build"):
    built = (run_id, report.html_report(results, f"Benchmark {labels[run_id]}"))
    st.session_state["b_html_report"] = built
if built:
    e3.download_button("Download HTML report", built[1], f"{run_id}.html", "text/html", key="b_html_download",
                       on_click="ignore")
with e4:
    share.control("benchmark", f"Benchmark {labels[run_id]}",
                  lambda: snapshots.benchmark(results, f"Benchmark {labels[run_id]}"), key=f"b_share_{run_id}")
with st.expander("Reproducibility: fingerprints, versions, seeds"):
    st.code(json.dumps({r.label: r.repro.to_dict() if r.repro else None for r in results if r.ok},
                       indent=1, default=str), language="json")
