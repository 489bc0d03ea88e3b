"""Compare: 2-4 models side by side on typed inputs or a dataset sample; saved comparisons reopen by link."""
import streamlit as st

from llm_lab import snapshots
from llm_lab.compare import diff, live, plots, runs, saved, statistics, tables
from llm_lab.compare import jobs as compare_jobs
from llm_lab.errors import LabError, failure_message
from llm_lab.explain.links import attribution_link
from llm_lab.generation import GenerationSettings
from ui import backend, job_panel, share
from ui.common import (
    cannot_run,
    header,
    local_link,
    permalink,
    plain,
    show_permalink,
    user_errors,
)
from ui.compare_form import (
    CONVERSATION,
    SOURCES,
    TYPED,
    conversation_box,
    default_models,
    example_prompts,
    first_settings,
    prefill,
    settings_form,
)

header(":material/compare: Compare", "Run two to four models on the same prompts or texts: outputs side by side, their numbers, "
       "word-level differences, and a table you can filter, sort, export and share by link.")
MODES = {"generation": "Generation (causal LMs)", "classification": "Classification"}
def loader(name: str, head: str):
    return backend.model(name, head=head)


def stream_run(models: list[str], inputs: list[dict], settings: GenerationSettings) -> runs.Comparison:
    """Each prompt: one column per model, its answer streamed in as it is generated (as plain text, the way
    the finished comparison shows it)."""
    results, errors = {m: [] for m in models}, {}
    for row in inputs:
        earlier_turns(row)
        st.markdown(f"**{row['id']}.** {plain(row['text'])}")
        for col, m in zip(st.columns(len(models)), models):
            with col:
                st.caption(plain(m))
                if m in errors:
                    st.error(plain(errors[m]))
                    continue
                sink, box, text = {}, st.empty(), ""
                try:
                    for piece in live.pieces(loader, m, runs.prompt_of(row), settings, sink):
                        text += piece
                        box.code(text, language=None, wrap_lines=True)
                    results[m].append(sink["result"])
                    st.caption(plain(live.stats_line(sink["result"])))
                except Exception as exc:  # one model failing: its column says why, the others go on
                    errors[m] = failure_message(exc)
                    st.error(plain(errors[m]))
    return live.collect(models, inputs, results, errors, settings)


def earlier_turns(row: dict) -> None:
    """A conversation's turns before the one the models answer (the prompt shown is that last user turn)."""
    for turn in (row.get("conversation") or [])[:-1]:
        st.caption(f"{turn['role']}: {plain(turn['content'])}")


def run_typed(models: list[str], inputs: list[dict], settings: GenerationSettings | None) -> None:
    """Run typed inputs (or a conversation) here, save the comparison and open it."""
    backend.actor().require("run", "run comparisons")  # the streamed path runs the models here
    models = runs.check_models(models)
    if settings is not None:
        comp = stream_run(models, inputs, settings)
    else:
        with st.spinner("Classifying…"):
            comp = runs.run(backend.actor(), "classification", models, inputs, loader=loader)
    st.query_params["comparison"] = saved.save(backend.actor(), comp)
    backend.clear()
    st.rerun()


def interval_caption(col, ci) -> None:
    """Beside a number: its 95% interval, the inputs behind it and how the interval was made."""
    col.caption(f"{ci.text()} · 95% {ci.method}")


def model_cards(comp: runs.Comparison) -> None:
    gen = comp.mode == "generation"
    found = statistics.model_intervals(comp)
    for col, m in zip(st.columns(len(comp.models)), comp.models):
        s = comp.summary[m]
        col.markdown(f"**{plain(m)}**")
        if "error" in s:
            col.error(plain(s["error"]))
            continue
        numbers = found.get(m, {})
        if gen:
            col.metric("tokens / s", f"{s['tokens_per_s']:.1f}", help="new tokens over the model's whole run time")
            col.caption(f"one timed run over {len(comp.inputs)} inputs (no spread measured: see Benchmarks' "
                        "speed task for repeats)")
        for k, ci in numbers.items():  # every score with its interval and n
            col.metric(statistics.LABELS[k], f"{ci.value:.1%}" if k in ("accuracy", "exact_match") else
                       f"{ci.value:.3f}" if abs(ci.value) < 10 else f"{ci.value:.1f}")
            interval_caption(col, ci)
        if gen and s["truncated"]:
            col.warning(f"{s['truncated']} prompt(s) cut from the left to fit the context.")
        if not gen and s["head_is_new"]:
            col.warning("Its classification head is untrained (random): fine-tune it on the Train page.")


