"""The Models page's "Add a GGUF file" form: upload a llama.cpp model file into the workspace.

What is checked and stored is llm_lab.gguf.add_file's decision (an editor or admin; the header must read as
GGUF; nothing is kept of a refused file). The file is dequantized to float32 on its first load, and cached.
"""
import streamlit as st

from llm_lab import gguf
from ui import backend
from ui.common import plain, user_errors


def add_form() -> None:
    who = backend.actor()
    if not who.can("write"):
        return
    with st.expander("Add a GGUF file (llama.cpp)"):
        st.caption("A .gguf model file (llama, mistral, qwen2, phi3, gemma, gpt2, … in F16/BF16/Q2–Q8): LLM Lab "
                   "dequantizes it to float32 once, on its first load, and caches the result. You can also type "
                   "a .gguf path in *Folder or Hub id* below, or org/repo/file.gguf for a Hub repo.")
        with st.form("gguf_form", clear_on_submit=True, border=False):
            name = st.text_input("Name in the registry", key="gguf_name", placeholder="my-chat-model")
            upload = st.file_uploader("GGUF file", type=["gguf"], key="gguf_file")
            submitted = st.form_submit_button("Add GGUF model", key="gguf_add")
        if submitted:
            if upload is None or not name.strip():
                st.warning("Give a name and pick a .gguf file.")
                return
            with user_errors():
                entry = gguf.add_file(who, name.strip(), upload.name, upload)
                backend.clear()
                described = gguf.describe(gguf.gguf_path(entry.location))
                st.success(plain(f"Added {entry.name}: {described.architecture}, {described.quantization}, "
                                 f"{described.parameters / 1e6:.1f}M parameters ({described.float32_bytes / 2**20:.0f} "
                                 "MiB in memory once dequantized). Pick it in the registry below."))
