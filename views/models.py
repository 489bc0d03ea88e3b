"""Models: pick from the registry or type a folder path / Hub id, see its card, and try it."""
import pandas as pd
import streamlit as st

from llm_lab import capabilities, data_plots
from llm_lab.serve import command as serve_command
from ui import backend, chat, model_views
from ui import endpoints as endpoint_ui
from ui import gguf_upload as gguf_ui
from ui.common import header, permalink, plain, show_permalink, user_errors

header(":material/psychology: Models", "Open a model from the registry, a local Hugging Face folder or a Hub id, with the head you "
       "need: a classifier, an encoder for embeddings, or a causal LM for generation.")

HEAD_HELP = {"classifier": "classifier (labels)", "encoder": "encoder (embeddings)", "causal-lm": "causal LM (text)"}
params = st.query_params

# ---------------------------------------------------------------- registry
endpoint_ui.add_form()  # first: a model added here is in the lists below at once
gguf_ui.add_form()
with user_errors():
    entries = backend.model_entries()
    admin = backend.actor().can("server")  # where models lie on the server is for admins to see
    with st.expander(f"Registry ({len(entries)} model{'s' if len(entries) != 1 else ''})", expanded=False):
        st.dataframe(pd.DataFrame([{
            "name": e.name, "source": e.source, "head": e.head, "parent": e.parent or "",
            "description": e.description, **({"location": e.location} if admin else {})} for e in entries]),
            hide_index=True)

# ---------------------------------------------------------------- choose
names = [e.name for e in entries]
from_url = params.get("model")
c1, c2 = st.columns([2, 1])
source = c1.radio("Source", ["Registry", "Folder or Hub id"], horizontal=True, key="m_source",
                  index=1 if from_url and from_url not in names else 0)
if source == "Registry":
    chosen = c1.selectbox("Model", names, key="m_name",
                          index=names.index(from_url) if from_url in names else 0) if names else None
else:
    chosen = c1.text_input("Folder path or Hub id", from_url if from_url and from_url not in names else "",
                           placeholder="/path/to/model-folder  or  org/model-name", key="m_path").strip()
# the head follows the model: its own head (a link's ?head= for the model it names) whenever the model changes;
# one picked by hand stays while the model does
if st.session_state.get("m_head_of") != chosen or "m_head" not in st.session_state:
    st.session_state["m_head_of"] = chosen
    st.session_state["m_head"] = backend.default_head(chosen, params.get("head") if chosen == from_url else None)
head = c2.selectbox("Head", capabilities.HEADS, format_func=lambda h: HEAD_HELP[h], key="m_head",
                    help="classifier: predicts one of its labels · encoder: sentence embeddings · "
                         "causal LM: generates text (Compare and Arena pages)")
with st.expander("Device, dtype and safety"):
    a1, a2, a3 = st.columns(3)
    device = a1.selectbox("Device", ["auto", "cpu", "cuda", "mps"], key="m_device",
                          help="auto: CUDA, then Apple MPS, then CPU")
    dtype = a2.selectbox("Dtype", ["auto", "float32", "bfloat16", "float16"], key="m_dtype",
                         help="auto: bfloat16 on CUDA, float32 elsewhere")
    trust = False
    if backend.may_trust_remote_code():  # shown to those allowed; llm_lab.registry enforces it
        trust = a3.checkbox("Trust remote code", False, key="m_trust",
                            help="Runs Python code shipped with a model. Only enable it for models you trust.")
    if trust:
        st.warning("Remote code runs inside the server, with its permissions. Enable it only for a model you trust; "
                   "the model stays with this session.")

wanted = {"model": chosen, "head": head}
if st.button("Load model", type="primary", disabled=not chosen, key="m_load"):
    st.session_state["m_loaded"] = dict(wanted, device=device, dtype=dtype, trust=trust)
    params["model"], params["head"] = chosen, head
elif from_url and "m_loaded" not in st.session_state:  # a shared link or a refresh: load what it names…
    with user_errors():  # …only if the visitor could open it themselves (without remote code)
        backend.check_model(from_url)
        st.session_state["m_loaded"] = dict(wanted, device=device, dtype=dtype, trust=False)

spec = st.session_state.get("m_loaded")
if not spec:
    st.info("Pick a model and press **Load model**. The built-in **minilm** loads in a few seconds on a CPU.")
    st.stop()

if (spec["model"], spec["head"]) != (chosen, head):
    st.caption(f"Showing **{plain(spec['model'])}** ({plain(spec['head'])}); press **Load model** to open your new "
               "choice.")

# ---------------------------------------------------------------- card
ready = None
with user_errors():  # the first model of a server process loads in the background while its card shows
    ready = spec["trust"] or backend.model_ready(spec["model"], spec["head"], spec["device"], spec["dtype"])
