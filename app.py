"""LLM Lab: the router. Every page lives in views/ (not pages/: a folder of that name next to app.py turns on
Streamlit's old multipage mode, which runs a page without this router); the work is done in llm_lab/.

In hosted mode (LLM_LAB_MODE=hosted) the gate in ui/auth.py signs the visitor in first: until then no page
and no data renders.
"""
import streamlit as st
from streamlit import config as st_config

from llm_lab import jobs, sharing, warmup
from ui import auth
from ui.common import plain

st.set_page_config(page_title="LLM Lab", page_icon=":material/science:", layout="wide")
jobs.own_workers()  # a worker this server starts stops with it (once per process; not an external worker)

PAGES = {
    "": [st.Page("views/home.py", title="Home", icon=":material/home:", default=True)],
    "Data and models": [
        st.Page("views/data.py", title="Datasets", url_path="datasets", icon=":material/table_chart:"),
        st.Page("views/models.py", title="Models", icon=":material/psychology:"),
        st.Page("views/train.py", title="Train", icon=":material/model_training:"),
    ],
    "Evaluate": [
        st.Page("views/benchmarks.py", title="Benchmarks", icon=":material/leaderboard:"),
        st.Page("views/compress.py", title="Compress", icon=":material/compress:"),
        st.Page("views/compare.py", title="Compare", icon=":material/compare:"),
        st.Page("views/arena.py", title="Arena", icon=":material/sports_kabaddi:"),
    ],
    "Look inside": [
        st.Page("views/attention.py", title="Attention", icon=":material/visibility:"),
        st.Page("views/attributions.py", title="Attributions", icon=":material/target:"),
    ],
}
SHARED = st.Page("views/shared.py", title="Shared links", url_path="shared", icon=":material/share:")
PAGES["Share"] = [SHARED]
ADMIN = st.Page("views/admin.py", title="Admin", icon=":material/admin_panel_settings:")


def _gate_only() -> None:
    """The page behind every URL until the gate lets the visitor in: what the gate showed, nothing else."""


def _admins_only() -> None:
    """/admin for a signed-in editor or viewer: say why there is no Admin page, instead of landing on Home."""
    who = auth.current()
    st.title("Admin")
    st.error(plain(f"The Admin page is for admins. You are signed in as {who.user} with the {who.role} role. "
                   "Ask an admin of this LLM Lab if you need users, roles or settings changed."))
    st.page_link(PAGES[""][0], label="Go to Home", icon=":material/home:")


if auth.public_visitor(sharing.is_public):  # an anonymous visitor with a public link sees only that snapshot
    st.navigation([SHARED], position="hidden").run()
    st.stop()
actor = auth.gate()
if actor is None:
    # A hidden navigation whose pages all show the gate: every page URL answers with the sign-in page (not
    # "page not found"), and no sidebar lists pages.
    every = [page for section in PAGES.values() for page in section] + [ADMIN]
    st.navigation([st.Page(_gate_only, title="LLM Lab", url_path=page.url_path or None, default=not page.url_path)
                   for page in every], position="hidden").run()
    st.stop()
auth.sidebar(actor)
pages = dict(PAGES)
if actor.can("admin"):
    pages["Server"] = [ADMIN]
else:  # the same URL answers with a refusal that says so; the sidebar does not list it
    pages[""] = PAGES[""] + [st.Page(_admins_only, title="Admin", url_path="admin", visibility="hidden")]
try:
    st.navigation(pages).run()
finally:
    # Once a page has run, import torch and transformers in the background (llm_lab/warmup.py), once per server
    # process: the first model a visitor opens then loads in about a second instead of five. Not under AppTest.
    if not st_config.get_option("global.appTest"):
        warmup.start()
