"""Home: what LLM Lab is, the device found, what is available, links to every page, a quick start."""
import streamlit as st

from llm_lab import registry
from ui import backend
from ui.common import plain, user_errors

# What each built-in model is for (its registry description says what it is); a built-in missing here shows its
# description alone.
PURPOSES = {
    registry.CHAT_MODEL: "A real chat model: ask it questions in Compare, Arena and the Models page's chat, or "
                         "fine-tune it on instructions.",
    "minilm": "Encoder: sentence embeddings and similarity, attention maps, and the base to fine-tune a classifier on.",
    "minilm-sentiment": "Sentiment classifier (negative / neutral / positive): classify, compare, benchmark, explain.",
    "tiny-gpt": "Tiny base GPT trained on Python docs: training and size-ladder experiments. It continues text; "
                "it does not chat.",
    "small-gpt": "The next size of tiny-gpt (same data): size-ladder experiments. It continues text; it does not chat.",
}


def builtin_rows(entries) -> list[dict]:
    """One row per built-in model: its name, what it is for, and its registry description."""
    return [{"model": e.name, "for": PURPOSES.get(e.name, ""), "about": e.description or ""}
            for e in entries if e.source == "builtin"]

st.title(":material/science: LLM Lab")
st.markdown(
    "A browser workbench for people who pick, train and trust transformer models: upload a dataset, load or "
    "fine-tune models, run benchmark suites, compare outputs side by side, and look inside models with "
    "attention maps and attributions. Everything works offline with the built-in models.")

with user_errors():
    dev = backend.device_info()
    models = backend.model_entries()
    sets = backend.datasets()
    c1, c2, c3 = st.columns(3)
    if dev["device"] == "cuda":
        where = f"{dev['name']} · {dev['memory_gb']} GB"
    elif dev["device"] == "mps":
        where = dev["name"]
    else:
        where = f"{dev.get('threads', '?')} threads, no GPU found"
    c1.metric("Device", dev["device"].upper(), help="Models load here unless you pick another device on the Models page.")
    c1.caption(plain(f"{where} · torch {dev['torch']}"))
    c2.metric("Models", len(models))
    c2.caption(plain(", ".join(m.name for m in models[:4]) + (" …" if len(models) > 4 else "")))
    c3.metric("Datasets", len(sets))
    c3.caption(plain(", ".join(d.name for d in sets[:4]) + (" …" if len(sets) > 4 else "")))

st.subheader("Built-in models")
with user_errors():
    for row in builtin_rows(backend.model_entries()):  # a list, not a table: the descriptions wrap in full
        st.markdown(f"**{plain(row['model'])}**" + (f" · {plain(row['for'])}" if row["for"] else ""))
        st.caption(plain(row["about"]))
    if missing := registry.chat_model_missing():
        st.info(missing)

st.subheader("Quick start")
q1, q2, q3 = st.columns(3)
with q1.container(border=True):
    st.markdown("**1 · Pick data**  \nUse a demo dataset (reviews, prompts, docs) or upload your own "
                "CSV, JSON, Parquet or text file.")
    st.page_link("views/data.py", label="Datasets", icon=":material/table_chart:")
with q2.container(border=True):
    st.markdown("**2 · Load a model**  \nOpen the built-in MiniLM, a local folder or a Hub id; classify a "
                "sentence or compare two sentences.")
    st.page_link("views/models.py", label="Models", icon=":material/psychology:")
with q3.container(border=True):
    st.markdown("**3 · Train and evaluate**  \nFine-tune on your data, then benchmark, compare and look "
                "inside the result.")
    st.page_link("views/train.py", label="Train", icon=":material/model_training:")

st.subheader("Every page")
PAGES = [
    ("views/data.py", "Datasets", ":material/table_chart:", "upload, map columns, clean, split"),
    ("views/models.py", "Models", ":material/psychology:", "registry, model cards, try a model"),
    ("views/train.py", "Train", ":material/model_training:", "fine-tune in the background"),
    ("views/benchmarks.py", "Benchmarks", ":material/leaderboard:", "run suites, drill into examples"),
    ("views/compare.py", "Compare", ":material/compare:", "outputs of models side by side"),
    ("views/arena.py", "Arena", ":material/sports_kabaddi:", "blind pairwise votes"),
    ("views/attention.py", "Attention", ":material/visibility:", "attention maps and rollout"),
    ("views/attributions.py", "Attributions", ":material/target:", "which tokens drove a prediction"),
]
cols = st.columns(4)
for i, (path, label, icon, what) in enumerate(PAGES):
    with cols[i % 4]:
        st.page_link(path, label=label, icon=icon)
        st.caption(what)

st.caption("Command line: `python -m llm_lab --help` · data lives under `LLM_LAB_HOME` (default ~/.llm_lab).")
