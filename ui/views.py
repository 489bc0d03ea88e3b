"""A page's views as a segmented control: unlike st.tabs, code can switch it (`go`), e.g. a button that opens
a run in the live view."""
import streamlit as st


def _next(key: str) -> str:
    return f"_{key}_next"


def go(key: str, view: str) -> None:
    """Show `view` on the next run: call it from a widget callback, or before st.rerun()."""
    st.session_state[_next(key)] = view


def _slug(view: str) -> str:
    return view.lower().replace(" ", "-")


def pick(key: str, views: list[str], default: str, param: str | None = None) -> str:
    """Draw the control and return the view shown: the one `go` asked for, else the one picked, else the one
    the address names (?param=, so a refresh stays where it was), else `default` (a new session, or a page
    switch, which drops the control's state)."""
    state = st.session_state
    if _next(key) in state:
        state[key] = state.pop(_next(key))
    elif state.get(key) not in views:
        named = {_slug(v): v for v in views}.get(st.query_params.get(param)) if param else None
        state[key] = named or default
    view = st.segmented_control("View", views, key=key, required=True, label_visibility="collapsed")
    if param and st.query_params.get(param) != _slug(view):
        st.query_params[param] = _slug(view)
    return view
