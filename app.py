"""LLM Lab: the router. Every page lives in pages/; the work is done in llm_lab/."""
import streamlit as st

st.set_page_config(page_title="LLM Lab", page_icon="🧪", layout="wide")

PAGES = {
    "": [st.Page("pages/home.py", title="Home", icon="🏠", default=True)],
    "Data and models": [
        st.Page("pages/datasets.py", title="Datasets", icon="📄"),
        st.Page("pages/models.py", title="Models", icon="🧠"),
        st.Page("pages/train.py", title="Train", icon="🏋️"),
    ],
    "Evaluate": [
        st.Page("pages/benchmarks.py", title="Benchmarks", icon="🏆"),
        st.Page("pages/compare.py", title="Compare", icon="⚖️"),
        st.Page("pages/arena.py", title="Arena", icon="🥊"),
    ],
    "Look inside": [
        st.Page("pages/attention.py", title="Attention", icon="🔍"),
        st.Page("pages/attributions.py", title="Attributions", icon="🎯"),
    ],
}

st.navigation(PAGES).run()
