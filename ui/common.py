"""Small UI pieces every page uses."""
from contextlib import contextmanager

import streamlit as st

from llm_lab.errors import LabError


@contextmanager
def user_errors():
    """Show LabError messages as a red box, not a traceback."""
    try:
        yield
    except LabError as exc:
        st.error(str(exc), icon=":material/error:")


def header(title: str, caption: str) -> None:
    st.title(title)
    st.caption(caption)
