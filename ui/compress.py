"""The Compress page's pieces: the make-a-variant form, the evaluation form and the report."""
import streamlit as st

from llm_lab.compress import evaluate, plots, tables
from llm_lab.stats.equivalence import BETTER, EQUIVALENT, WORSE
from llm_lab.endpoints import SOURCE as ENDPOINT_SOURCE
from llm_lab.plotting import CONFIG
from ui import backend, job_panel
from ui.common import cannot_run, permalink, plain, preset, show_permalink, user_errors

PARENT_HEADS = ("classifier", "causal-lm")
SPLITS = {"test (default; every row when there is none)": None, "validation": "validation", "train": "train",
          "all rows": "all"}
CONFIDENCE = {"95%": 0.05, "90%": 0.10, "99%": 0.01}
AGREEMENT_WARN = 0.95   # a new variant whose sample predictions agree less with its parent's is shown as a warning


def recipes():
    """(the compression recipes, their background job) or (None, None) where they are not installed."""
    try:
        from llm_lab.compress import jobs as compress_jobs, recipes as module
    except ImportError:
        return None, None
    return module, compress_jobs


def parent_names() -> list[str]:
    """Registry models that can be compressed and evaluated: classifiers, then causal LMs (not endpoint models:
    their weights are elsewhere)."""
    entries = [e for e in backend.model_entries() if e.head in PARENT_HEADS and e.source != ENDPOINT_SOURCE]
    return [e.name for e in sorted(entries, key=lambda e: PARENT_HEADS.index(e.head))]


def entry(name: str):
    return next(e for e in backend.model_entries() if e.name == name)


def variant_options(parent: str) -> tuple[list[str], list[str]]:
    """(every model that may be evaluated against `parent`, its registered variants first; the variants)."""
    entries = backend.model_entries()
    children = [e.name for e in entries if e.parent == parent and e.name != parent]
    others = [e.name for e in entries if e.name != parent and e.name not in children]
    return children + others, children


# ---------------------------------------------------------------- make a variant
def _param_widget(col, method: str, param):
    key = f"cz_p_{method}_{param.name}"
    kind = getattr(param, "kind", str)
    help_text = plain(getattr(param, "help", "") or "")
    default = getattr(param, "default", None)
    if kind is bool:
        return col.checkbox(param.name, bool(default), key=key, help=help_text)
    if param.name == "dataset":
        options = [""] + backend.dataset_names("text")
        return col.selectbox("dataset", options, key=key, help=help_text,
                             format_func=lambda n: n or "(the recipe's default)") or None
    raw = col.text_input(param.name, "" if default is None else str(default), key=key, help=help_text)
    return raw.strip() or None   # the recipe parses and checks the value (its type, its range)


def make_section(parent: str, job_key: str) -> None:
    """Pick a method of the compression recipes for the parent's head, its parameters, a name; run it as a job."""
    module, compress_jobs = recipes()
    if module is None:
        st.info("Making variants needs the compression recipes (llm_lab.compress.recipes), which this installation "
                "does not have. Variants made elsewhere, registered with this model as their parent, can still be "
                "evaluated below.", icon=":material/info:")
        return
    head = entry(parent).head
    found = list(module.methods(head))
    if not found:
        st.info(f"No compression method applies to {plain(parent)}, a {head}.")
        return
    titles = {r.method: getattr(r, "title", r.method) for r in found}
    _not_offered(module, parent, head)   # above the list, so the chosen method's description stays under it
    method = st.selectbox("Method", list(titles), format_func=titles.get, key="cz_method")
    recipe = next(r for r in found if r.method == method)
    st.caption(plain(getattr(recipe, "description", "")))
    params = {}
    shown = list(getattr(recipe, "params", ()))
    for col, param in zip(st.columns(max(1, len(shown))), shown):
        params[param.name] = _param_widget(col, method, param)
    c1, c2 = st.columns([3, 1])
    name = c1.text_input("Name of the variant (optional)", "", key="cz_name",
                         help="Letters, digits, '.', '_' or '-'; by default the parent's name and the method.")
    c2.write("")
    if c2.button("Make variant", key="cz_make", disabled=bool(cannot_run()), help=cannot_run()):
        with user_errors():
            job_panel.remember(job_key, compress_jobs.submit(backend.actor(), parent, method,
                                                             {k: v for k, v in params.items() if v is not None},
                                                             name.strip() or None))
            backend.clear()
    job_id = job_panel.current(job_key)
    if job_id:
        job_panel.show(job_id, extra=_made, key="cmake", link=permalink("views/compress.py", cmake_job=job_id))


