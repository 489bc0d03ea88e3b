"""The one place pages get data from: cached calls into llm_lab.

Models are cached once per server process (st.cache_resource around the registry's
own cache, so the object is a cheap handle); lists are cached for a few seconds so
a page rerun does not hit the store many times.
"""
import streamlit as st

from llm_lab import capabilities, data, jobs, registry


@st.cache_resource(show_spinner=False, max_entries=8)
def model(name: str, head: str | None = None, attention: bool = False, device_override: str = "auto",
          dtype: str = "auto", trust_remote_code: bool = False, num_labels: int | None = None):
    return registry.load(name, head=head, attention=attention, device=device_override, dtype=dtype,
                         trust_remote_code=trust_remote_code, num_labels=num_labels)


@st.cache_data(ttl=3, show_spinner=False)
def model_entries() -> list:
    """The registry's entries (ModelEntry records)."""
    return registry.list_models()


def model_names(needs=None) -> list[str]:
    """Registry names, optionally only those that can meet `needs` (a capabilities.Needs)."""
    return [e.name for e in model_entries() if needs is None or capabilities.entry_fits(needs, e)]


def head_for(name: str, needs=None) -> str:
    """The head to open a registry model (or a typed folder / Hub id) with for `needs`."""
    entry = next((e for e in model_entries() if e.name == name), None) or registry.resolve(name)
    return capabilities.head_for(needs or capabilities.needs("Opening a model"), entry)


@st.cache_data(ttl=3, show_spinner=False)
def datasets() -> list:
    return data.list_datasets()


def dataset_names(*roles: str) -> list[str]:
    return [d.name for d in datasets() if all(r in d.roles for r in roles)]


@st.cache_data(ttl=3, show_spinner=False)
def dataset_frame(name: str, fingerprint: str, split: str | None = None):
    return data.load_frame(name, split)


@st.cache_data(ttl=3, show_spinner=False)
def classification_results() -> list:
    """Summaries of finished classification benchmark results, newest first (for "attribute the errors")."""
    from llm_lab.bench import cache

    return [s for s in reversed(cache.summaries()) if s.type == "classification" and s.ok]


@st.cache_data(show_spinner=False)
def device_info() -> dict:
    from llm_lab import device  # torch is imported only when needed

    return device.describe()


def clear() -> None:
    model_entries.clear()
    datasets.clear()


def submit_job(kind: str, params: dict, title: str) -> str:
    return jobs.submit(kind, params, title)
