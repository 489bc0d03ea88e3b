"""Fixtures for a hosted LLM Lab: a mock OpenID Connect provider and `streamlit run app.py` in hosted mode.

The provider is oidc-provider-mock (PyPI) on a thread of the test process. Its authorize step is a form: the
browser types the subject (here the e-mail address) into `sub` and presses "Authorize"; the claims of that
subject come from the `User` records handed to the provider (the editors' `groups` claim maps to the editor
role through settings.role_map), or are {"email": sub} for a subject it does not know.

Import the fixtures into a test module: `from tests.hosted import hosted, oidc, people  # noqa: F401`.
"""
from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import pytest

from tests.conftest import _free_port, need_chromium, start_streamlit, stop_streamlit, wait_idle

ADMIN = "admin@example.com"        # admin through LLM_LAB_ADMINS
EDITOR = "editor@example.com"      # editor through the IdP's groups claim
VIEWER = "viewer@example.com"      # viewer: the default role
CROWD = [f"user{i}@example.com" for i in range(8)]  # editors (groups claim), signed in at once
EDITOR_GROUPS = ["staff", "llm-lab-editor"]


def _users():
    from oidc_provider_mock import User

    return ([User(sub=ADMIN, claims={"email": ADMIN, "email_verified": True, "name": "Ada Admin"}),
             User(sub=EDITOR, claims={"email": EDITOR, "email_verified": True, "groups": EDITOR_GROUPS}),
             User(sub=VIEWER, claims={"email": VIEWER, "email_verified": True})]
            + [User(sub=e, claims={"email": e, "groups": ["llm-lab-editor"]}) for e in CROWD])


@pytest.fixture(scope="module")
def oidc():
    """The identity provider's base URL (its discovery document is under /.well-known/openid-configuration)."""
    import logging

    from oidc_provider_mock import run_server_in_thread

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per request in the failure reports
    with run_server_in_thread(port=_free_port(), user_claims=_users()) as server:
        yield f"http://127.0.0.1:{server.server_port}"


def write_secrets(path: Path, port: int, issuer: str) -> Path:
    path.write_text(
        "[auth]\n"
        f'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
        f'cookie_secret = "{secrets.token_urlsafe(32)}"\n'
        'client_id = "llm-lab-tests"\n'
        f'client_secret = "{secrets.token_urlsafe(16)}"\n'
        f'server_metadata_url = "{issuer}/.well-known/openid-configuration"\n')
    return path


@pytest.fixture(scope="module")
def hosted(oidc, tmp_path_factory):
    """A hosted server signing people in at the mock provider; its secrets reach Streamlit by `--secrets.files`."""
    need_chromium()
    home = tmp_path_factory.mktemp("hosted_home")
    port = _free_port()
    secrets_file = write_secrets(tmp_path_factory.mktemp("hosted_secrets") / "secrets.toml", port, oidc)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_LAB_")}
    env.update(LLM_LAB_HOME=str(home), LLM_LAB_MODE="hosted", LLM_LAB_ADMINS=ADMIN, LLM_LAB_JOBS_INLINE="0",
               LLM_LAB_SECRETS_FILE=str(secrets_file), PYTHONUNBUFFERED="1")
    # `python -m llm_lab dashboard`, the operator's way: it checks the sign-in setup, then runs `streamlit run app.py
    # --secrets.files $LLM_LAB_SECRETS_FILE` (headless etc. from the repository's .streamlit/config.toml)
    proc = start_streamlit([sys.executable, "-m", "llm_lab", "dashboard", "--port", str(port)], home, port, env)
    yield {"url": f"http://127.0.0.1:{port}", "home": home, "env": env, "oidc": oidc, "secrets": secrets_file}
    stop_streamlit(proc, home, "hosted-streamlit.log")


@pytest.fixture
def lab_backend(hosted, monkeypatch):
    """Let the test process call the backend on the hosted server's store (as `accounts.actor_for(email)`)."""
    from llm_lab import store

    for key in ("LLM_LAB_HOME", "LLM_LAB_MODE", "LLM_LAB_ADMINS"):
        monkeypatch.setenv(key, hosted["env"][key])
    store.reset_connections()
    yield hosted["home"]
    store.reset_connections()


# ---------------------------------------------------------------- the browser side
def connected(page) -> None:
    page.wait_for_selector("[data-testid='stApp'][data-test-connection-state='CONNECTED']", timeout=60_000)
    wait_idle(page)


def visit(page, server, path: str = "") -> None:
    page.goto(f"{server['url']}/{path}")
    connected(page)


def start_sign_in(page, server) -> None:
    """From any page of the app: press "Sign in" and arrive at the provider's authorize form."""
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{server['oidc']}/oauth2/authorize**")


def authorize(page, email: str) -> None:
    """On the provider's form: type the subject and authorize (the provider redirects to /oauth2callback)."""
    page.locator("input[name='sub']").fill(email)
    page.get_by_role("button", name="Authorize", exact=True).click()


def signed_in(page, server, email: str) -> None:
    """Wait until the app greets `email` in its sidebar."""
    page.wait_for_url(f"{server['url']}/**")
    connected(page)
    page.locator("[data-testid='stSidebar']").get_by_text(email, exact=False).wait_for()


def sign_in(page, server, email: str, path: str = "") -> None:
    visit(page, server, path)
    start_sign_in(page, server)
    authorize(page, email)
    signed_in(page, server, email)


class People:
    """One browser context per person, signed in on first use and kept for the module."""

    def __init__(self, browser, server):
        self.browser, self.server, self.pages = browser, server, {}

    def new_page(self):
        context = self.browser.new_context(viewport={"width": 1400, "height": 1400})
        page = context.new_page()
        page.set_default_timeout(60_000)
        return page

    def __call__(self, email: str):
        if email not in self.pages:
            page = self.new_page()
            sign_in(page, self.server, email)
            self.pages[email] = page
        return self.pages[email]

    def forget(self, email: str) -> None:
        """Close `email`'s browser (after signing out): the next call signs them in afresh."""
        page = self.pages.pop(email, None)
        if page is not None:
            page.context.close()

    def close(self):
        for page in self.pages.values():
            page.context.close()


@pytest.fixture(scope="module")
def people(browser, hosted):
    crowd = People(browser, hosted)
    yield crowd
    crowd.close()