def _not_offered(module, parent: str, head: str) -> None:
    """Say which methods the list leaves out for this parent, and why (a causal LM asked for int8, say)."""
    left_out = [r for r in getattr(module, "RECIPES", {}).values() if head not in r.heads]
    if not left_out:
        return
    try:
        module.check_applies(left_out[0], parent, head)
    except Exception as exc:  # the recipes' own words for why it does not apply
        st.caption(plain(f"Not offered for {parent}: {', '.join(r.title for r in left_out)}. {exc}"))


def _made(job) -> None:
    """A finished make job: the variant, its size against the parent's and its checks, in words."""
    from llm_lab.compress import jobs as compress_jobs

    if job["status"] != "succeeded" or not job.get("result"):
        return
    lines, agreement = compress_jobs.describe(job["result"])
    show = st.warning if agreement is not None and agreement < AGREEMENT_WARN else st.success
    show(plain(" ".join(lines)), icon=":material/warning:" if show is st.warning else ":material/check_circle:")


# ---------------------------------------------------------------- evaluate
def eval_form(parent: str) -> dict | None:
    """The evaluation's settings as `evaluate.submit` keyword arguments (None while something is missing)."""
    options, children = variant_options(parent)
    # its registered variants are picked when the parent changes or it gets a new one; what the person picks
    # afterwards stays
    preset("cz_variants", (parent, tuple(children)), {"cz_variants": children})
    if any(v not in options for v in st.session_state.get("cz_variants", [])):
        st.session_state["cz_variants"] = [v for v in st.session_state["cz_variants"] if v in options]
    variants = st.multiselect("Variants", options, key="cz_variants",
                              help="Its registered variants are picked first; any other registry model can be "
                                   "compared with it too (a distilled student, another fine-tune).")
    source = st.radio("Evaluate on", ["A dataset", "A benchmark suite"], horizontal=True, key="cz_source")
    kwargs = {"variants": variants}
    c1, c2, c3 = st.columns([2, 2, 1])
    if source == "A dataset":
        roles = ("text", "label") if entry(parent).head == "classifier" else ("text",)
        names = backend.dataset_names(*roles)
        kwargs["dataset"] = c1.selectbox("Dataset", names, key="cz_dataset",
                                         help="Its test split is scored unless you pick another: rows a model "
                                              "trained on do not score it.")
        kwargs["split"] = SPLITS[c2.selectbox("Split", list(SPLITS), key="cz_split")]
        kwargs["limit"] = int(c3.number_input("Examples (0 = all)", 0, 1_000_000, 0, key="cz_limit")) or None
    else:
        from llm_lab.bench import suite as suites

        available = suites.list_suites(backend.actor())
        pick = c1.selectbox("Suite", [s["name"] for s in available], key="cz_suite")
        if pick:
            kwargs["suite_text"] = open(next(s["path"] for s in available if s["name"] == pick)).read()
        kwargs["limit"] = int(c3.number_input("Examples per task (0 = all)", 0, 1_000_000, 0, key="cz_limit_suite")) or None
    m1, m2 = st.columns(2)
    margin = m1.number_input("Equivalence margin (accuracy points)", 0.1, 50.0, 1.0, 0.5, key="cz_margin",
                             help="A variant is equivalent when the interval of its accuracy difference with the "
                                  "parent lies inside ± this many points.")
    confidence = m2.selectbox("Confidence", list(CONFIDENCE), key="cz_confidence",
                              help="95%: each one-sided test at 5%, i.e. the 90% interval inside the margin (TOST).")
    kwargs.update(margin=float(margin) / 100, alpha=CONFIDENCE[confidence])
    with st.expander("Measurement settings"):
        s = st.columns(5)
        kwargs["speed_examples"] = int(s[0].number_input("Texts timed", 1, 10_000, 64, key="cz_speed_n",
                                                         help="The first scored texts: latency at batch 1, "
                                                              "throughput at batch 32, peak memory."))
        kwargs["repeats"] = int(s[1].number_input("Rounds", 1, 20, 3, key="cz_repeats"))
        kwargs["drift_examples"] = int(s[2].number_input("Attribution examples", 0, 256, 8, key="cz_drift_n"))
        kwargs["ig_steps"] = int(s[3].number_input("IG steps", 4, 300, 32, key="cz_ig_steps"))
        kwargs["memory"] = s[4].checkbox("Peak memory", True, key="cz_memory",
                                         help="A fresh process per model (a few seconds each).")
    if not variants or not (kwargs.get("dataset") or kwargs.get("suite_text")):
        return None
    return kwargs