if ready is None:
    st.stop()
if not ready:
    model_views.preview(spec)
    st.stop()
loaded = None
with user_errors():
    with st.spinner(f"Loading {plain(spec['model'])} as {plain(spec['head'])}…"):
        loaded = backend.model(spec["model"], head=spec["head"], device_override=spec["device"],
                               dtype=spec["dtype"], trust_remote_code=spec["trust"])
if loaded is None:
    st.stop()
if loaded.capabilities.endpoint:  # a model behind an OpenAI-compatible URL: no weights to describe
    endpoint_ui.card(loaded)
    st.stop()
info = loaded.info()
st.subheader(plain(f"{info['name']} · {info['architecture']}"))
if loaded.entry.description:
    st.caption(plain(loaded.entry.description))
show_permalink(permalink("views/models.py", model=spec["model"], head=spec["head"]))
if info["head_is_new"]:
    st.warning(f"The {plain(info['head'])} head of this model is freshly initialised: its predictions mean nothing "
               "until it is fine-tuned (Train page). Embeddings from the encoder are meaningful.", icon=":material/warning:")
model_views.sizes(info)
m = st.columns(6)
m[0].metric("Device", info["device"].upper())
m[1].metric("Dtype", info["dtype"])
m[2].metric("Memory", f"{info['memory_mb']:.0f} MB")
m[3].metric("Load time", f"{info['load_seconds']:.1f} s", help="time of the first load in this server; "
            "later sessions share the loaded model")
m[4].metric("Source", plain(info["source"]))
m[5].metric("Labels", len(info["labels"]) or "—")
if info["labels"]:
    st.caption("Labels: " + plain(", ".join(map(str, info["labels"]))))
if info.get("gguf"):  # a GGUF file: what it was, and that it runs dequantized
    g = info["gguf"]
    st.caption(plain(f"From the GGUF file {g['file']} ({g['architecture']}, {g['quantization']}): runs dequantized "
                     f"to float32 ({g['float32_mb']} MB of weights), converted once and cached by the file's content "
                     f"(sha256 {g['sha256']}…)."))
if info.get("licence") or info.get("origin"):
    st.caption(plain(" · ".join(filter(None, [f"Licence: {info.get('licence')}" if info.get("licence") else "",
                                              f"Source: {info.get('origin')}" if info.get("origin") else ""]))))

with st.expander("Serve it over HTTP (OpenAI-compatible API)"):
    own_head = capabilities.default_head(loaded.entry)
    st.code(serve_command(spec["model"], None if spec["head"] == own_head else spec["head"]), language="bash")
    st.caption("Run this in a terminal: it prints an API key and answers on port 8000 (see the README's *Serve*).")

# ---------------------------------------------------------------- try it
st.subheader("Try it")
if loaded.head == "causal-lm":
    st.caption("Chat with it: each message goes with the conversation so far. Compare and Arena put it beside "
               "other models.")
    chat.chat_box(loaded, key="m_chat", owner=spec["model"])
    st.stop()
tabs = st.tabs(["Classify", "Embed and compare"] if loaded.head == "classifier" else ["Embed and compare"])
if loaded.head == "classifier":
    with tabs[0]:
        text = st.text_area("Sentence", "The battery lasts all day and the screen is gorgeous.", key="m_cls_text")
        if st.button("Classify", key="m_classify") and text.strip():
            from llm_lab import inference

            result = inference.classify(loaded, [text])
            probs = result.probs[0]
            labels = result.labels or [str(i) for i in range(len(probs))]
            best = int(probs.argmax())
            st.markdown(f"Prediction: **{plain(labels[best])}** ({probs[best]:.1%})"
                        + (" · the head is untrained, so this is noise" if loaded.head_is_new else ""))
            if result.tokens.truncated(0):
                st.caption(result.tokens.note(0))
            st.plotly_chart(data_plots.probabilities(labels, probs), key="m_probs")
with tabs[-1]:
    e1, e2 = st.columns(2)
    first = e1.text_area("First sentence", "A cat is sleeping on the sofa.", key="m_emb_a")
    second = e2.text_area("Second sentence", "A kitten naps on the couch.", key="m_emb_b")
    if st.button("Embed and compare", key="m_embed") and first.strip() and second.strip():
        from llm_lab import inference

        embedded = inference.embed(loaded, [first, second])
        vectors = embedded.vectors
        similarity = inference.cosine(vectors[0], vectors[1])
        st.metric("Cosine similarity", f"{similarity:.3f}",
                  help="1 = same direction, 0 = unrelated, negative = opposite (mean-pooled embeddings)")
        st.progress(max(0.0, min(1.0, similarity)))
        st.caption(f"Each sentence becomes a vector of {vectors.shape[1]} numbers.")
        for note in filter(None, embedded.notes()):
            st.caption(note)
