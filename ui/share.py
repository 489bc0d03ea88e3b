"""Share links in the dashboard: the "Share" control pages put under a result, and the viewer of a link.

A page adds one line where it shows a result:

    share.control("comparison", comp.title, lambda: snapshots.comparison(comp), key=f"c_share_{comp.id}")

`build` runs only when the user presses "Create link". The link's address is shown once, at creation (the
server keeps only a hash of its token); the Shared page lists the links with their views and revokes them.
"""
from __future__ import annotations

import json
from urllib.parse import urlsplit

import pandas as pd
import streamlit as st

from llm_lab import settings, sharing
from llm_lab.access import Actor
from ui import auth, backend
from ui.common import plain, user_errors

_SEEN = "shared_seen"          # tokens this browser session has opened (a view is counted once per session)


def visitor() -> Actor | None:
    """Who opens a link: the local user in local mode; on a hosted server the actor the sign-in gate
    (ui/auth.py) keeps for this session, or None for a visitor it let through unsigned to a public link."""
    if not settings.hosted():
        return backend.actor()
    return auth.signed_in()


def link_url(token: str) -> str:
    """The address that opens `token`: this server's own address (as the browser reached it) + /shared."""
    path = "/shared?token=" + token
    try:
        url = st.context.url
    except Exception:  # no browser session (bare mode)
        url = None
    if not url:
        return path
    parts = urlsplit(url)
    base = (st.get_option("server.baseUrlPath") or "").strip("/")
    return f"{parts.scheme}://{parts.netloc}" + (f"/{base}" if base else "") + path


def control(kind: str, title: str, build, key: str) -> None:
    """A "Share" popover: title, expiry, public (only when an admin allows public links), and the new
    link's address, shown once. Shown to users who may share (editors, admins) only."""
    who = backend.actor()
    if not who.can("write"):
        return
    with st.popover("Share", icon=":material/share:"):
        st.caption("A link to a frozen snapshot of this result: later changes do not alter it. Anyone signed in "
                   "to this server who has the link can open it.")
        name = st.text_input("Title", title, key=f"{key}_title", max_chars=200)
        days = st.number_input("Expires after (days; 0 = never)", 0.0, float(sharing.MAX_DAYS), 30.0, 1.0,
                               key=f"{key}_days")
        public = False
        if settings.get("public_links"):
            public = st.checkbox("Public: opens without signing in", key=f"{key}_public")
        if st.button("Create link", type="primary", key=f"{key}_create"):
            with user_errors():
                token = sharing.create(who, kind, name, build(), expires_in_days=days or None, public=public)
                st.session_state[f"{key}_token"] = token
        token = st.session_state.get(f"{key}_token")
        if token:
            st.code(link_url(token), language=None)
            st.caption("Copy it now: the address is shown only this once (the server keeps a hash of it). "
                       "The Shared page lists your links, their views, and revokes them.")


# ---------------------------------------------------------------- the viewer
def _frame(table: dict) -> pd.DataFrame:
    columns, seen = [], {}
    for c in table["columns"]:  # duplicate names would break the grid
        seen[c] = seen.get(c, 0) + 1
        columns.append(c if seen[c] == 1 else f"{c} ({seen[c]})")
    return pd.DataFrame(table["rows"], columns=columns)


def render(snap: dict) -> None:
    """Draw a snapshot: its texts as plain text, its tables as grids, its figures as charts."""
    import plotly.io as pio

    share = snap.get("share") or {}
    st.header(plain(snap.get("title") or "Shared result"), anchor=False)
    note = f"Shared by {share['by']} on {sharing.when(share['at'])}, a frozen snapshot" if share else "A frozen snapshot"
    note += f" ({sharing.KINDS.get(snap.get('kind'), 'result').lower()}"
    note += f", made {snap['created'][:10]})" if snap.get("created") else ")"
    if share.get("expires_at"):
        note += f"; the link expires {sharing.when(share['expires_at'])}"
    st.caption(plain(note + "."))
    for line in snap.get("text") or []:
        st.text(line)
    for i, fig in enumerate(snap.get("figures") or []):
        st.plotly_chart(pio.from_json(json.dumps(fig), skip_invalid=True), key=f"shared_fig_{i}")
    for i, table in enumerate(snap.get("tables") or []):
        if table.get("title"):
            st.markdown(f"**{plain(table['title'])}**")
        st.dataframe(_frame(table), hide_index=True, key=f"shared_table_{i}")


def open_and_render(token: str) -> None:
    """The viewer of `?token=`: the snapshot, or one not-found message for unknown, revoked or expired links."""
    who = visitor()
    seen = st.session_state.setdefault(_SEEN, set())
    with user_errors():
        snap = sharing.open_link(token, who, count_view=token not in seen)
        seen.add(token)
        render(snap)


def links(who: Actor | None) -> None:
    """The visitor's links (an admin's: every link they can see) with their views, status and Revoke."""
    if who is None:
        st.info("Sign in to see the links you shared.")
        return
    with user_errors():
        rows = sharing.list_links(who)
        if not rows:
            st.info("No share links yet. Use the **Share** button under a result on the Benchmarks, Compare, "
                    "Attributions or Train page.")
            return
        widths = [3, 1.2, 1.6, 1.6, 0.7, 1, 1]
        for col, name in zip(st.columns(widths), ["title", "kind", "created", "expires", "views", "status", ""]):
            col.markdown(f"**{name}**")
        for r in rows:
            cols = st.columns(widths)
            cols[0].text(r["title"] + (" · public" if r["public"] else "")
                         + (f" · by {r['created_by']}" if r["created_by"] != who.user else ""))
            cols[1].text(sharing.KINDS.get(r["kind"], r["kind"]))
            cols[2].text(sharing.when(r["created_at"]))
            cols[3].text(sharing.when(r["expires_at"]))
            cols[4].text(str(r["views"]))
            cols[5].text(r["status"])
            if r["status"] == "active" and cols[6].button("Revoke", key=f"revoke_{r['id']}"):
                sharing.revoke(who, r["id"])
                st.rerun()
        st.caption("A link's address was shown once, when it was made: the server keeps only a hash of it. "
                   "Lost one? Revoke it and share again.")
