"""The Compare page's form: generation settings and filling the form from a reopened comparison."""
import streamlit as st

from llm_lab.compare import live, runs
from llm_lab.generation import GenerationSettings
from llm_lab.generation_defaults import SUGGESTED
from ui.common import preset

SOURCES = ["Type them", "Rows of a dataset"]
# the generation settings' widgets: key -> (lowest, highest)
LIMITS = {"c_max": (1, 2048), "c_rep": (0.5, 3.0), "c_ngram": (0, 10), "c_seed": (0, 2**31 - 1), "c_temp": (0.05, 2.0),
          "c_top_p": (0.05, 1.0), "c_top_k": (0, 5000)}


def settings_form() -> GenerationSettings:
    with st.expander("Generation settings (shared by all models)"):
        c = st.columns(5)
        decoding = c[0].radio("Decoding", ["greedy", "sampling"], horizontal=True, key="c_mode")
        max_new = c[1].number_input("Max new tokens", *LIMITS["c_max"], SUGGESTED["max_new_tokens"], key="c_max")
        rep = c[2].number_input("Repetition penalty", *LIMITS["c_rep"], SUGGESTED["repetition_penalty"], 0.05,
                                key="c_rep", help="1 = none. Small models loop without one.")
        ngram = c[3].number_input("No repeated n-gram", *LIMITS["c_ngram"], SUGGESTED["no_repeat_ngram_size"],
                                  key="c_ngram", help="No n-gram of this size appears twice; 0 = off.")
        seed = c[4].number_input("Seed", *LIMITS["c_seed"], 0, key="c_seed")
        c = st.columns(4)
        greedy = decoding == "greedy"
        temp = c[0].slider("Temperature", *LIMITS["c_temp"], 0.8, 0.05, disabled=greedy, key="c_temp")
        top_p = c[1].slider("Top-p", *LIMITS["c_top_p"], 0.95, 0.05, disabled=greedy, key="c_top_p")
        top_k = c[2].number_input("Top-k (0 = off)", *LIMITS["c_top_k"], 50, disabled=greedy, key="c_top_k")
        stops = c[3].text_input("Stop strings", "", key="c_stop", help="Separate with |; \\n is a newline.")
    return GenerationSettings(do_sample=not greedy, temperature=temp, top_p=top_p, top_k=int(top_k),
                              max_new_tokens=int(max_new), repetition_penalty=rep, no_repeat_ngram_size=int(ngram),
                              seed=int(seed), stop=live.parse_stops(stops))


def prefill(comp: runs.Comparison) -> None:
    """The form starts from the comparison opened: its mode, models, inputs and settings (once per
    comparison; what the person changes afterwards stays)."""
    form = runs.form(comp)
    mode = form["mode"]
    values = {"c_kind": mode, f"c_models_{mode}": form["models"]}
    if form["dataset"]:
        values.update(c_source=SOURCES[1], c_dataset=form["dataset"], c_split=form["split"] or "all",
                      c_limit=int(form["limit"] or 32))
    else:
        values.update({"c_source": SOURCES[0], f"c_texts_{mode}": form["texts"], f"c_refs_{mode}": form["golds"]})
    s = form["settings"]
    if s:
        fit = lambda key, v: type(LIMITS[key][0])(min(max(v, LIMITS[key][0]), LIMITS[key][1]))  # noqa: E731
        values.update(c_mode="sampling" if s.do_sample else "greedy", c_max=fit("c_max", s.max_new_tokens),
                      c_rep=fit("c_rep", s.repetition_penalty), c_ngram=fit("c_ngram", s.no_repeat_ngram_size),
                      c_seed=fit("c_seed", s.seed or 0),
                      c_temp=fit("c_temp", s.temperature), c_top_p=fit("c_top_p", s.top_p),
                      c_top_k=fit("c_top_k", s.top_k), c_stop=live.format_stops(s.stop))
    preset("compare_form", comp.id, values)
