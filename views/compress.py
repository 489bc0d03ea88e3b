"""Compress: make smaller, faster variants of a model, then evaluate them against it on your own data."""
import streamlit as st

from llm_lab.compress import evaluate
from ui import backend, compress as cz, job_panel
from ui.common import cannot_run, header, permalink, plain, url_choice, user_errors

header(":material/compress: Compress", "Make variants of a model (int8, half precision, pruning, ONNX) and see "
       "what each costs and gains on your own data: size, memory, speed, quality with intervals, flips against the "
       "parent, an equivalence verdict you can defend, and whether it still looks at the same tokens.")
EVAL_KEY, MAKE_KEY = "ceval_job", "cmake_job"

parents = cz.parent_names()
if not parents:
    st.info("No classifier or causal LM in the registry yet: fine-tune one on the Train page (or load a built-in "
            "one on the Models page) first.")
    st.stop()
url_choice("parent", "cz_parent", parents)
parent = st.selectbox("Parent model", parents, key="cz_parent",
                      help="A classifier or causal LM of the registry; its variants record it as their parent.")
if st.query_params.get("parent") not in (None, parent):
    st.query_params["parent"] = parent

st.subheader("1. Make variants")
with st.expander("Make a variant of " + plain(parent), expanded=bool(job_panel.current(MAKE_KEY))):
    cz.make_section(parent, MAKE_KEY)

st.subheader("2. Evaluate against the parent")
settings = cz.eval_form(parent)
if st.button("Evaluate", type="primary", key="cz_run", disabled=settings is None or bool(cannot_run()),
             help=cannot_run() or (None if settings else "Pick at least one variant and a dataset or suite.")):
    with user_errors():
        job_panel.remember(EVAL_KEY, evaluate.submit(backend.actor(), parent, **settings))

st.divider()
st.subheader("Results")
current = job_panel.current(EVAL_KEY)
labels = cz.evaluations(current)
if not labels:
    st.info("No evaluation yet: pick variants and data above and press **Evaluate**.")
    st.stop()
url_choice(EVAL_KEY, "cz_history", list(labels))
if st.session_state.get("cz_history") not in labels:
    st.session_state["cz_history"] = current if current in labels else next(iter(labels))
job_id = st.selectbox("Evaluation", list(labels), format_func=labels.get, key="cz_history")
if job_id != current:
    job_panel.remember(EVAL_KEY, job_id)  # the address follows the choice: it is the permalink
job_panel.show(job_id, key="ceval", link=permalink("views/compress.py", ceval_job=job_id),
               tiles=("phase", "models"))
with user_errors():
    report = evaluate.report_of(backend.actor(), job_id)
    if report is not None:
        cz.show_report(report, job_id)