def paired_section(comp: runs.Comparison) -> float:
    """Which model is better: every pair on the labelled inputs (or why there is no test). Returns the
    equivalence margin set here (a fraction), which the exports use too."""
    st.markdown("**Which model is better?**")
    reason = statistics.no_paired_reason(comp)
    margin = st.number_input("Equivalence margin (points)", 0.1, 50.0, 2.0, 0.5, key=key(comp, "c_margin"),
                             help="Two models are called equivalent when the 90% interval of their difference "
                                  "lies inside ± this many points (two one-sided tests).") / 100
    if reason:
        st.info(reason)
        return margin
    found = statistics.paired_comparisons(comp, margin)
    rows = statistics.pair_rows(found)
    for row in rows:
        st.text(row["verdict"])  # model names inside: plain text
    st.dataframe(rows, hide_index=True, key=key(comp, "c_pairs"))
    st.caption(f"Paired on the same {found[0].n} labelled inputs. Test: McNemar's exact test of the flips; p-values "
               f"{found[0].adjustment}-adjusted across the {len(found)} pair(s). Interval of B − A: paired bootstrap "
               "over the inputs. Detectable: the smallest difference these inputs detect at 80% power.")
    return margin


def key(comp: runs.Comparison, name: str) -> str:
    """A widget key of this comparison's view: another comparison gets new widgets, not this one's choices
    (its inputs and models are other options; the browser would keep showing the old labels)."""
    return f"{name}_{comp.id}"


def results_table(comp: runs.Comparison, margin: float | None = None) -> None:
    gen = comp.mode == "generation"
    f1, f2, f3 = st.columns([2, 1, 1])
    search = f1.text_input("Show rows containing", key=key(comp, "c_search"))
    only = f2.toggle("Only disagreements", key=key(comp, "c_disagree"), disabled=gen)
    details = f3.toggle("Numbers per output", key=key(comp, "c_details"), disabled=not gen)
    frame = tables.filter_rows(tables.table(comp, details), search, only)
    config = {}
    if not gen:
        src = comp.source or {}
        for m in comp.models:
            if not comp.outputs[m].error:
                frame[f"{m} · explain"] = [local_link(attribution_link(m, t, src.get("dataset"), i))
                                           for t, i in zip(frame["input"], frame["id"])]
                config[f"{m} · explain"] = st.column_config.LinkColumn(display_text="attributions ↗")
    st.dataframe(tables.highlight_disagreements(frame), hide_index=True, column_config=config, key=key(comp, "c_table"))
    st.caption(f"{len(frame)} of {len(comp.inputs)} rows" + ("" if gen else "; rows where the models disagree "
               "are tinted") + ". Click a column header to sort.")
    d1, d2, d3, d4, d5, _ = st.columns([1, 1, 1, 1, 1, 1])
    d1.download_button("CSV", tables.to_csv(frame), f"comparison-{comp.id}.csv", "text/csv", on_click="ignore")
    d2.download_button("Numbers CSV", tables.to_csv(tables.numbers_frame(comp)), f"comparison-{comp.id}-numbers.csv",
                       "text/csv", on_click="ignore", help="Every model's numbers with their 95% interval and n")
    pairs = tables.pairs_frame(comp, margin)
    d3.download_button("Pairs CSV", tables.to_csv(pairs), f"comparison-{comp.id}-pairs.csv", "text/csv",
                       on_click="ignore", disabled=pairs.empty, help="The paired comparison of every two models")
    d4.download_button("JSON", tables.to_json(comp, margin), f"comparison-{comp.id}.json", "application/json",
                       on_click="ignore")
    d5.download_button("HTML", tables.to_html(comp, margin), f"comparison-{comp.id}.html", "text/html",
                       on_click="ignore")