def evaluations(current: str | None) -> dict:
    """{job id: label} of the user's evaluations, newest first (the one the address names among them)."""
    rows = evaluate.history(backend.actor())
    # no status in the label: the browser keeps showing a selected option's first label when only the label
    # changes (it said "queued" under a finished job); the job panel below says the status
    labels = {r["id"]: f"{r['id']} — {r['title']}" for r in rows}
    if current and current not in labels:
        labels = {current: current, **labels}
    return labels


# ---------------------------------------------------------------- the report
def _verdict_box(name: str, comparison) -> None:
    text = plain(f"{name}: {comparison.summary()}")
    if comparison.verdict == EQUIVALENT:
        st.success(text, icon=":material/check_circle:")
    elif comparison.verdict == WORSE:
        st.error(text, icon=":material/trending_down:")
    elif comparison.verdict == BETTER:
        st.success(text, icon=":material/trending_up:")
    else:
        st.info(text, icon=":material/help:")


def headline_lines(report: evaluate.Report) -> None:
    """Each model's quality on the main task as "metric value [95% interval] n=…", with how the interval was made
    (Wilson for accuracy: 10 of 10 right is [0.722, 1.000], not a collapsed 1.000 ± 0.000)."""
    for m in report.models:
        q = m.task(report.main_task) if report.main_task else None
        if q is None or q.error or q.value is None:
            continue
        parts = [f"{q.metric} {q.text()}"] + [f"{name} {q.text(name)}" for name in q.intervals if name != q.metric]
        method = f" (95% {q.method})" if q.method else ""
        st.text(f"{m.name}: " + " · ".join(parts) + method)


def show_report(report: evaluate.Report, job_id: str) -> None:
    src = report.source
    where = (f"dataset {src.get('dataset')}, split {src.get('split')}" if src.get("dataset")
             else f"suite {src.get('suite')} v{src.get('version', '')}")
    st.caption(plain(f"{report.parent} against {', '.join(report.variants)} on {where}; equivalence margin "
                     f"±{100 * report.margin:g} points at {1 - report.alpha:.0%}; verdicts on task {report.main_task}."))
    for m in report.models:
        for q in m.quality:
            if q.error:
                st.error(plain(f"{m.name} / {q.task}: {q.error}"))
        for warn in m.warnings:
            st.warning(plain(warn), icon=":material/warning:")
    for note in report.notes:
        st.caption(plain(note))
    for m in report.models[1:]:
        comparison = m.paired.get(report.main_task)
        if comparison:
            _verdict_box(m.name, comparison)
    headline_lines(report)
    st.dataframe(tables.summary(report), hide_index=True, width="stretch")
    notes = [f"{m.name}: size {m.size_note}" for m in report.models if m.size_note]
    notes += [f"{m.name}: peak memory not measured: {m.memory.error}" for m in report.models if m.memory and m.memory.error]
    notes += [f"{m.name}: speed not measured: {m.speed.error}" for m in report.models if m.speed and m.speed.error]
    st.caption("Size: every file of the model's folder. Peak memory: a fresh process loads the model and runs the "
               "timed texts at batch 32; the resident-set high-water mark above that process before loading. "
               "Latency p50/p95 at batch 1 and throughput at batch 32 on the same texts: medians over interleaved "
               "rounds after a warm-up. Intervals (95%): Wilson for accuracy, BCa bootstrap for macro-F1, "
               "the benchmark's for other headlines." + "".join(f" {plain(n)}." for n in notes))
    fig = plots.pareto(report)
    if fig is not None:
        st.plotly_chart(fig, config=CONFIG, key=f"cz_pareto_{job_id}")
    with st.expander("Paired comparisons, every task"):
        st.dataframe(tables.paired_rows(report), hide_index=True, width="stretch")
        st.caption("Interval: Tango's score interval of the paired accuracy difference at 1 − 2α; equivalent when "
                   "it lies inside ± the margin (two one-sided tests). McNemar: exact binomial test of the flips.")
    st.subheader("Attribution drift")
    drift = plots.drift_bars(report)
    if drift is not None:
        st.plotly_chart(drift, config=CONFIG, key=f"cz_drift_{job_id}")
    rows = tables.drift_rows(report)
    for row in rows:
        if row["example"] is None:  # why a variant has none, in full (a table cell cut it to "not avail")
            st.caption(plain(f"{row['variant']}: {row['note']}"))
    if any(row["example"] is not None for row in rows):
        st.dataframe([row for row in rows if row["example"] is not None], hide_index=True, width="stretch")
    elif not rows:
        st.caption("Attribution drift applies to classifiers (layer Integrated Gradients).")
    if report.run_id:
        st.caption("Per-example predictions of every model: the benchmark run of this evaluation.")
        show_permalink(permalink("views/benchmarks.py", result=report.run_id))
