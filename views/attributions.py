"""Attributions: which tokens drove a prediction or a generated token (Captum), and how faithful that is.

Query parameters: model, dataset, example (row id), text — links from Benchmarks and Compare land here.
A permalink of a result adds what produced it, and opening it runs it again: classification `method`
(repeated), `with` (a second model), `target`, `baseline`, `steps`, `samples`; generation `method`, `new`,
`steps`, `target`, `raw` (1: no chat template), `system`; a dataset job is `attr_job`.
"""
import streamlit as st

from llm_lab.explain import attributions as attr_mod
from llm_lab.explain import faithfulness, plots, specs
from llm_lab.explain.generation import attribute_generation
from llm_lab.explain.jobs import JOB_FN as DATASET_JOB
from llm_lab import capabilities, snapshots
from llm_lab.plotting import CONFIG
from ui import backend, job_panel, share
from ui.common import cannot_run, header, permalink, plain, show_permalink, user_errors
from ui.explain import PNG_NOTE, attribution_block, generation_block

header(":material/target: Attributions", "Token attributions for a classifier (2–4 methods or 2 models side by side, with "
                       "faithfulness) and for each token a causal LM generates. " + PNG_NOTE)

qp = st.query_params
cls_models = backend.model_names(specs.CLASSIFICATION_NEEDS)
lm_models = backend.model_names(specs.GENERATION_NEEDS)


