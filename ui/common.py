"""Small UI pieces every page uses: user errors, headers, text a user supplied shown as plain text, permalinks."""
import re
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import streamlit as st

from llm_lab import store
from llm_lab.access import DEFAULT_WORKSPACE
from llm_lab.errors import LabError

# ---------------------------------------------------------------- plain text
# Streamlit renders Markdown (CommonMark + GFM + math, emoji, directives such as :red[…] and
# :material/…:) in st.markdown/write/caption/title/header/subheader, the alert boxes, toasts,
# spinners, progress texts, expander/tab/widget labels and help, metric labels and values, radio
# options, buttons and page links. Select boxes, multiselects, dataframes, st.text, st.code and
# st.json show text as it is and need nothing.
#
# A backslash turns any of these characters into a literal one. They are the ones that open or close
# an inline construct anywhere in a line (links, images, emphasis, code, HTML, entities, math,
# directives, emoji, tables, footnotes) or a block at the start of one (#, >, +, =, ``` and ~~~).
# "-", "." and ")" open a block only at the start of a line (a list, a rule); they are escaped there.
# ("!" needs a "[" to make an image, "(" a "](" to make a link: both stay readable.)
_ACTIVE = re.compile(r"([\\`*_{}\[\]<>#+|~$&:=^])")
_BULLET = re.compile(r"(?m)^-")
_NUMBERED = re.compile(r"(?m)^(\d{1,9})([.)])")
_INDENT = re.compile(r"(?m)^[ \t]+")  # four spaces would make an indented code block, which shows the backslashes
# GFM's autolink literals (http://…, https://…, www.…, name@host.tld) are found in the text after
# the escapes are resolved: a backslash does not stop them. A WORD JOINER (U+2060, invisible and
# zero-width) between "http" and ":", after "www" and before "@" does.
WORD_JOINER = "\u2060"
# Streamlit also turns ":material/" into an icon before it parses anything; the joiner after
# "material" stops that too.
_AUTOLINK = re.compile(r"(?i)(?<=https)(?=:)|(?<=http)(?=:)|(?<=www)(?=\.)|(?=@)|(?<=:material)(?=/)")


def plain(text) -> str:
    """`text` (a name, a description, a task name, a URL parameter, an error message that quotes
    them) as Markdown that shows exactly that text: no links, no images, no HTML, no formatting.
    Use it for every value a user supplied that reaches a Markdown-rendering element."""
    text = _AUTOLINK.sub(WORD_JOINER, _INDENT.sub("", str(text)))
    text = _ACTIVE.sub(r"\\\1", text)
    return _NUMBERED.sub(r"\1\\\2", _BULLET.sub(r"\\-", text))


def strip_invisible(text: str) -> str:
    """What a person reads in `plain(text)` once rendered: the text without its word joiners."""
    return text.replace(WORD_JOINER, "")


@contextmanager
def user_errors():
    """Show LabError messages as a red box, not a traceback. The message often quotes what a user
    typed or a URL carried, so it is shown as plain text. A full disk under LLM_LAB_HOME gets its one message."""
    try:
        yield
    except LabError as exc:
        st.error(plain(exc), icon=":material/error:")
    except (OSError, *store.DatabaseError) as exc:
        if not store.is_storage_full(exc):
            raise
        st.error(plain(store.storage_full_message()), icon=":material/error:")


def header(title: str, caption: str) -> None:
    st.title(title)
    st.caption(caption)


# ---------------------------------------------------------------- permalinks
# url paths that differ from the file name (app.py's st.Page(..., url_path=…)); "" is the home page
URL_PATHS = {"views/home.py": "", "views/data.py": "datasets"}


def url_path(page: str) -> str:
    """The address of a page file of app.py's navigation, e.g. "views/data.py" -> "datasets"."""
    return URL_PATHS.get(page, Path(page).stem)


def _workspace() -> str | None:
    from ui import backend

    workspace = backend.actor().workspace
    return workspace if workspace and workspace != DEFAULT_WORKSPACE else None


