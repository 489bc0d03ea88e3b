"""The Models page's endpoint pieces: the "Add an OpenAI-compatible endpoint" form and an endpoint's card.

The key is never asked for: the form takes the NAME of the environment variable that holds it
(llm_lab/endpoints.py reads it at each call). Adding probes the server for prompt log-probabilities (echo +
logprobs); the card shows the verdict with its reason and probes again on request.
"""
import time

import streamlit as st

from llm_lab import endpoints, settings
from ui import backend
from ui.common import plain, user_errors


def add_form() -> None:
    """A small form in an expander; who may add what is llm_lab.endpoints' decision (it says why not)."""
    who = backend.actor()
    if not who.can("write"):
        return
    with st.expander("Add an OpenAI-compatible endpoint"):
        st.caption("A model served by vLLM, TGI, Ollama, llama.cpp's server or `python -m llm_lab serve`: it joins "
                   "Compare, Arena and the generation benchmark tasks, and the multiple-choice and language-modelling "
                   "tasks when its server returns prompt log-probabilities (checked when you add it). The API key "
                   "stays in an environment variable of the server running LLM Lab; give its name, never the key.")
        if settings.hosted() and not who.can("server"):
            allowed = ", ".join(settings.get("endpoint_allow")) or "none: ask an admin"
            st.caption(plain(f"On this server: hosts {allowed}; key variables named "
                             f"{endpoints.HOSTED_KEY_PREFIX}…"))
        with st.form("ep_form", clear_on_submit=False, border=False):
            c1, c2 = st.columns(2)
            name = c1.text_input("Name in the registry", key="ep_name", placeholder="company-llm")
            base_url = c2.text_input("Base URL", key="ep_url", placeholder="http://localhost:8000/v1")
            c1, c2 = st.columns(2)
            model = c1.text_input("Model (as the server names it)", key="ep_model", placeholder="my-model")
            env = c2.text_input("API key: environment variable name (optional)", key="ep_env",
                                placeholder="OPENAI_API_KEY")
            submitted = st.form_submit_button("Add endpoint", key="ep_add")
        if submitted:
            with user_errors():
                entry = endpoints.add(who, name, base_url, model, env or None)
                backend.clear()
                st.success(plain(f"Added {entry.name}: pick it on the Compare, Arena and Benchmarks pages."))
                show_probe(entry.name, (entry.meta or {}).get("probe"))
                missing = endpoints.key_missing(entry.name, (entry.meta or {}).get("api_key_env"))
                if missing:  # said now, not at its first comparison
                    st.warning(plain(missing), icon=":material/key_off:")


def show_probe(name: str, verdict: dict | None) -> None:
    """The probe's verdict: scores (and why we believe it) or text only (and why)."""
    if not verdict:
        st.info(plain(f"{name} has not been probed for prompt log-probabilities: it generates text only until you "
                      "probe it."), icon=":material/help:")
    elif verdict.get("scores"):
        st.success(plain(f"{name} scores: its server returns prompt log-probabilities ({verdict.get('reason', '')}). "
                         "It runs multiple-choice and language-modelling tasks."), icon=":material/analytics:")
    elif verdict.get("failed"):
        st.warning(plain(f"{name} could not be probed ({verdict.get('reason', '')}). Until a probe gets an answer it "
                         "generates text only: start the server or fix the key, then press 'Probe again'."),
                   icon=":material/cloud_off:")
    else:
        st.warning(plain(f"{name} generates text only: its server did not return prompt log-probabilities with "
                         f"echo: {verdict.get('reason', '')}."), icon=":material/block:")
    if verdict and verdict.get("checked_at"):
        st.caption(f"Probed {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(verdict['checked_at']))}.")


def card(loaded) -> None:
    """What the Models page shows for an endpoint: where it is, its key variable (set or not), a connection test."""
    info = loaded.info()
    st.subheader(plain(f"{info['name']} · {info['architecture']}"))
    m = st.columns(3)
    m[0].metric("Model", plain(info["model"]))
    m[1].metric("Key variable", plain(info["api_key_env"] or "none"),
                help="The API key is read from this environment variable at each call; it is never stored.")
    m[2].metric("Key set here", "yes" if info["api_key_set"] else ("—" if not info["api_key_env"] else "no"))
    if backend.actor().can("server"):  # where it lies is for admins to see, like a model folder's path
        st.caption("Base URL: " + plain(info["base_url"]))
    c1, c2 = st.columns(2)
    if c1.button("Test the connection", key="ep_check", disabled=not backend.actor().can("run")):
        with user_errors():
            latency = loaded.model.check()
            st.success(f"It answered in {latency * 1000:.0f} ms.")
    verdict = (loaded.entry.meta or {}).get("probe")
    if c2.button("Probe again", key="ep_probe", disabled=not backend.actor().can("write"),
                 help="Ask the server again whether it returns prompt log-probabilities (echo + logprobs)."):
        with user_errors():
            verdict = endpoints.probe_again(backend.actor(), loaded.entry.name)
            backend.clear()
    show_probe(info["name"], verdict)
    st.info("An endpoint returns generated text, and log-probabilities when its server gives them: use it on the "
            "Compare and Arena pages and in benchmark tasks. Attributions, attention and training need a model "
            "loaded here.")