def one_input(comp: runs.Comparison) -> None:
    inputs, models = comp.inputs, comp.models
    ok = [m for m in models if not comp.outputs[m].error]
    i = st.selectbox("Look at one input", range(len(inputs)), key=key(comp, "c_row"),
                     format_func=lambda k: f"{inputs[k]['id']}: {inputs[k]['text'][:90]}")
    earlier_turns(inputs[i])
    st.markdown(f"> {plain(inputs[i]['text'])}")
    if inputs[i].get("reference") or inputs[i].get("label"):
        st.caption(f"Reference: {plain(inputs[i].get('reference') or inputs[i].get('label'))}")
    if comp.mode == "classification":
        if ok:
            st.plotly_chart(plots.class_probabilities(comp, i), key="c_probs")
        for col, m in zip(st.columns(len(ok) or 1), ok):
            row = comp.outputs[m].rows[i]
            col.markdown(f"**{plain(m)}**: {plain(row['label'])} ({row['prob']:.1%})")
            col.link_button("Why? Attributions ↗", local_link(attribution_link(m, inputs[i]["text"])))
        return
    for col, m in zip(st.columns(len(models)), models):
        col.markdown(f"**{plain(m)}**")
        if m not in ok:
            col.error(plain(comp.outputs[m].error))
            continue
        row = comp.outputs[m].rows[i]
        col.code(row["text"] or "(empty)", language=None, wrap_lines=True)
        col.caption(f"{row['new_tokens']} tokens · {row['latency_s']:.2f}s · {row['tokens_per_s']:.1f} tok/s · "
                    f"logprob {'–' if row['mean_logprob'] is None else round(row['mean_logprob'], 3)}"
                    f" · {plain(row['stop_reason'])}" + (f" · ⚠ {plain(row['note'])}" if row["note"] else ""))
    if len(ok) >= 2:
        st.markdown("**Word-level differences**")
        a1, a2 = st.columns(2)
        ma = a1.selectbox("From", ok, index=0, key=key(comp, "c_diff_a"))
        mb = a2.selectbox("To", ok, index=1, key=key(comp, "c_diff_b"))
        ta, tb = comp.outputs[ma].rows[i]["text"], comp.outputs[mb].rows[i]["text"]
        left, right = diff.side_by_side_html(ta, tb)
        a1.html(diff.STYLE + left)
        a2.html(diff.STYLE + right)
        st.caption(f"{diff.similarity(ta, tb):.0%} of the words in common. Struck through: only in {plain(ma)}; "
                   f"green: only in {plain(mb)}.")


def show(comp: runs.Comparison) -> None:
    st.divider()
    st.subheader(plain(comp.title or "Comparison"))
    st.caption(f"Comparison `{comp.id}`")
    show_permalink(permalink("views/compare.py", comparison=comp.id))
    share.control("comparison", comp.title or "Comparison", lambda: snapshots.comparison(comp),
                  key=f"c_share_{comp.id}")
    model_cards(comp)
    ok = comp.ok_models()
    if comp.mode == "generation" and ok:
        st.plotly_chart(plots.generation_summary(comp), key="c_summary")
    elif len(ok) >= 2:
        agree = statistics.agreement_intervals(comp)
        st.metric("all models agree on", f"{agree['all'].value:.0%} of the inputs")
        st.caption(f"{agree['all'].text()} · 95% {agree['all'].method}"
                   + "".join(f"; {plain(pair)}: {ci.text()}" for pair, ci in agree.items() if pair != "all"))
        b1, b2 = st.columns(2)
        ma = b1.selectbox("Rows: model", ok, index=0, key=key(comp, "c_conf_a"))
        mb = b2.selectbox("Columns: model", ok, index=1, key=key(comp, "c_conf_b"))
        st.plotly_chart(plots.confusion_between(runs.confusion_between(comp, ma, mb)), key="c_conf")
    margin = paired_section(comp) if len(ok) >= 2 else None
    results_table(comp, margin)
    one_input(comp)


# ---------------------------------------------------------------- the comparison opened (?comparison=ID)
cid = st.query_params.get("comparison")
opened = None
if cid:
    try:
        opened = saved.get(backend.actor(), cid)
        prefill(opened)  # before the form's widgets are drawn
    except LabError as exc:  # shown where the comparison would be
        opened = exc

