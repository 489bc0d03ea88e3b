"""What pages share when they read from llm_lab: the acting user, models, and cached lists and frames.

Pages call llm_lab's typed functions directly for everything else (a feature's own module: `compare.runs`,
`bench.leaderboard`, `inference`, …), always as `actor()`; what is cached for every session lives here.

Models are cached once per server process, in the registry's own bounded cache (at most LLM_LAB_MAX_MODELS,
keyed by folder, weights and settings) and nowhere else, except a model loaded with remote code, which stays
with the browser session that loaded it; lists are cached for a few seconds so a page rerun does not hit the
store many times.
"""
from concurrent.futures import Future, ThreadPoolExecutor, wait

import streamlit as st
from streamlit import config as st_config

from llm_lab import capabilities, data, jobs, model_files, registry, warmup
from llm_lab.access import Actor
from llm_lab.errors import LabError
from ui import auth


def actor() -> Actor:
    """Who is using this browser session: the local user, or in hosted mode whoever signed in (ui/auth.py)."""
    return auth.current()


# Every cached call takes the actor as its first argument, so it is part of the cache key: one user's
# lists or frames are never served to another. (Streamlit does not hash arguments whose name starts with "_",
# so it is called `who`.)


def model(name: str, head: str | None = None, attention: bool = False, device_override: str = "auto",
          dtype: str = "auto", trust_remote_code: bool = False, num_labels: int | None = None):
    if trust_remote_code:  # it ran its own code in this server: never in the process-wide cache
        who = actor()
        kept = st.session_state.setdefault("_remote_code_models", {})
        key = (who, name, head, attention, device_override, dtype, num_labels)
        if key not in kept:
            kept[key] = registry.load(who, name, head=head, attention=attention, device=device_override,
                                      dtype=dtype, trust_remote_code=True, num_labels=num_labels)
        return kept[key]
    # the registry's cache only: its key holds the folder the name points to now and its weights' stamp (a name
    # registered again for another folder, or a folder saved again, is never served the old weights), and it
    # holds at most LLM_LAB_MAX_MODELS, so no page keeps a model alive past that
    return registry.load(actor(), name, head=head, attention=attention, device=device_override, dtype=dtype,
                         num_labels=num_labels)


# Models loading in the background for the Models page, per (user, name, folder + weights stamp, head, device,
# dtype); one at a time, so two first visits never import the model stack twice at once. A future says only that
# its load has ended (its result is None, its error dropped): the model itself stays in the registry's cache,
# which holds at most LLM_LAB_MAX_MODELS, and is never kept alive here past it (`model(...)` fetches it from there,
# or loads it again once the cache has let it go; after a failed load it raises the error where it is shown).
_loads: dict[tuple, Future] = {}
_loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llm-lab-load")
WARMUP_GRACE_S = 10.0


def _load_in_background(who: Actor, name: str, head, device_override, dtype):
    # The model stack's imports run in the warm-up thread only (llm_lab/warmup.py says why), which the dashboard
    # starts once the page has run (app.py): importing while the page renders would slow the card down, as both
    # threads need the interpreter's lock.
    if not warmup.wait_started(WARMUP_GRACE_S):
        warmup.start()
    warmup.wait()
    try:
        registry.load(who, name, head=head, device=device_override, dtype=dtype)
    except Exception:  # noqa: BLE001  model(...) loads it again and shows the error; kept, its traceback would
        pass           # keep the frames of the failed load (and what they hold) alive
    return None


def model_ready(name: str, head: str | None = None, device_override: str = "auto", dtype: str = "auto") -> bool:
    """Whether `model(...)` would return without loading; if not, its load starts in the background (once).
    A load that failed counts as done: `model(...)` then tries again and raises the error where it is shown.
    Under AppTest, or with the warm-up turned off, every load is done in the page (True)."""
    if st_config.get_option("global.appTest") or not warmup.enabled():
        return True
    who = actor()
    entry = registry.resolve(who, name, prepare=False)  # a GGUF converts in the background load, not here
    key = (who, name, entry.source, entry.location, registry.weights_stamp(entry.location), head, device_override,
           dtype)
    if key not in _loads:
        _loads[key] = _loader.submit(_load_in_background, who, name, head, device_override, dtype)
        wait([_loads[key]], timeout=0.25)  # a model another page loaded already is back at once
    return _loads[key].done()


def model_preview(name: str, head: str) -> dict | None:
    """The model card's numbers read from the folder's files (no weights loaded); None for a Hub id."""
    return model_files.card(actor(), registry.resolve(actor(), name, prepare=False), head)


def gguf_converting(name: str) -> bool:
    """Whether opening `name` first dequantizes a GGUF file (not in the conversion cache yet: ~25 s for the
    135M chat model on 2 cores), so the page can say why the load takes longer."""
    from llm_lab import gguf

    try:
        entry = registry.resolve(actor(), name, prepare=False)
        path = gguf.gguf_path(entry.location) if entry.source != "hub" else None
        return bool(path) and not gguf.is_cached(path)
    except LabError:
        return False


def may_trust_remote_code() -> bool:
    """Whether this user may load a model with remote code (the Models page shows the checkbox only then)."""
    return registry.may_run_remote_code(actor())


def check_model(name: str):
    """The registry entry `name` opens for this user, or the error saying why it cannot (registry.resolve)."""
    return registry.resolve(actor(), name, prepare=False)


