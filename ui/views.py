"""A page's views as a segmented control: unlike st.tabs, code can switch it (`go`), e.g. a button that opens
a run in the live view."""
import streamlit as st


def _next(key: str) -> str:
    return f"_{key}_next"


def go(key: str, view: str) -> None:
    """Show `view` on the next run: call it from a widget callback, or before st.rerun()."""
    st.session_state[_next(key)] = view


def pick(key: str, views: list[str], default: str) -> str:
    """Draw the control and return the view shown: the one `go` asked for, else the one picked, else `default`
    (a new session, or a page switch, which drops the control's state)."""
    state = st.session_state
    if _next(key) in state:
        state[key] = state.pop(_next(key))
    elif state.get(key) not in views:
        state[key] = default
    return st.segmented_control("View", views, key=key, required=True, label_visibility="collapsed")
