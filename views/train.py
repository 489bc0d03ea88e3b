"""Train: fine-tune a classifier or a causal LM, or pretrain a small GPT-2, as a background job."""
import pandas as pd
import streamlit as st

from llm_lab import jobs, snapshots, train
from llm_lab.serve import command as serve_command
from llm_lab.train import evaluation as train_evaluation
from llm_lab.train import export, history, plots, resources
from ui import backend, job_panel, share, train_form, views
from ui.common import cannot_run, header, permalink, plain, show_permalink, user_errors
from ui.form_state import KeptForm

header(":material/model_training: Train", "Fine-tune a classifier or a causal LM on your dataset, or pretrain a small GPT-2 from scratch. "
       "Training runs in the background worker: refresh, switch pages or close the tab, the job goes on.")
KEY = "train_job"
NEW, LIVE, HISTORY = "New run", "Live", "History"


@st.cache_data(ttl=600, show_spinner="Estimating memory and time…")
def cached_estimate(who, values: dict, workers: tuple = ()) -> dict:
    """`workers`: on a team server the plan is judged against the live GPU workers (jobs.fleet), so it is part of
    the key: a worker starting or leaving gives a new plan, not a stale refusal."""
    return train.estimate(who, train.TrainConfig(**values))


def finished(job: dict) -> None:
    """The live curves, and once done, where the model went and its download."""
    frame = history.curves(backend.actor(), job["id"])
    st.plotly_chart(plots.run_curves(frame), key=f"curves-{job['id']}")
    result = job["result"] or {}
    if job["status"] not in ("queued", "running"):
        share.control("training", f"Training run {result.get('model') or job['title']}",
                      lambda: snapshots.training(backend.actor(), job["id"]), key=f"t_share_live_{job['id']}")
    if job["status"] == "succeeded" and result.get("model"):
        st.success(f"**{plain(result['model'])}** is in the registry. Use it on the Models, Benchmarks, Compare, "
                   "Attention and Attributions pages, or serve it over HTTP (an OpenAI-compatible API) with the "
                   "command below.")
        held_out(result)
        # a model saved to a folder of its own (--out) is not registered: it is served from that folder
        st.code(serve_command(result["model"] if result.get("registered") else result.get("folder") or result["model"]),
                language="bash")
        if result.get("registered"):  # zipped when the button is pressed (a deferred download), not on each run
            who, name = backend.actor(), result["model"]
            st.download_button("Download the model (zip)", lambda: export.zip_bytes(who, name),
                               file_name=f"{name}.zip", mime="application/zip", key=f"zip-{job['id']}",
                               on_click="ignore")


def held_out(result: dict) -> None:
    """The final evaluation: each metric with its 95% interval and the held-out rows behind it, and the model
    against its base on the same rows (or why not)."""
    lines = train_evaluation.lines(result.get("evaluation"))
    if not lines:  # a run without a held-out split, or one trained before intervals were kept
        shown = ", ".join(f"{k.removeprefix('eval_')} {v:.4g}" for k, v in (result.get("metrics") or {}).items())
        st.caption(plain(f"Held-out metrics (no intervals stored for this run): {shown}" if shown else
                         "No evaluation split: no held-out metrics."))
        return
    st.markdown("**Held-out evaluation**")
    for line in lines:
        st.text(line)  # model names inside: plain text
    train_form.before_after(result)


def open_live(job_id: str) -> None:
    job_panel.remember(KEY, job_id)
    views.go("t_view", LIVE)


