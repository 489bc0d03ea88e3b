"""Is this server ready to be hosted for a team? The checks the dashboard and `python -m llm_lab dashboard` share.

A hosted server must know how people sign in: an OpenID Connect provider under `[auth]` in
`.streamlit/secrets.toml` (Streamlit's st.login), or a trusted reverse proxy that sets an identity header
(`LLM_LAB_TRUSTED_PROXY_HEADER`, e.g. oauth2-proxy's X-Forwarded-Email). Without one, nothing may render.
"""
from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path

from . import settings

OIDC_KEYS = ("client_id", "client_secret", "server_metadata_url")
MIN_COOKIE_SECRET = 32

HOW_TO = """Set up sign-in in .streamlit/secrets.toml (see README, "Hosting for a team"):
[auth]
redirect_uri = "https://lab.example.com/oauth2callback"
cookie_secret = "<at least 32 random characters: python -c 'import secrets; print(secrets.token_urlsafe(32))'>"
client_id = "<from your identity provider>"
client_secret = "<from your identity provider>"
server_metadata_url = "https://idp.example.com/.well-known/openid-configuration"
or, behind a reverse proxy that signs people in (oauth2-proxy), set LLM_LAB_TRUSTED_PROXY_HEADER=X-Forwarded-Email."""


def secrets_files() -> list[Path]:
    """Where Streamlit looks for secrets, as the CLI sees it (the dashboard passes st.secrets instead)."""
    named = os.environ.get("LLM_LAB_SECRETS_FILE")
    if named:
        return [Path(named)]
    return [Path.home() / ".streamlit" / "secrets.toml", Path.cwd() / ".streamlit" / "secrets.toml"]


def read_secrets() -> dict:
    merged: dict = {}
    for path in secrets_files():
        if path.is_file():
            merged.update(tomllib.loads(path.read_text()))
    return merged


NOT_PROVIDERS = ("client_kwargs",)  # tables in [auth] that are OIDC parameters (e.g. scope), not providers


def providers(auth: dict) -> dict[str, dict]:
    """The OIDC providers configured under [auth]: "default" when the keys sit in [auth] itself."""
    # st.secrets hands sections over as its own mapping type (AttrDict), which is not a dict
    named = {k: dict(v) for k, v in auth.items() if isinstance(v, Mapping) and k not in NOT_PROVIDERS}
    if any(k in auth for k in OIDC_KEYS):
        named["default"] = {k: auth[k] for k in OIDC_KEYS if k in auth}
    return named


def problems(secrets: dict | None = None) -> list[str]:
    """What stops a hosted server from signing people in; empty when it is ready (or in local mode)."""
    if not settings.hosted():
        return []
    if settings.get("trusted_proxy_header"):
        return []
    auth = dict((secrets if secrets is not None else read_secrets()).get("auth") or {})
    if not auth:
        return ["Hosted mode (LLM_LAB_MODE=hosted) needs sign-in, and none is configured: there is no [auth] "
                "section in .streamlit/secrets.toml and LLM_LAB_TRUSTED_PROXY_HEADER is not set."]
    found = []
    if "redirect_uri" not in auth:
        found.append("[auth] redirect_uri is missing (https://YOUR-HOST/oauth2callback).")
    if len(str(auth.get("cookie_secret", ""))) < MIN_COOKIE_SECRET:
        found.append(f"[auth] cookie_secret is missing or shorter than {MIN_COOKIE_SECRET} characters.")
    configured = providers(auth)
    if not configured:
        found.append("[auth] names no identity provider: add client_id, client_secret and server_metadata_url.")
    for name, section in configured.items():
        missing = [k for k in OIDC_KEYS if k not in section]
        if missing:
            found.append(f"[auth{'' if name == 'default' else '.' + name}] is missing {', '.join(missing)}.")
    return found


def refusal(found: list[str]) -> str:
    return "LLM Lab will not start in hosted mode:\n- " + "\n- ".join(found) + "\n\n" + HOW_TO