def permalink(page: str, **params) -> str:
    """The address of one result, relative to the server: "/datasets?dataset=reviews".

    `params` are the query parameters the page reads (None and "" are left out; a list or tuple
    repeats the parameter); the workspace the result lives in goes along as `ws` when it is not the
    default one. The address opens the same result for anyone with access to that workspace."""
    query = [(k, str(x)) for k, v in params.items() if v is not None and v != ""
             for x in (v if isinstance(v, (list, tuple)) else [v])]
    if _workspace():
        query.append(("ws", _workspace()))
    base = (st.get_option("server.baseUrlPath") or "").strip("/")
    path = "/" + "/".join(p for p in (base, url_path(page)) if p)
    return path + ("?" + urlencode(query, quote_via=quote) if query else "")


def local_link(link: str) -> str:
    """A link the backend built ("/attributions?model=…") as a permalink: under the server's base
    path, with the workspace (for links that open in a new tab, a new session)."""
    parts = urlsplit(link)
    page = next((p for p, u in URL_PATHS.items() if u == parts.path.strip("/")), "views/" + parts.path.strip("/") + ".py")
    return permalink(page, **{k: v if len(v) > 1 else v[0] for k, v in parse_qs(parts.query).items() if k != "ws"})


def absolute(link: str) -> str:
    """`link` with the scheme and host the browser uses (st.context.url), when known."""
    try:
        here = urlsplit(st.context.url or "")
    except Exception:  # no browser session (AppTest, bare mode)
        return link
    return f"{here.scheme}://{here.netloc}{link}" if here.scheme and here.netloc else link


def show_permalink(link: str, container=None) -> None:
    """A small, copyable "Permalink" (a `permalink(...)` address, shown with the browser's host)."""
    where = container or st
    where.caption("Permalink: opens this for anyone with access to its workspace")
    where.code(absolute(link), language=None, wrap_lines=True)


def url_choice(param: str, widget_key: str, allowed=None, convert=str):
    """Select what ?param=… names in the widget `widget_key`, once per value: a shared link opens its
    item, and the person can pick another afterwards. Returns the value (None when the address has no
    such parameter or names something not in `allowed`)."""
    raw = st.query_params.get(param)
    if raw is None:
        return None
    try:
        value = convert(raw)
    except (TypeError, ValueError):
        return None
    if allowed is not None and value not in allowed:
        return None
    applied = st.session_state.setdefault("_url_applied", {})
    if applied.get(widget_key) != raw:
        applied[widget_key] = raw
        st.session_state[widget_key] = value
    return value


def preset(name: str, token, values: dict) -> bool:
    """Set widgets' values ({key: value}) before the widgets are drawn, once per `token` (e.g. the id of the
    result a page opened): the widgets start from them, and what the person changes afterwards stays.
    Returns whether they were set on this run."""
    applied = st.session_state.setdefault("_preset_applied", {})
    if token is None or applied.get(name) == token:
        return False
    applied[name] = token
    for key, value in values.items():
        st.session_state[key] = value
    return True


def keep_valid(key: str, options: list, default=None) -> None:
    """Call before the select box `key` over `options` is drawn: a value it holds that is no longer an option
    (a deleted dataset) becomes `default` (when it is one, else the first option). The value is *set*, so the
    browser is sent it; dropping it (`del st.session_state[key]`) resets it on the server only, and the
    browser, which keeps its own value of a widget it has drawn before, goes on showing the old label."""
    if key in st.session_state and st.session_state[key] not in options:
        st.session_state[key] = default if default in options else (options[0] if options else None)


def cannot_run() -> str | None:
    """Why this user may not start work on the server (jobs, comparisons), or None when they may. Pages disable
    their start buttons with it; the backend refuses anyway."""
    from ui import backend

    who = backend.actor()
    return None if who.can("run") else f"Your role ({who.role}) can look but not start work here: ask an admin for the editor role."