def url_int(param: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within [low, high], else `default` (a widget's starting value)."""
    try:
        value = int(qp.get(param, default))
    except ValueError:
        return default
    return value if low <= value <= high else default


def index_of(options: list, param: str, default: int = 0) -> int:
    """The position of the query parameter's value in `options` (a select box's starting index)."""
    return options.index(qp[param]) if qp.get(param) in options else default


def run_from_link(what: str) -> bool:
    """Whether to run `what` now because the address is a result's permalink (once per address and session)."""
    if not qp.get_all("method"):
        return False
    address = sorted((k, tuple(qp.get_all(k))) for k in qp)
    if st.session_state.get(f"{what}_linked") == address:
        return False
    st.session_state[f"{what}_linked"] = address
    return True


def example_text() -> tuple[str, str | None]:
    text = qp.get("text") or "A wonderful, warm film with a clever script, though the ending drags."
    if qp.get("dataset") and qp.get("example"):
        with user_errors():
            info = next((d for d in backend.datasets() if d.name == qp["dataset"]), None)
            if info is None:
                st.warning(f"Dataset {plain(repr(qp['dataset']))} not found; using the default text.")
                return text, None
            frame = backend.dataset_frame(info.name, info.fingerprint)
            row = frame[frame["id"].astype(str) == str(qp["example"])]
            if row.empty:
                st.warning(f"No row with id {plain(repr(qp['example']))} in {plain(info.name)}; using the default text.")
            else:
                return str(row.iloc[0]["text"]), str(row.iloc[0].get("label", "")) or None
    return text, None


def faithfulness_verdict(ranking: dict, advice: str = "") -> None:
    """Most faithful only when the lead is beyond the noise, else that the methods cannot be told apart; and each
    method's faithfulness with its interval and n (a table: the method names are plain text)."""
    if ranking["winner"]:
        st.success(plain(ranking["verdict"] + (" " + advice if advice else "")), icon=":material/verified:")
    else:
        st.info(plain(ranking["verdict"] + (" " + advice if advice else "")), icon=":material/balance:")
    unit = ranking["unit"]
    st.dataframe([{"method": r["method"],
                   "faithfulness (comp. − suff.) ↑": faithfulness.interval_text(
                       r["faithfulness"], r["faithfulness_low"], r["faithfulness_high"], r["n"], unit),
                   "comprehensiveness ↑": faithfulness.interval_text(
                       r["comprehensiveness"], r["comprehensiveness_low"], r["comprehensiveness_high"], r["n"]),
                   "sufficiency ↓": faithfulness.interval_text(
                       r["sufficiency"], r["sufficiency_low"], r["sufficiency_high"], r["n"])}
                  for r in ranking["rows"]], hide_index=True, width="stretch")
    st.caption(f"{ranking['confidence']:.0%} intervals: {ranking['interval']}. A method is named most faithful "
               "only when the interval of its lead over the runner-up lies above zero.")


default_mode = 2 if qp.get("attr_job") else 1 if qp.get("model") in lm_models else 0
mode = st.radio("What to explain", ["Classification", "Generation", "Dataset (background job)"],
                index=default_mode, horizontal=True, key="attr_mode")

if mode == "Classification":
    if not cls_models:
        st.warning("No encoder or classifier models in the registry.")
        st.stop()
    text, gold = example_text()
    example = text
    c1, c2 = st.columns([1, 2])
    name = c1.selectbox("Model", cls_models, index=cls_models.index(qp["model"]) if qp.get("model") in cls_models else 0,
                        key="attr_model")
    others = ["—"] + [m for m in cls_models if m != name]
    other = c1.selectbox("Compare with model (optional)", others, index=index_of(others, "with"), key="attr_model2")
    text = c2.text_area("Text", text, height=100, key="attr_text")
    if gold:
        c2.caption(f"Gold label of this example: **{plain(gold)}**")
    loaded = None
    with user_errors():
        loaded = backend.model(name, head=specs.CLASSIFICATION_NEEDS.head)
    if loaded is None:
        st.stop()
    if loaded.head_is_new:
        st.warning(f"{plain(name)}'s classifier head is new (random) until you fine-tune it: attributions explain an "
                   "untrained head.", icon=":material/science:")
    methods = specs.compatible_methods(loaded, specs.CLASSIFICATION_METHODS)
    by_name = {m.name: m for m in methods}
    from_link = [m.name for m in methods if m.key in qp.get_all("method")][:4]
    # a row of its own: four long method names fit as whole chips
    picked = st.multiselect("Methods (1–4; two models: the first method is used)", list(by_name),
                            default=from_link or list(by_name)[:2], max_selections=4, key="attr_methods")
    c4, c5 = st.columns(2)
    targets = ["predicted"] + loaded.labels
    target = c4.selectbox("Target class", targets, index=index_of(targets, "target"), key="attr_target")
    baselines = ["pad", "mask", "zero"]
    baseline = c5.selectbox("Baseline", baselines, index=index_of(baselines, "baseline"), key="attr_baseline",
                            help="The 'absent' input for IG, DeepLift and the perturbation methods; special "
                                 "tokens stay. Perturbation methods take pad or mask.")
    with st.expander("Settings"):
        s1, s2 = st.columns(2)
        n_steps = s1.slider("IG steps", 8, 200, url_int("steps", 50, 8, 200), key="attr_steps")
        n_samples = s2.slider("LIME / KernelSHAP samples", 50, 1000, url_int("samples", 200, 50, 1000), step=50,
                              key="attr_samples")
    if st.button("Explain", type="primary", key="attr_run", disabled=not picked) or (picked and run_from_link("attr")):
        runs = [(name, by_name[p].key) for p in picked]
        if other != "—" and picked:
            runs = [(name, by_name[picked[0]].key), (other, by_name[picked[0]].key)]
        st.session_state.pop("attr_results", None)
        with user_errors(), st.spinner("Attributing…"):
            st.session_state["attr_results"] = attr_mod.side_by_side(
                lambda m: backend.model(m, head=specs.CLASSIFICATION_NEEDS.head), text, runs, target, baseline,
                n_steps, n_samples)
            row = ({"dataset": qp["dataset"], "example": qp["example"]} if qp.get("dataset") and qp.get("example")
                   and text == example else {"text": text})  # a dataset row is named by its id while unedited
            st.session_state["attr_link"] = permalink(
                "views/attributions.py", model=name, **row, method=[by_name[p].key for p in picked[:1 if other != "—" else 4]],
                **{"with": None if other == "—" else other}, target=target, baseline=baseline, steps=n_steps,
                samples=n_samples)
    results = st.session_state.get("attr_results") or []
    if results:
        if st.session_state.get("attr_link"):
            show_permalink(st.session_state["attr_link"])
        cols = st.columns(len(results))
        for i, (col, (a, f)) in enumerate(zip(cols, results)):
            with col:
                attribution_block(a, f, key=str(i), narrow=len(results) > 2)
        ranking = faithfulness.rank_rows([{"method": f"{a['model']} · {a['method_name']}", **f} for a, f in results])
        st.plotly_chart(plots.faithfulness_bar(ranking["rows"]), width="stretch", config=CONFIG, key="attr_faith")
        faithfulness_verdict(ranking, "Run the dataset job for an answer over many examples.")
        share.control("attribution", f"Attributions: {results[0][0]['model']}",
                      lambda: snapshots.attribution(results, text), key=f"attr_share_{id(results)}")

elif mode == "Generation":
    if not lm_models:
        st.warning("No causal language model in the registry (tiny-gpt appears once it is built).")
        st.stop()
    c1, c2 = st.columns([1, 2])
    name = c1.selectbox("Causal LM", lm_models, index=lm_models.index(qp["model"]) if qp.get("model") in lm_models else 0,
                        key="gen_model")
    prompt = c2.text_area("Prompt", qp.get("text") or "A list in Python is", height=80, key="gen_prompt")
    with user_errors():
        loaded = backend.model(name, head=specs.GENERATION_NEEDS.head)
        methods = {m.name: m.key for m in specs.compatible_methods(loaded, specs.GENERATION_METHODS)}
        c3, c4, c5 = st.columns([3, 1, 1])
        keys = list(methods.values())
        method = c3.selectbox("Method", list(methods), index=keys.index(qp["method"]) if qp.get("method") in keys else 0,
                              key="gen_method")
        max_new = c4.number_input("New tokens", 1, 128, url_int("new", 12, 1, 128), key="gen_new")
        n_steps = c5.number_input("IG steps", 4, 100, url_int("steps", 20, 4, 100), key="gen_steps")
        target = st.text_input("Target continuation (optional; empty: the model's greedy output)",
                               qp.get("target", ""), key="gen_target")
        has_template = loaded.capabilities.has(capabilities.CHAT)
        if has_template:  # a chat model reads its prompt through its template, as on Compare and Arena
            t1, t2 = st.columns([1, 2])
            raw = t1.toggle("Raw prompt (no chat template)", qp.get("raw") == "1", key="gen_raw",
                            help="On: attribute the prompt as typed. Off: the model's chat template wraps it, and "
                                 "its tokens (<|im_start|>, the role) are attributed too.")
            system = t2.text_input("System prompt (empty: the template's default)", qp.get("system", ""),
                                   key="gen_system", disabled=raw)
        else:
            raw, system = True, ""
        if st.button("Generate and attribute", type="primary", key="gen_run") or run_from_link("gen"):
            st.session_state.pop("gen_result", None)
            with st.spinner("Attributing each generated token…"):
                g = attribute_generation(loaded, prompt, int(max_new), methods[method], target=target or None,
                                         n_steps=int(n_steps), chat_template=not raw, system=system)
            st.session_state["gen_result"] = g.to_dict()
            st.session_state["gen_link"] = permalink("views/attributions.py", model=name, text=prompt,
                                                     method=methods[method], new=int(max_new), steps=int(n_steps),
                                                     target=target, **({"raw": "1"} if has_template and raw else {}),
                                                     **({"system": system} if system and not raw else {}))
    if st.session_state.get("gen_result"):
        if st.session_state.get("gen_link"):
            show_permalink(st.session_state["gen_link"])
        generation_block(st.session_state["gen_result"], key="g")
        gen_result = st.session_state["gen_result"]
        share.control("attribution", f"Generation attributions: {gen_result['model']}",
                      lambda: snapshots.generation_attribution(gen_result), key=f"gen_share_{id(gen_result)}")

else:
    names = backend.dataset_names("text")
    if not names or not cls_models:
        st.info("Import a dataset with a text column (Datasets page) to attribute a sample of it.")
        st.stop()
    results = backend.classification_results()
    source = st.radio("Examples", ["A sample of a dataset", "The errors of a benchmark result"], horizontal=True,
                      key="ds_source", help="Benchmark results come from classification tasks on the Benchmarks page.")
    all_methods = {m.name: m.key for m in specs.CLASSIFICATION_METHODS.values()}
    params: dict = {}
    if source == "A sample of a dataset":
        c1, c2, c3 = st.columns(3)
        model = c1.selectbox("Model", cls_models, key="ds_model")
        dataset = c2.selectbox("Dataset", names, index=names.index(qp["dataset"]) if qp.get("dataset") in names else 0,
                               key="ds_dataset")
        n = c3.number_input("Examples", 4, 2000, 32, key="ds_n")
        params, title = {"model": model, "dataset": dataset}, f"Attributions: {model} on {dataset} ({int(n)} examples)"
    elif not results:
        st.info("No finished classification benchmark yet. Run a suite with a classification task on the "
                "Benchmarks page, then come back to attribute the examples it got wrong.")
    else:
        labels = {f"{r.model} · {r.suite}/{r.task} · {r.headline.name if r.headline else None} "
                  f"{r.headline.value if r.headline and r.headline.value is not None else float('nan'):.3f}": r
                  for r in results}
        c1, c2 = st.columns([3, 1])
        picked_result = labels[c1.selectbox("Benchmark result", list(labels), key="ds_result")]
        n = c2.number_input("At most", 4, 2000, 64, key="ds_n_err")
        params = {"bench_result": picked_result.key}
        title = f"Attributions: errors of {picked_result.model} on {picked_result.suite}/{picked_result.task}"
    picked = st.multiselect("Methods", list(all_methods), default=list(all_methods)[:3], key="ds_methods")
    if st.button("Start job", type="primary", key="ds_run", disabled=not (picked and params) or bool(cannot_run()),
                 help=cannot_run()):
        with user_errors():
            job_id = backend.submit_job(DATASET_JOB, {**params, "n": int(n), "methods": [all_methods[p] for p in picked]},
                                        title)
            job_panel.remember("attr_job", job_id)

    def show_result(job):
        res = job.get("result")
        if job["status"] != "succeeded" or not res:
            return
        st.plotly_chart(plots.faithfulness_bar(res["faithfulness"]), width="stretch", config=CONFIG, key="ds_faith")
        if res.get("ranking"):
            st.caption(plain(f"{res['model']} on the {res.get('source', 'sample')} ({res['n']} examples):"))
            faithfulness_verdict({**res["ranking"], "rows": res["faithfulness"]})
        else:  # saved before faithfulness carried intervals: its "most faithful" may be a ranking of noise
            st.info("This result has no intervals on its faithfulness, so it cannot say whether one method is more "
                    "faithful than the others. Run the job again.")
        for method, agg in res["class_tokens"].items():
            st.markdown(f"**{plain(method)}**")
            st.plotly_chart(plots.class_tokens_bar(agg), width="stretch", config=CONFIG, key=f"ds_cls_{method}")
        share.control("attribution", job["title"], lambda: snapshots.attribution_job(res, job["title"]),
                      key=f"ds_share_{job['id']}")

    if job_panel.current("attr_job"):
        job_panel.show(job_panel.current("attr_job"), extra=show_result, key="attr_job",
                       link=permalink("views/attributions.py", attr_job=job_panel.current("attr_job")))