@st.cache_data(ttl=3, show_spinner=False)
def _model_entries(who: Actor) -> list:
    return registry.list_models(who)


def model_entries() -> list:
    """The registry's entries (ModelEntry records) this user can see."""
    return _model_entries(actor())


def model_names(needs=None) -> list[str]:
    """Registry names, optionally only those that can meet `needs` (a capabilities.Needs)."""
    return [e.name for e in model_entries() if needs is None or capabilities.entry_fits(needs, e)]


def head_for(name: str, needs=None) -> str:
    """The head to open a registry model (or a typed folder / Hub id) with for `needs`."""
    entry = next((e for e in model_entries() if e.name == name), None) or registry.resolve(actor(), name, prepare=False)
    return capabilities.head_for(needs or capabilities.needs("Opening a model"), entry)


def default_head(name: str | None, asked: str | None = None) -> str:
    """The head the Models page opens `name` with: `asked` (a link's ?head=) when it is one, else the model's own
    head (`capabilities.default_head` of its registry entry, or of what a typed folder's config.json names);
    "encoder" while nothing is picked or the name does not resolve (Load model says why)."""
    if asked in capabilities.HEADS:
        return asked
    if not name:
        return "encoder"
    try:
        return head_for(name)
    except LabError:
        return "encoder"


@st.cache_data(ttl=3, show_spinner=False)
def _datasets(who: Actor) -> list:
    return data.list_datasets(who)


def datasets() -> list:
    return _datasets(actor())


def dataset_names(*roles: str) -> list[str]:
    return [d.name for d in datasets() if all(r in d.roles for r in roles)]


@st.cache_data(ttl=3, show_spinner=False)
def _dataset_frame(who: Actor, name: str, fingerprint: str, split: str | None):
    return data.load_frame(who, name, split)


def dataset_frame(name: str, fingerprint: str, split: str | None = None):
    return _dataset_frame(actor(), name, fingerprint, split)


@st.cache_data(ttl=3, show_spinner=False)
def _classification_results(who: Actor) -> list:
    from llm_lab.bench import cache

    return [s for s in reversed(cache.summaries(who)) if s.type == "classification" and s.ok]


@st.cache_data(ttl=3, show_spinner=False)
def _bench_runs(who: Actor) -> list:
    from llm_lab.bench import cache

    return cache.runs(who)


def bench_runs(must_include: str | None = None) -> list:
    """Recent benchmark runs (cached for a few seconds, like every list a page shows). A run the page
    knows exists (`must_include`, e.g. the job it just watched finish) is never missing from the list."""
    runs = _bench_runs(actor())
    if must_include and must_include not in {r["id"] for r in runs}:
        _bench_runs.clear()
        runs = _bench_runs(actor())
    if must_include and must_include not in {r["id"] for r in runs}:  # older than the list (a permalink)
        from llm_lab.bench import cache

        older = cache.get_run(actor(), must_include)
        runs = runs + [older] if older else runs
    return runs


@st.cache_data(ttl=3, show_spinner=False)
def _saved_comparisons(who: Actor) -> list:
    from llm_lab.compare import saved

    return saved.list_saved(who)


def saved_comparisons() -> list:
    return _saved_comparisons(actor())


def classification_results() -> list:
    """Summaries of finished classification benchmark results, newest first (for "attribute the errors")."""
    return _classification_results(actor())


@st.cache_data(show_spinner=False)
def device_info() -> dict:
    from llm_lab import device  # torch is imported only when needed

    return device.describe()


def clear() -> None:
    """Forget cached lists after a change, so the page shows it at once."""
    for cached in (_model_entries, _datasets, _bench_runs, _saved_comparisons, _classification_results):
        cached.clear()


def submit_job(fn: str, params: dict, title: str) -> str:
    return jobs.submit(actor(), fn, params, title)


def size_ladder() -> None:
    """The built-in causal LMs' size and measured quality (read from their cards; nothing is loaded)."""
    from llm_lab import lm_quality
    from llm_lab.compare import plots

    rows = lm_quality.ladder(registry.builtin_models())
    if len(rows) < 2:
        return
    with st.expander(f"Size ladder: {' < '.join(r['model'] for r in rows)} (measured on held-out text)"):
        st.plotly_chart(plots.size_ladder(rows), config={"displayModeBar": False})
        st.dataframe(rows, hide_index=True)
        st.caption("Held-out text: source files of the Python standard library's own tests, which the models never "
                   "saw. Bits per byte compares models with different tokenizers; distinct-2 and repetition are "
                   "measured on greedy continuations with the suggested settings. Each model's card has the rest.")


@st.cache_resource(max_entries=32, show_spinner="Comparing the models example by example…")
def bench_comparisons(workspace: str | None, view: str, result_keys: tuple, metric: str | None, adjust: str,
                      margin: float | None, _results: list):
    """`bench.compare.compare_run` of a run (or a slice of it), kept per (workspace, run or slice, the stored
    results it holds, metric, adjustment, margin): the permutation tests of many models take a second or more,
    and every widget on the Benchmarks page reruns it. Kept as returned (comparisons are not changed later)."""
    from llm_lab.bench import compare

    return compare.compare_run(_results, metric, adjust=adjust, margin=margin)
