"""Attention: head view, model view, rollout and head types for any registry model.

Query parameters (a permalink): model, text, layer, head (the head view's selection)."""
import streamlit as st

from llm_lab.explain import attention as att
from llm_lab.explain import specs
from llm_lab.explain import attention_plots as figs
from llm_lab.plotting import CONFIG
from ui import backend
from ui.common import header, permalink, plain, show_permalink, url_choice, user_errors

header(":material/visibility: Attention", "Where each token looks, per layer and head. Models load with eager attention so the "
                    "weights can be returned; long inputs are pooled to at most 128 tokens per side in the views.")

DEFAULT = "The quick brown fox jumps over the lazy dog because it was bored."
names = backend.model_names(specs.ATTENTION_NEEDS)
if not names:
    st.warning("No models in the registry. Add one on the Models page.")
    st.stop()
qp_model = st.query_params.get("model")
c1, c2 = st.columns([1, 3])
name = c1.selectbox("Model", names, index=names.index(qp_model) if qp_model in names else 0, key="att_model")
head = backend.head_for(name, specs.ATTENTION_NEEDS)
c1.caption(f"opened as **{plain(head)}** with eager attention")
text = c2.text_area("Text", st.query_params.get("text", DEFAULT), height=90, key="att_text")


@st.cache_data(show_spinner="Computing attention…", max_entries=4)
def compute(name: str, head: str, text: str):
    """Everything derived from one text, once: weights, head summary, rollout, the model-view figure."""
    result = att.compute(backend.model(name, head=head, attention=True), text)
    return {"result": result, "summary": att.head_summary(result.attentions),
            "rollout": att.rollout(result.attentions), "grid": figs.model_view(result.attentions, result.tokens)}


bundle = None
with user_errors():
    bundle = compute(name, head, text)
if bundle is None:
    st.stop()
result = bundle["result"]
for note in result.notes:
    st.warning(plain(note), icon=":material/content_cut:")
layers, heads, t, _ = result.shape
st.caption(f"{t} tokens · {layers} layers × {heads} heads" + (" · causal (decoder) attention" if result.causal else ""))

# a click in the model view selects a tile: apply it once to the head-view selectors
selection = st.session_state.get("att_grid")
points = (selection or {}).get("selection", {}).get("points", []) if selection else []
if points and points[0].get("customdata") and st.session_state.get("att_applied") != points[0]["customdata"]:
    st.session_state["att_applied"] = points[0]["customdata"]
    st.session_state["att_layer"], st.session_state["att_head"] = map(int, points[0]["customdata"][:2])
url_choice("layer", "att_layer", range(layers), int)
url_choice("head", "att_head", range(heads), int)
for key, n in (("att_layer", layers), ("att_head", heads)):
    if st.session_state.get(key, 0) >= n:
        st.session_state[key] = 0
show_permalink(permalink("views/attention.py", model=name, text=text, layer=st.session_state.get("att_layer", 0),
                         head=st.session_state.get("att_head", 0)))

tab_head, tab_model, tab_rollout, tab_types = st.tabs(["Head view", "Model view", "Rollout", "Head types"])

with tab_head:
    a, b, c = st.columns([1, 1, 2])
    layer = a.selectbox("Layer", range(layers), key="att_layer")
    head_i = b.selectbox("Head", range(heads), key="att_head")
    view = c.radio("Draw as", ["Heat map", "Lines", "Both"], horizontal=True, key="att_draw")
    matrix = result.attentions[layer, head_i]
    if view in ("Heat map", "Both"):
        fig, note = figs.head_heatmap(matrix, result.tokens, f"Layer {layer}, head {head_i}")
        if note:
            st.info(note, icon=":material/info:")
        st.plotly_chart(fig, width="stretch", config=CONFIG, key="att_head_fig")
    if view in ("Lines", "Both"):
        fig, note = figs.lines_view(matrix, result.tokens, f"Layer {layer}, head {head_i}: lines (weight ≥ 0.05)")
        if note:
            st.info(note, icon=":material/info:")
        st.plotly_chart(fig, width="stretch", config=CONFIG, key="att_lines_fig")

with tab_model:
    st.caption("All layers × heads. Click a tile to open it below (and in the Head view tab); "
               "or pick it with the selectors in the Head view tab.")
    fig, note = bundle["grid"]
    if note:
        st.info(note, icon=":material/info:")
    st.plotly_chart(fig, width="stretch", config=CONFIG, key="att_grid", on_select="rerun", selection_mode="points")
    layer, head_i = st.session_state.get("att_layer", 0), st.session_state.get("att_head", 0)
    fig, _ = figs.head_heatmap(result.attentions[layer, head_i], result.tokens, f"Selected: layer {layer}, head {head_i}")
    st.plotly_chart(fig, width="stretch", config=CONFIG, key="att_grid_head")

with tab_rollout:
    st.caption("Attention rollout (Abnar & Zuidema, 2020): per layer 0.5·(heads averaged) + 0.5·identity for the "
               "residual stream, multiplied through all layers. Row i: which input tokens output position i draws on.")
    fig, note = figs.rollout_heatmap(bundle["rollout"], result.tokens)
    if note:
        st.info(note, icon=":material/info:")
    st.plotly_chart(fig, width="stretch", config=CONFIG, key="att_rollout_fig")

with tab_types:
    summary = bundle["summary"]
    st.plotly_chart(figs.head_summary_figure(summary), width="stretch", config=CONFIG, key="att_types_fig")
    st.caption("Low entropy = focused head. A head whose mean share to one pattern is ≥ 0.5 is labelled with it.")
    st.dataframe(att.head_types(summary), hide_index=True, width="stretch")
