"""Who is using this browser session: the gate every page passes through (app.py calls `gate()` first).

Local mode: the one local user (`LOCAL`), no sign-in. Hosted mode: nothing renders until the visitor has
signed in, through Streamlit's st.login (OpenID Connect) or, when the operator names one, an identity header
set by a trusted reverse proxy. The session then acts as `accounts.actor_for(email, workspace)`, so the
backend checks every call against that user's role and the one workspace the session works in.
"""
from __future__ import annotations

import time

import streamlit as st

from llm_lab import accounts, hosting, settings
from llm_lab.access import LOCAL, Actor

_ACTOR = "lab_actor"
_SIGNED_IN = "lab_signed_in"   # the e-mail whose sign-in this session has recorded
_WORKSPACE = "lab_workspace"


def current() -> Actor:
    """The acting user for this run. In hosted mode a page reached without the gate shows nothing."""
    if not settings.hosted():
        return LOCAL
    actor = st.session_state.get(_ACTOR)
    if actor is None:
        st.error("Sign in first.")
        st.stop()
    return actor


def signed_in() -> Actor | None:
    """The signed-in actor of this session in hosted mode, or None for an anonymous visitor."""
    return st.session_state.get(_ACTOR)


def _identity() -> tuple[str | None, dict]:
    """(email, claims) of the visitor, or (None, {}) when nobody is signed in."""
    header = settings.get("trusted_proxy_header")
    if header:
        email = st.context.headers.get(header)
        return (email.strip() if email else None), {}
    if not st.user.is_logged_in:
        return None, {}
    claims = st.user.to_dict()
    if claims.get("email_verified") is False:  # the provider says nobody checked this address: not an identity
        return None, claims
    return claims.get("email"), claims


def _session_expired(claims: dict) -> bool:
    """st.login does not check token expiry: a session older than session_max_hours signs in again."""
    issued = claims.get("iat") or st.session_state.setdefault("lab_first_seen", time.time())
    return time.time() - float(issued) > float(settings.get("session_max_hours")) * 3600


def _sign_in_page(note: str = "") -> None:
    st.title(":material/science: LLM Lab")
    st.write("This LLM Lab is shared by a team. Sign in to continue.")
    if note:
        st.info(note)
    names = [n for n in hosting.providers(_secrets().get("auth") or {}) if n != "default"]
    if not names:
        st.button("Sign in", type="primary", on_click=st.login, key="lab_login")
    for name in names:
        st.button(f"Sign in with {name}", type="primary", on_click=st.login, args=(name,), key=f"lab_login_{name}")


def _choose_workspace(user: dict) -> str:
    """This session's workspace: a permalink's `ws` (once: then the switcher rules), else the one chosen in this
    session, else the one the user last worked in (a reload is a new session), else their personal one."""
    names = accounts.workspace_names(user["email"])
    wanted = st.query_params.get("ws")
    if wanted is not None:
        if wanted in names:
            st.session_state[_WORKSPACE] = wanted
        del st.query_params["ws"]
    if st.session_state.get(_WORKSPACE) not in names:
        last = user.get("last_workspace")
        st.session_state[_WORKSPACE] = last if last in names else names[0]
    if st.session_state[_WORKSPACE] != user.get("last_workspace"):
        accounts.remember_workspace(user["email"], st.session_state[_WORKSPACE])
    return st.session_state[_WORKSPACE]


def public_visitor(is_public) -> bool:
    """A visitor nobody signed in, opening a public share link (`is_public(token)`): they may see that
    snapshot and nothing else."""
    if not settings.hosted() or hosting.problems(_secrets()):
        return False
    token = st.query_params.get("token")
    if token and not _identity()[0] and is_public(token):
        st.session_state.pop(_ACTOR, None)
        return True
    return False


def gate() -> Actor | None:
    """Sign the visitor in (hosted mode) and return the actor; None when the page must not render."""
    if not settings.hosted():
        return LOCAL
    st.session_state.pop(_ACTOR, None)  # set again below, once this run's visitor is known
    found = hosting.problems(_secrets())
    if found:
        st.error(hosting.refusal(found))
        return None
    email, claims = _identity()
    if not email:
        if settings.get("trusted_proxy_header"):
            st.error("No identity reached LLM Lab from the sign-in proxy. Ask the operator to check the proxy.")
        elif claims:  # signed in at the provider, which sent no (verified) address: signing in again won't help
            st.error("Your identity provider did not send a verified e-mail address, and LLM Lab knows people by "
                     "their address. Ask the operator to request the `email` scope from the provider.")
            st.button("Sign out", on_click=_sign_out, key="lab_logout")
        else:
            _sign_in_page()
        return None
    if not settings.get("trusted_proxy_header") and _session_expired(claims):
        st.session_state.clear()
        st.logout()
        return None
    try:
        if st.session_state.get(_SIGNED_IN) != email:
            accounts.sign_in(email, claims)
            st.session_state[_SIGNED_IN] = email
        user = accounts.get_user(email)
        if user is None:  # the account vanished under an open tab (a wiped store): sign in afresh
            st.session_state.pop(_SIGNED_IN, None)
            user = accounts.sign_in(email, claims)
            st.session_state[_SIGNED_IN] = email
    except accounts.AccountError as exc:
        st.error(str(exc))
        return None
    if user["role"] == "removed":
        st.title("No access")
        st.text(f"You are signed in as {email}, but an admin has removed your access to this LLM Lab.")
        _account_box(email, "removed", [])
        return None
    if user["role"] == "pending":
        st.title("Waiting for approval")
        st.text(f"You are signed in as {email}. An admin has to approve your account before you can use LLM Lab.")
        _account_box(email, "pending", [])
        return None
    actor = accounts.actor_for(email, _choose_workspace(user))
    st.session_state[_ACTOR] = actor
    return actor


def _secrets() -> dict:
    """Streamlit's secrets (from .streamlit/secrets.toml or the files `--secrets.files` names) as plain dicts."""
    try:
        return st.secrets.to_dict() if st.secrets.load_if_toml_exists() else {}
    except Exception:
        return {}


def hosted() -> bool:
    return settings.hosted()


def sidebar(actor: Actor) -> None:
    """In hosted mode: who is signed in, the workspace switcher and sign-out."""
    if settings.hosted():
        _account_box(actor.user, actor.role, accounts.workspace_names(actor.user))


def _account_box(email: str, role: str, workspaces: list[str]) -> None:
    with st.sidebar:
        st.text(f"{email} · {role}")
        if len(workspaces) > 1:
            st.selectbox("Workspace", workspaces, key=_WORKSPACE,
                         help="Everything you create goes to this workspace; you see only what is in it.")
        if not settings.get("trusted_proxy_header"):
            st.button("Sign out", on_click=_sign_out, key="lab_logout")


def _sign_out() -> None:
    st.session_state.clear()
    st.logout()
