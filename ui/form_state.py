"""Form values that survive a refresh and a page switch.

Streamlit drops a widget's state when a run does not draw it (a page switch), keyed or not, and a refresh starts
a new session. A `KeptForm` keeps its widgets' values in the session (page switch) and, as one JSON query
parameter, in the address (refresh):

    form = KeptForm("form")
    epochs = st.number_input("Epochs", 0.1, 100.0, 3.0, key=form.key("t_ep", float))
    ...
    form.save()      # after the form's widgets; on every run of the page, drawn or not (it fills the address)

A kept value goes back into its widget only when the widget has none, and only when it has the widget's type
(`kind`): the address is typed by people too. A value a widget does not offer (a deleted dataset, a number out
of range) Streamlit replaces with the widget's default.
"""
import json

import streamlit as st

_SESSION = "_kept_forms"


def _decode(text: str | None) -> dict:
    try:
        values = json.loads(text) if text else {}
    except ValueError:
        return {}
    return values if isinstance(values, dict) else {}


def _as(value, kind: type):
    """`value` as a `kind` (str, int, float or bool), or None when it is not one."""
    if kind is bool:
        return value if isinstance(value, bool) else None
    if isinstance(value, bool):
        return None
    if kind is float and isinstance(value, (int, float)):
        return float(value)
    if kind is int and (isinstance(value, int) or isinstance(value, float) and value.is_integer()):
        return int(value)
    if kind is str and isinstance(value, str):
        return value
    return None


class KeptForm:
    def __init__(self, param: str):
        self.param = param
        kept = st.session_state.setdefault(_SESSION, {})
        if param not in kept:  # a new session: a refresh, or an address with the form in it
            kept[param] = _decode(st.query_params.get(param))
        self.values: dict = kept[param]
        self.keys: list[str] = []

    def key(self, key: str, kind: type = str) -> str:
        """The widget key `key`, whose value is kept; its kept value goes back when the widget has none."""
        self.keys.append(key)
        if key not in st.session_state and key in self.values:
            value = _as(self.values[key], kind)
            if value is not None:
                st.session_state[key] = value
        return key

    def save(self) -> None:
        """Keep the values of this run's widgets (other widgets' values, e.g. another task's, stay kept)."""
        for key in self.keys:
            if key in st.session_state:
                self.values[key] = st.session_state[key]
        if not self.values:
            return
        encoded = json.dumps(self.values, sort_keys=True, separators=(",", ":"))
        if st.query_params.get(self.param) != encoded:
            st.query_params[self.param] = encoded