def new_run() -> None:
    """The form: the run's settings, its estimate and command, and the start button."""
    k = form.key  # every value here is kept: a refresh or a page switch does not lose it
    task = st.radio("Task", list(train.TASKS), format_func=train.TASKS.get, horizontal=True, key=k("t_task"))
    distill = train_form.distilling(form, task)  # drawn under the model and dataset
    lora = task != "pretrain" and not distill and bool(st.session_state.get(k("t_lora", bool)))  # under Advanced
    defaults = train.task_defaults(task, lora, distill)
    variant = "_lora" if lora else "_distill" if distill else ""  # each variant's defaults stay its own
    values: dict = {"task": task}
    c1, c2, c3 = st.columns(3)
    if task == "pretrain":
        values["preset"] = c1.selectbox("Size preset", list(train.PRESETS), index=list(train.PRESETS).index("3M"),
                                        key=k("t_preset"), help="GPT-2 shapes from ~1M to ~30M parameters; edit "
                                        "them under Advanced.")
        builtin = {f"(built-in: {name})": name for name in train.CORPORA}
        names = list(builtin) + backend.dataset_names("text")
        chosen = c2.selectbox("Corpus", names, key=k("t_corpus"), help="Built-in: `python` is the standard "
                              "library's source and docs (what tiny-gpt and small-gpt learnt from), `pydoc` the "
                              "reference docs only (small, quick). Or a dataset with a text column.")
        values["dataset"] = "" if chosen in builtin else chosen
        values["corpus"] = builtin.get(chosen, "pydoc")
    else:
        models = backend.model_names(train.NEEDS[task])
        want = defaults.get("model", "minilm")
        values["model"] = c1.selectbox("Base model", models, index=models.index(want) if want in models else 0,
                                       key=k(f"t_model_{task}{'_distill' if distill else ''}"))  # a teacher
        defaults = train.task_defaults(task, lora, distill, model=values["model"])
        variant += train_form.chat_variant(task, distill, values["model"])  # the chat model's defaults its own
        roles = ("text", "label") if task == "classify" else ()
        names = backend.dataset_names(*roles) if roles else [d.name for d in backend.datasets()]
        values["dataset"] = c2.selectbox("Dataset", names, key=k(f"t_data_{task}"),
                                         help="Import datasets on the Datasets page.")
        info = next((d for d in backend.datasets() if d.name == values["dataset"]), None)
        mapped = list(info.roles) if info else ["text"]
        if task == "classify":
            text_roles = [r for r in mapped if r in ("text", "prompt", "text_pair")] or ["text"]
            values["text_col"] = c3.selectbox("Text column (role)", text_roles, key=k("t_textcol"))
            pair = ["(none)"] + [r for r in mapped if r in ("text_pair",) and r != values["text_col"]]
            chosen_pair = c3.selectbox("Second text (pairs)", pair, key=k("t_pair"))
            values["pair_col"] = "" if chosen_pair == "(none)" else chosen_pair
            if info and info.label_names:
                st.caption(f"Labels: {plain(', '.join(map(str, info.label_names)))}")
        else:
            formats = ["auto", "text", "prompt-completion"]
            values["lm_format"] = c3.selectbox("Format", formats, key=k("t_format"), help="text: continue the text "
                                               "column; prompt-completion: prompt → reference, loss on the completion")
            train_form.raw_prompts(form, values)
        train_form.distill_options(form, task, values)
    b1, b2, b3, b4 = st.columns(4)
    values["epochs"] = b1.number_input("Epochs", 0.1, 100.0, float(defaults["epochs"]), 0.5, format="%g",
                                       key=k(f"t_ep_{task}{variant.replace('_lora', '')}", float))  # 3, or 2.5
    values["batch_size"] = b2.number_input("Batch size", 1, 1024, int(defaults["batch_size"]),
                                           key=k(f"t_bs_{task}{train_form.chat_only(variant)}", int))
    values["learning_rate"] = b3.number_input("Learning rate", 1e-7, 1.0, float(defaults["learning_rate"]),
                                              format="%.1e", key=k(f"t_lr_{task}{variant}", float),
                                              help="LoRA runs start from a rate ten times a full fine-tune's.")
    values["name"] = b4.text_input("Name of the new model", "", placeholder="(automatic)", key=k("t_name")).strip()

    with st.expander("Advanced"):
        a1, a2, a3, a4 = st.columns(4)
        values["max_length"] = a1.number_input("Max length (tokens)", 8, 4096, int(defaults.get("max_length", 128)),
                                               key=k(f"t_len_{task}{train_form.chat_only(variant)}", int),
                                               disabled=task == "pretrain")
        values["grad_accum"] = a2.number_input("Gradient accumulation", 1, 256, 1, key=k("t_ga", int))
        values["warmup"] = a3.number_input("Warmup (fraction or steps)", 0.0, 10000.0, float(defaults["warmup"]),
                                           format="%g", key=k(f"t_wu_{task}{train_form.chat_only(variant)}", float))
        values["scheduler"] = a4.selectbox("Scheduler", ["linear", "cosine", "constant", "constant_with_warmup"],
                                           index=1 if task == "pretrain" else 0, key=k(f"t_sched_{task}"))
        values["weight_decay"] = a1.number_input("Weight decay", 0.0, 1.0, float(defaults.get("weight_decay", 0.01)),
                                                 key=k(f"t_wd_{task}", float))
        values["eval_fraction"] = a2.number_input("Held out for eval (if no validation split)", 0.0, 0.5,
                                                  float(defaults.get("eval_fraction", 0.1)), key=k(f"t_ef_{task}", float))
        values["early_stopping"] = a3.number_input("Early stopping patience (0 = off)", 0, 20, 0, key=k("t_es", int))
        values["save_steps"] = a4.number_input("Checkpoint every N steps (0 = twice an epoch)", 0, 100000, 0,
                                               key=k("t_ss", int))
        values["max_steps"] = a1.number_input("Max steps (-1 = by epochs)", -1, 10**7, -1, key=k("t_ms", int))
        values["seed"] = a2.number_input("Seed", 0, 2**31 - 1, 0, key=k("t_seed", int))
        values["precision"] = a3.selectbox("Precision", ["auto", "bf16", "fp16", "fp32"], key=k("t_prec"),
                                           help="auto: bf16 (and TF32) on CUDA, fp32 on CPU")
        values["device"] = a4.selectbox("Device", ["auto", "cpu", "cuda"], key=k("t_dev"))
        if task != "pretrain" and not distill:
            values["lora"] = st.toggle("LoRA (train small adapters; merged into the model on export)",
                                       key=k("t_lora", bool))
            if values["lora"]:
                values["adapter_only"] = st.toggle("Keep only the adapter (megabytes over the base model, not a "
                                                   "copy of it)", key=k("t_adapter_only", bool))
                l1, l2, l3, l4 = st.columns(4)
                values["lora_r"] = l1.number_input("Rank r", 1, 256, 8, key=k("t_lr_r", int))
                values["lora_alpha"] = l2.number_input("Alpha", 1, 1024, 16, key=k("t_lr_a", int))
                values["lora_dropout"] = l3.number_input("Dropout", 0.0, 0.9, 0.05, key=k("t_lr_d", float))
                targets = l4.text_input("Target modules", "", placeholder="(architecture default)", key=k("t_lr_t"))
                values["lora_targets"] = [t.strip() for t in targets.split(",") if t.strip()]
        if task == "pretrain":
            arch = train.PRESETS[values["preset"]]
            cols = st.columns(len(arch))
            edited = {name: int(col.number_input(name, 1, 65536, int(v), key=k(f"t_arch_{values['preset']}_{name}", int)))
                      for col, (name, v) in zip(cols, arch.items())}
            values["arch"] = {name: v for name, v in edited.items() if v != arch[name]}

    ready = task == "pretrain" or bool(values.get("dataset") and values.get("model"))
    if not ready:
        st.info("Pick a base model and a dataset (import one on the Datasets page).")
        return
    cfg = train.TrainConfig(**values)
    est = cached_estimate(backend.actor(), cfg.as_dict(), jobs.fleet())
    mem = est["memory_mb"]
    st.caption("**Estimate:** " + resources.describe(est) + f" · weights {mem['weights']:.0f} MB, "
               f"gradients+optimizer {mem['gradients_and_optimizer']:.0f} MB, "
               f"activations {mem['activations']:.0f} MB")
    st.caption("Same run from a terminal:")
    st.code(cfg.to_cli(), language="bash", wrap_lines=True)  # names inside: not in Markdown
    if est.get("refusal"):
        st.error(plain(est["refusal"]))
    refusal = plain(est["refusal"]) if est.get("refusal") else cannot_run()
    if st.button("Start training", type="primary", key="t_start", disabled=bool(refusal), help=refusal):
        job_id = train.submit(backend.actor(), cfg)
        job_panel.remember(KEY, job_id)
        views.go("t_view", LIVE)
        backend.clear()
        st.rerun()


