"""Streamlit pieces for the Attributions page (rendering only; numbers come from llm_lab.explain)."""
import json

import pandas as pd
import streamlit as st

from llm_lab.explain import html, plots
from llm_lab.plotting import CONFIG
from ui.common import plain


def attribution_block(attr: dict, faith: dict | None, key: str, narrow: bool = False) -> None:
    """One method's result: coloured text + legend, delta, top-token bar, numbers, exports.

    narrow: the block shares the row with two or three others (the metrics go one under the other)."""
    from llm_lab.explain.attributions import Attribution

    a = Attribution(**attr)
    st.markdown(f"**{plain(a.method_name)}** · {plain(a.model)}")
    label, prob = a.predicted
    st.caption(f"target **{plain(a.target_label)}** (p = {a.f_input:.3f})"
               + (f" · predicted **{plain(label)}** (p = {prob:.3f})" if label != a.target_label else "")
               + f" · {a.seconds:.2f} s" + (f" · baseline {plain(a.baseline)}" if a.baseline else ""))
    for note in a.notes:
        st.warning(plain(note), icon=":material/content_cut:")
    fragment = html.colored_tokens(a.tokens, a.scores, skip=a.special)
    st.html(fragment)
    advice = a.delta_advice()  # the method's own words (llm_lab.explain.specs), whatever the method
    if advice is not None:
        if advice.large:
            st.warning(plain(f"{advice.numbers} {advice.verdict}"), icon=":material/functions:")
            st.caption(plain(advice.meaning))
        else:
            st.caption(plain(f"{advice.numbers} {advice.verdict}"), help=advice.meaning)
    if faith:
        faithfulness_metrics(faith, narrow)
    st.plotly_chart(plots.top_tokens_bar(a), width="stretch", key=f"bar-{key}", config=CONFIG)
    with st.expander("Numbers"):
        st.dataframe(pd.DataFrame({"token": a.tokens, "score": a.scores, "special": a.special}), width="stretch")
    d1, d2 = st.columns(2)
    d1.download_button("JSON", json.dumps({**attr, "faithfulness": faith}, indent=1), f"{a.model}-{a.method}.json",
                       "application/json", key=f"json-{key}")
    d2.download_button("HTML", html.attribution_document(a, faith), f"{a.model}-{a.method}.html", "text/html",
                       key=f"html-{key}")


def faithfulness_metrics(faith: dict, narrow: bool) -> None:
    """Comprehensiveness and sufficiency with digits enough for 1e-4, each with its interval over the deletion
    steps and n beside it."""
    from llm_lab.explain import faithfulness

    units = faithfulness.step_units(faith)
    numbers = faithfulness.summary(units) if units is not None else None
    m1, m2 = (st.container(), st.container()) if narrow else st.columns(2)
    for col, kind, label in ((m1, "comprehensiveness", "Comprehensiveness ↑"), (m2, "sufficiency", "Sufficiency ↓")):
        col.metric(label, faithfulness.number(faith[kind]))
        if numbers is not None:
            col.caption(f"{faithfulness.CONFIDENCE:.0%} CI "
                        f"[{faithfulness.number(numbers[kind + '_low'])}, {faithfulness.number(numbers[kind + '_high'])}]"
                        f" · n={numbers['n']} {faithfulness.STEPS}")


def generation_block(gen: dict, key: str) -> None:
    from llm_lab.explain.generation import GenerationAttribution

    g = GenerationAttribution(**gen)
    st.caption(f"{plain(g.method_name)} · {len(g.output_tokens)} generated tokens · {g.seconds:.2f} s")
    for note in g.notes:
        st.warning(plain(note), icon=":material/content_cut:")
    st.markdown("**Output:** " + plain("".join(g.output_tokens).replace("\n", " ")))
    st.plotly_chart(plots.generation_heatmap(g), width="stretch", config=CONFIG, key=f"gen-{key}")
    st.markdown("**Top contributing prompt tokens per output token**")
    st.dataframe(pd.DataFrame(g.top_prompt_tokens(3)), hide_index=True, width="stretch")
    arr = g.array()
    with st.expander("Numbers"):
        st.dataframe(pd.DataFrame(arr, index=[f"{i}:{t}" for i, t in enumerate(g.output_tokens)],
                                  columns=[f"{i}:{t}" for i, t in enumerate(g.prompt_tokens + g.output_tokens)]))
    frags = [html.colored_tokens(g.prompt_tokens + g.output_tokens[:i], arr[i, :len(g.prompt_tokens) + i],
                                 f"→ {t!r}") for i, t in enumerate(g.output_tokens)]
    d1, d2 = st.columns(2)
    d1.download_button("JSON", json.dumps(gen, indent=1), "generation-attribution.json", "application/json",
                       key=f"gjson-{key}")
    d2.download_button("HTML", html.document(frags, f"{g.model} · {g.method_name}"), "generation-attribution.html",
                       "text/html", key=f"ghtml-{key}")


PNG_NOTE = "PNG of any chart: the camera icon in the chart's toolbar (top right, on hover)."