# ---------------------------------------------------------------- new comparison
with user_errors():
    # the comparison's mode; the widget keeps its key "c_kind" ("c_mode" is the decoding radio)
    mode = st.radio("What to compare", list(MODES), format_func=MODES.get, horizontal=True, key="c_kind")
    gen = mode == "generation"
    names = backend.model_names(runs.NEEDS[mode])
    if len(names) < 2:
        st.info("Fewer than two models of this kind are registered. Add one on the Models page (a local folder "
                "or a Hub id), fine-tune one on the Train page, or type a folder path below.")
    models = st.multiselect("Models (two to four)", names, default=default_models(mode, names), max_selections=4,
                            key=f"c_models_{mode}", accept_new_options=True)
    if gen:
        backend.size_ladder()
    source = st.radio("Inputs", SOURCES, horizontal=True, key="c_source")
    settings = settings_form(first_settings(default_models(mode, names))) if gen else None
    if source == TYPED:
        t1, t2 = st.columns(2)
        example = example_prompts(mode, default_models(mode, names))
        texts = t1.text_area("One prompt per line" if gen else "One text per line", example, key=f"c_texts_{mode}")
        refs = t2.text_area("References, one per line (optional)" if gen else "Gold labels, one per line (optional)",
                            key=f"c_refs_{mode}", help="Line k belongs to input k; leave a line empty for none.")
        if st.button("Compare", type="primary", key="c_run", disabled=bool(cannot_run()), help=cannot_run()):
            lines = [l for l in texts.splitlines() if l.strip()]
            golds = refs.splitlines() + [""] * len(lines)
            run_typed(models, runs.make_inputs(lines, references=golds[:len(lines)] if gen else None,
                                               labels=None if gen else golds[:len(lines)]), settings)
    elif source == CONVERSATION:
        if not gen:
            st.info("A conversation is for generation: pick \"Generation\" above, or type texts to classify.")
        else:
            conversation, reference = conversation_box()
            if st.button("Compare", type="primary", key="c_run", disabled=bool(cannot_run()), help=cannot_run()):
                turns = runs.parse_conversation(conversation)
                run_typed(models, [runs.conversation_input(turns, reference)], settings)
    else:
        roles = ("prompt",) if gen else ("text",)
        ds_names = sorted(set(backend.dataset_names(*roles)) | (set(backend.dataset_names("text")) if gen else set()))
        d1, d2, d3 = st.columns([2, 1, 1])
        dataset = d1.selectbox("Dataset", ds_names, key="c_dataset")
        splits = next((list(d.splits) for d in backend.datasets() if d.name == dataset), [])
        split = d2.selectbox("Split", ["all"] + splits, key="c_split")
        limit = d3.number_input("Rows (random sample)", 1, 5000, 32, key="c_limit")
        if st.button("Run as a background job", type="primary", key="c_job", disabled=not dataset):
            job_id = compare_jobs.submit(backend.actor(), mode, runs.check_models(models), dataset, None if split == "all" else split,
                                         int(limit), settings=settings.as_dict() if settings else None)
            job_panel.remember("compare_job", job_id)

job_id = job_panel.current("compare_job")
if job_id:
    def open_result(job):
        if job["status"] == "succeeded" and job["result"]:
            cid = job["result"]["comparison_id"]
            if st.query_params.get("comparison") != cid and st.button("Show the results", key=f"c_open_{job_id}"):
                st.query_params["comparison"] = cid
                st.rerun()
    job_panel.show(job_id, extra=open_result, key="compare", link=permalink("views/compare.py", compare_job=job_id))

with st.expander("Saved comparisons"):
    rows = backend.saved_comparisons()
    if not rows:
        st.caption("None yet: every comparison you run is saved here.")
    for r in rows[:30]:
        st.markdown(f"[{plain(r['title'])}]({permalink('views/compare.py', comparison=r['id'])}) · `{r['id']}`")

if opened is not None:
    with user_errors():
        if isinstance(opened, LabError):
            raise opened
        show(opened)