def live() -> None:
    """The panel of each run followed: progress, the stats of its last step, curves, log; the model once done."""
    if not watching:
        st.info("No training run to follow. Start one under **New run**, or open one from **History**.")
    for job_id in watching:
        job_panel.show(job_id, extra=finished, key="train", link=permalink("views/train.py", train_job=job_id),
                       tiles=history.LIVE_STATS)


def past_runs() -> None:
    """Every run: a table, one run's curves, two runs overlaid."""
    runs = history.runs(backend.actor())
    if not runs:
        st.info("No training runs yet. Start one under New run.")
        return
    table = pd.DataFrame(runs)
    st.dataframe(table.drop(columns=["title"]), hide_index=True, key="t_hist_table")
    by_id = {r["id"]: r for r in runs}
    # the picker's labels leave out the status: a label that changes (running → succeeded) is one the browser
    # keeps showing as it was
    labels = {r["id"]: f"{r['name']} · {r['id']}" for r in runs}
    one = st.selectbox("Curves of run", list(labels), format_func=labels.get, key="t_hist_one")
    title = f"{by_id[one]['name']} · {by_id[one]['status']} · {one}"
    st.plotly_chart(plots.run_curves(history.curves(backend.actor(), one), title), key="t_hist_curves")
    show_permalink(permalink("views/train.py", train_job=one))
    share.control("training", f"Training run {labels[one]}", lambda: snapshots.training(backend.actor(), one),
                  key=f"t_share_{one}")
    st.button("Open in the live panel", key="t_hist_open", on_click=open_live, args=(one,))
    st.subheader("Overlay two runs")
    o1, o2, o3 = st.columns([3, 1, 1])
    pair = o1.multiselect("Runs", list(labels), default=list(labels)[:2], max_selections=2,
                          format_func=labels.get, key="t_hist_pair")
    metric = o2.selectbox("Curve", ["train_loss", "eval_loss", "lr", "eval_accuracy", "eval_f1",
                                    "eval_perplexity", "kd_loss", "ce_loss"], key="t_hist_metric")
    by = o3.radio("x axis", ["step", "epoch"], horizontal=True, key="t_hist_by")
    if pair:
        frames = {f"{by_id[i]['name']} ({i[-6:]})": history.curves(backend.actor(), i) for i in pair}
        st.plotly_chart(plots.overlay(frames, metric, by), key="t_hist_overlay")


form = KeptForm("form")  # the New run form's values survive a refresh (in the address) and a page switch
named = job_panel.current(KEY)
active, watching = [], []
with user_errors():
    active = history.active(backend.actor())
    watching = job_panel.watched(KEY, active)  # a running job is followed also when the address does not name it
view = views.pick("t_view", [NEW, LIVE, HISTORY], default=LIVE if named or active else NEW, param="view")
try:
    with user_errors():
        {NEW: new_run, LIVE: live, HISTORY: past_runs}[view]()
finally:
    form.save()  # in the address on every view: a refresh of Live or History keeps the form too
