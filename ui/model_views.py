"""The Models page's card: its size tiles, and the card shown from the folder's files while the model loads."""
import streamlit as st

from ui import backend
from ui.common import plain, user_errors

POLL_S = 0.5  # how often the page looks whether the background load is done


def sizes(info: dict) -> None:
    """The architecture's sizes, one tile each (from the loaded model or from its files)."""
    m = st.columns(6)
    m[0].metric("Parameters", f"{info['parameters'] / 1e6:.1f} M")
    m[1].metric("Layers", info["layers"] or "—")
    m[2].metric("Heads", info["heads"] or "—")
    m[3].metric("Hidden size", info["hidden_size"] or "—")
    m[4].metric("Vocabulary", f"{info['vocab_size']:,}" if info["vocab_size"] else "—")
    m[5].metric("Max positions", info["max_positions"] or "—")


def preview(spec: dict) -> None:
    """What the folder says about the model, while its weights load in the background; the page reruns when
    they are in memory (the loaded model's card replaces this one)."""
    card = None
    with user_errors():
        card = backend.model_preview(spec["model"], spec["head"])
    st.subheader(plain(f"{spec['model']} · {card['architecture'] if card else spec['head']}"))
    if card:
        sizes(card)
        if card["labels"]:
            st.caption("Labels: " + plain(", ".join(map(str, card["labels"]))))
    _wait_for(spec)


@st.fragment(run_every=POLL_S)
def _wait_for(spec: dict) -> None:
    if backend.model_ready(spec["model"], spec["head"], spec["device"], spec["dtype"]):
        st.rerun()
    if backend.gguf_converting(spec["model"]):
        st.info(f"{plain(spec['model'])} is a GGUF file: its first load dequantizes it to float32 and caches the "
                "result (about half a minute for a 135M model on a small CPU); later loads take seconds.",
                icon=":material/hourglass_top:")
        return
    st.info(f"Loading {plain(spec['model'])} as {plain(spec['head'])}… The first model a server opens imports "
            "PyTorch and transformers (a few seconds on a small CPU); later ones open in about a second. The card "
            "above is read from the model's files.", icon=":material/hourglass_top:")
