"""LLM Lab: the router. Every page lives in pages/; the work is done in llm_lab/."""
import streamlit as st

st.set_page_config(page_title="LLM Lab", page_icon=":material/science:", layout="wide")

PAGES = {
    "": [st.Page("pages/home.py", title="Home", icon=":material/home:", default=True)],
    "Data and models": [
        st.Page("pages/data.py", title="Datasets", url_path="datasets", icon=":material/table_chart:"),
        st.Page("pages/models.py", title="Models", icon=":material/psychology:"),
        st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    ],
    "Evaluate": [
        st.Page("pages/benchmarks.py", title="Benchmarks", icon=":material/leaderboard:"),
        st.Page("pages/compare.py", title="Compare", icon=":material/compare:"),
        st.Page("pages/arena.py", title="Arena", icon=":material/sports_kabaddi:"),
    ],
    "Look inside": [
        st.Page("pages/attention.py", title="Attention", icon=":material/visibility:"),
        st.Page("pages/attributions.py", title="Attributions", icon=":material/target:"),
    ],
    "Share": [
        st.Page("pages/shared.py", title="Shared links", url_path="shared", icon=":material/share:"),
    ],
}

st.navigation(PAGES).run()
