"""The server's mode and the operator's settings.

Two modes (`LLM_LAB_MODE`): `local`, the default, one user with every right on a laptop; `hosted`, a team
server where everyone signs in. Settings decide what a hosted server allows (model roots, the Hub
allow-list, remote code, public share links) and the limits that keep one user from taking it down.

Where a value comes from, first match wins: the environment (`LLM_LAB_<NAME>`, set by the operator, e.g.
in docker-compose.yml; a list is comma-separated or JSON, a mapping JSON), then what an admin stored
(`python -m llm_lab settings set`, the Admin page; audited), then `DEFAULTS`.
"""
from __future__ import annotations

import json
import os

from . import store
from .errors import LabError

LOCAL_MODE, HOSTED_MODE = "local", "hosted"

DEFAULTS: dict[str, object] = {
    # sign-in and roles
    "admins": [],                 # e-mails that are admins from the start
    "default_role": "viewer",     # what a new user gets: viewer, editor, or pending (an admin approves)
    "role_claim": "groups",       # the ID-token claim holding the user's groups or roles, when the IdP sends one
    "role_map": {"llm-lab-admin": "admin", "llm-lab-editor": "editor", "llm-lab-viewer": "viewer"},
    "session_max_hours": 12.0,    # st.login keeps an identity cookie and does not check expiry: we do
    "trusted_proxy_header": "",   # e.g. X-Forwarded-Email, honoured only when set (the app is reachable only via the proxy)
    # server powers (hosted mode)
    "model_roots": [],            # folders whose model sub-folders anyone may open by path
    "hub_allow": [],              # Hub ids or prefixes ("org/*") that may be downloaded
    "hub_max_gb": 2.0,            # download size cap for a Hub model
    "allow_remote_code": False,   # whether an admin may load a model with trust_remote_code
    "public_links": False,        # whether share links may open without sign-in
    "endpoint_allow": [],         # hosts ("host", "host:port", "*.domain") a non-admin may add endpoint models on
    # limits per user (the worker runs one job at a time, so "running jobs of one user" is at most 1 already)
    "max_active_jobs": 3,         # queued + running jobs of one user, across workspaces
    "max_epochs": 50,             # a training run's epochs
    "max_steps": 100_000,         # a training run's optimizer steps (given, or worked out from the epochs)
    "upload_max_mb": 200.0,       # a dataset upload's size, and its data once decoded (Parquet, JSON)
    "upload_max_rows": 1_000_000, # a dataset upload's rows, counted while reading
    "yaml_max_kb": 64,            # a benchmark suite file
}
ROLE_CHOICES = ("viewer", "editor", "pending")

store.register_schema("settings", [
    "CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at REAL NOT NULL, updated_by TEXT)",
])


class SettingsError(LabError):
    pass


def mode() -> str:
    value = (os.environ.get("LLM_LAB_MODE") or LOCAL_MODE).strip().lower()
    if value not in (LOCAL_MODE, HOSTED_MODE):
        raise SettingsError(f"LLM_LAB_MODE={value!r}: use 'local' (one user, no sign-in) or 'hosted' (a team server).")
    return value


def hosted() -> bool:
    return mode() == HOSTED_MODE


def _env_name(name: str) -> str:
    return "LLM_LAB_" + name.upper()


def parse(name: str, text: str):
    """A setting's value from text (the environment, the CLI), checked against its default's type."""
    if name not in DEFAULTS:
        raise SettingsError(f"Unknown setting {name!r}. Settings: {', '.join(sorted(DEFAULTS))}.")
    default = DEFAULTS[name]
    text = str(text).strip()
    try:
        if isinstance(default, bool):
            if text.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(text)
            return text.lower() in ("1", "true", "yes", "on")
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        if isinstance(default, list):
            value = json.loads(text) if text.startswith("[") else [p.strip() for p in text.split(",") if p.strip()]
            if not all(isinstance(v, str) for v in value):
                raise ValueError(text)
            return value
        if isinstance(default, dict):
            value = json.loads(text or "{}")
            if not isinstance(value, dict):
                raise ValueError(text)
            return {str(k): str(v) for k, v in value.items()}
    except ValueError as exc:
        kind = type(default).__name__
        raise SettingsError(f"Setting {name}: {text!r} is not a valid {kind}.") from exc
    return text


def _check(name: str, value):
    if name == "default_role" and value not in ROLE_CHOICES:
        raise SettingsError(f"default_role must be one of {', '.join(ROLE_CHOICES)}, not {value!r}.")
    if isinstance(DEFAULTS[name], (int, float)) and not isinstance(DEFAULTS[name], bool) and value < 0:
        raise SettingsError(f"Setting {name} cannot be negative.")
    return value


def source(name: str) -> str:
    """Where the value of `name` comes from: environment, stored or default."""
    if os.environ.get(_env_name(name)) is not None:
        return "environment"
    return "stored" if store.query_one("SELECT 1 FROM settings WHERE name=?", (name,)) else "default"


def get(name: str):
    if name not in DEFAULTS:
        raise SettingsError(f"Unknown setting {name!r}.")
    env = os.environ.get(_env_name(name))
    if env is not None:
        return _check(name, parse(name, env))
    row = store.query_one("SELECT value FROM settings WHERE name=?", (name,))
    return json.loads(row["value"]) if row else DEFAULTS[name]


def all_settings(actor) -> list[dict]:
    """Every setting with its value and where it comes from (admins only: model roots and the like are the
    operator's business)."""
    actor.require("admin", "read server settings")
    return [{"name": n, "value": get(n), "source": source(n), "default": DEFAULTS[n]} for n in DEFAULTS]


def put(actor, name: str, value) -> None:
    """An admin stores a setting (audited). A value the environment sets cannot be changed here."""
    from . import audit

    actor.require("admin", "change server settings")
    if name not in DEFAULTS:
        raise SettingsError(f"Unknown setting {name!r}. Settings: {', '.join(sorted(DEFAULTS))}.")
    if isinstance(value, str) and not isinstance(DEFAULTS[name], str):
        value = parse(name, value)
    _check(name, value)
    if os.environ.get(_env_name(name)) is not None:
        raise SettingsError(f"{name} is set by the environment ({_env_name(name)}); change it there.")
    old = get(name)
    store.execute("INSERT INTO settings VALUES (?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET value=excluded.value, "
                  "updated_at=excluded.updated_at, updated_by=excluded.updated_by",
                  (name, json.dumps(value), store.now(), actor.user))
    audit.record(actor, "settings.change", name, {"from": old, "to": value})
