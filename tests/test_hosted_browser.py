"""A hosted LLM Lab in a real browser: OpenID Connect sign-in at a mock provider, roles, workspaces, audit.

One `streamlit run app.py` (LLM_LAB_MODE=hosted, sign-in configured through `--secrets.files`) and one mock
provider serve the whole module; each person has a browser context of their own. The tests run in file
order and build on each other's users and workspaces, but each one signs in whoever it needs.
"""
import pytest

from ui.common import strip_invisible
from tests.conftest import assert_no_exception_box, screenshot, wait_for, wait_idle
from tests.hosted import (ADMIN, CROWD, EDITOR, VIEWER, authorize, connected, hosted, lab_backend, oidc, people,
                          start_sign_in, visit)

pytestmark = pytest.mark.browser
FIXTURES = (hosted, lab_backend, oidc, people)  # imported for pytest, which finds them by name

# Every kind of URL a visitor may hold: pages, a permalink, a job link, the admin page, a workspace link, junk.
ANONYMOUS_PATHS = ["datasets", "", "models?model=minilm", "admin", "train?train_job=x", "datasets?dataset=mine",
                   "benchmarks", "compare", "arena", "attention", "attributions", "?ws=team", "no-such-page"]


def csv_bytes(marker: str, rows: int) -> bytes:
    lines = ["text,label"] + [f"{marker} example {i},{'good' if i % 2 else 'bad'}" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def sidebar(page) -> str:
    side = page.locator("[data-testid='stSidebar']")
    return side.inner_text() if side.count() else ""


def nav(page) -> str:
    links = page.locator("[data-testid='stSidebarNav']")
    return links.inner_text() if links.count() else ""


def pick(page, label: str, option: str) -> None:
    """Choose `option` in the visible selectbox labelled `label`."""
    page.locator("[data-testid='stSelectbox']:visible").filter(has_text=label).first.click()
    try:
        page.get_by_role("option", name=option, exact=True).click()
    except Exception:
        screenshot(page, f"hosted-pick-failed-{label}")
        raise
    wait_idle(page)


def assert_sign_in_page_only(page, unknown_url: bool = False) -> None:
    main = page.locator("[data-testid='stMain']").inner_text()
    assert "Sign in to continue" in main, main
    assert page.get_by_role("button", name="Sign in").count() == 1
    assert page.locator("[data-testid='stSidebar']").count() == 0, sidebar(page)  # no navigation, no account box
    dialogs = page.locator("[role='dialog']")
    if unknown_url:  # what a signed-in visitor gets too
        assert "Page not found" in dialogs.inner_text()
    else:
        assert dialogs.count() == 0, dialogs.inner_text()
    for leak in ("Datasets", "Stored datasets", "Admin", "Audit", "reviews", "Load model", "Workspace"):
        assert leak not in main, (leak, main)
    assert_no_exception_box(page)


def test_anonymous_visitors_see_only_the_sign_in_page_on_every_url(browser, hosted):
    """The first request of the module opens /datasets on the fresh server: Streamlit's views/ listing must
    not show up either."""
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    try:
        page = context.new_page()
        for path in ANONYMOUS_PATHS:
            visit(page, hosted, path)
            page.get_by_role("button", name="Sign in").wait_for()
            wait_idle(page)
            if path == "datasets":
                screenshot(page, "hosted-sign-in")
            assert_sign_in_page_only(page, unknown_url=path == "no-such-page")
        # the links pages put in the sidebar are not there to click either
        assert page.locator("a[data-testid='stSidebarNavLink']").count() == 0
    finally:
        context.close()


def test_sign_in_gives_roles_from_admins_the_groups_claim_and_the_default(people, hosted, lab_backend):
    from llm_lab import accounts

    for email, role, source in ((ADMIN, "admin", "configured"), (EDITOR, "editor", "claim"),
                                (VIEWER, "viewer", "default")):
        page = people(email)
        assert page.url.startswith(hosted["url"])
        assert f"{email} · {role}" in sidebar(page)
        user = accounts.get_user(email)
        assert (user["role"], user["role_source"]) == (role, source)
        assert ("Admin" in nav(page).split("\n")) == (role == "admin"), nav(page)
        assert "Datasets" in nav(page)
        assert_no_exception_box(page)

    # a viewer who types the admin URL gets no admin page
    viewer = people(VIEWER)
    visit(viewer, hosted, "admin")
    assert viewer.get_by_role("tab", name="Audit log").count() == 0
    main = viewer.locator("[data-testid='stMain']").inner_text()
    assert "The Admin page is for admins" in main and "with the viewer role" in main, main
    for admin_only in ("Users", "Workspaces", "Settings", "Workers"):
        assert viewer.get_by_role("tab", name=admin_only).count() == 0


def test_an_editors_personal_dataset_is_theirs_alone(people, hosted, lab_backend, tmp_path):
    from llm_lab import accounts, data
    from llm_lab.errors import LabError

    editor = people(EDITOR)
    csv = tmp_path / "editor_notes.csv"
    csv.write_bytes(csv_bytes("editor-secret", 12))
    visit(editor, hosted, "datasets")
    editor.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(csv))
    editor.get_by_text("Column roles").wait_for()
    wait_idle(editor)
    name = editor.get_by_label("Name", exact=True)
    name.fill("editor-notes")
    name.press("Enter")
    wait_idle(editor)
    editor.get_by_role("button", name="Save dataset").click()
    editor.get_by_text("Saved editor-notes").wait_for()
    wait_idle(editor)
    assert_no_exception_box(editor)
    info = data.get(accounts.actor_for(EDITOR), "editor-notes")
    assert info.rows == 12 and info.source_file == "editor_notes.csv"

    viewer = people(VIEWER)
    for path in ("datasets", "datasets?dataset=editor-notes", f"datasets?ws={EDITOR}"):
        visit(viewer, hosted, path)
        viewer.get_by_text("Stored datasets").wait_for()
        wait_idle(viewer)
        text = viewer.locator("[data-testid='stMain']").inner_text()
        # the viewer sees the shipped demos only: not the editor's dataset (12 rows), nor a way to delete it
        assert "Delete editor-notes" not in text and "12 rows" not in text and "editor_notes.csv" not in text, text
        assert "A demo dataset LLM Lab ships" in text  # what the viewer has: the demos, read-only
        assert f"{VIEWER} · viewer" in sidebar(viewer) and "Workspace" not in sidebar(viewer)
    screenshot(viewer, "hosted-viewer-datasets")
    with pytest.raises(LabError, match="No dataset named 'editor-notes'"):
        data.get(accounts.actor_for(VIEWER), "editor-notes")
    with pytest.raises(accounts.NotFound):
        accounts.actor_for(VIEWER, EDITOR)  # nor can the viewer open the editor's workspace


def test_a_viewer_reads_a_team_workspace_but_changes_nothing(people, hosted, lab_backend, tmp_path):
    from llm_lab import accounts, data, jobs
    from llm_lab.access import PermissionDenied

    admin = people(ADMIN)
    visit(admin, hosted, "admin")
    admin.get_by_role("tab", name="Workspaces").click()
    admin.get_by_label("New team workspace").fill("team")
    admin.get_by_label("New team workspace").press("Enter")
    wait_idle(admin)
    admin.get_by_role("button", name="Create").click()
    wait_idle(admin)
    assert "team" in accounts.workspace_names(ADMIN)
    admin.get_by_role("tab", name="Workspaces").click()
    pick(admin, "Team workspace", "team")
    pick(admin, "User", EDITOR)
    admin.get_by_role("button", name="Add", exact=True).click()
    wait_for(lambda: "team" in accounts.workspace_names(EDITOR), timeout=30)
    wait_idle(admin)
    assert_no_exception_box(admin)
    accounts.add_member(accounts.actor_for(ADMIN), "team", VIEWER)  # the second member through the backend

    data.import_dataset(accounts.actor_for(EDITOR, "team"), "team-data", "team.csv", csv_bytes("team-shared", 9))

    viewer = people(VIEWER)
    visit(viewer, hosted, "datasets")
    pick(viewer, "Workspace", "team")
    pick(viewer, "Look at", "team-data")  # the team's own dataset, beside the shipped demos
    viewer.get_by_text("Delete team-data", exact=True).wait_for()
    assert "9 rows" in viewer.locator("[data-testid='stMain']").inner_text()
    screenshot(viewer, "hosted-viewer-team")
    viewer.get_by_text("Delete team-data", exact=True).click()
    viewer.get_by_text("Yes, delete team-data and its files").click()
    wait_idle(viewer)
    viewer.get_by_role("button", name="Delete", exact=True).click()
    wait_idle(viewer)
    refusal = strip_invisible(viewer.locator("[data-testid='stAlertContentError']").inner_text())
    assert "viewer@example.com (viewer) may not delete" in refusal, refusal
    assert_no_exception_box(viewer)

    team_viewer = accounts.actor_for(VIEWER, "team")
    assert "team-data" in [d.name for d in data.list_datasets(team_viewer)]  # still there
    with pytest.raises(PermissionDenied, match="may not start jobs"):
        jobs.submit(team_viewer, "llm_lab.jobs:_resolve", {}, "a viewer's job")
    with pytest.raises(PermissionDenied, match="may not upload datasets"):
        data.import_dataset(team_viewer, "viewer-data", "v.csv", csv_bytes("viewer", 4))


def test_the_admin_reads_the_audit_log(people, hosted):
    import csv
    from collections import Counter

    admin = people(ADMIN)
    visit(admin, hosted, "admin")
    admin.get_by_role("tab", name="Audit log").click()
    panel = admin.locator("[role='tabpanel']:visible")
    panel.get_by_text("entries, newest first").wait_for()
    wait_idle(admin)
    screenshot(admin, "hosted-admin-audit")
    with admin.expect_download() as download:  # the grid is a canvas: read what it shows from its CSV
        panel.get_by_role("button", name="Download CSV").click()
    with open(download.value.path(), newline="") as f:
        rows = list(csv.DictReader(f))
    seen = {(r["user"], r["action"], r["target"], r["workspace"]) for r in rows}
    for email in (ADMIN, EDITOR, VIEWER):
        assert (email, "user.create", email, "") in seen and (email, "sign-in", email, "") in seen
    assert {(ADMIN, "workspace.create", "team", "team"), (ADMIN, "workspace.add-member", EDITOR, "team"),
            (ADMIN, "workspace.add-member", VIEWER, "team")} <= seen, seen
    # each person signed in once at the provider; the pages they opened since (new sessions) are no new sign-ins
    assert Counter(r["user"] for r in rows if r["action"] == "sign-in") == {ADMIN: 1, EDITOR: 1, VIEWER: 1}

    action = panel.get_by_role("textbox", name="Action")
    action.fill("workspace")
    action.press("Enter")
    wait_idle(admin)
    caption = panel.get_by_text("entries, newest first").inner_text()
    assert caption.startswith("3 entries"), caption  # created team, added two members


def test_sign_out_returns_to_the_sign_in_page(people, hosted):
    viewer = people(VIEWER)
    visit(viewer, hosted, "datasets")
    viewer.get_by_role("button", name="Sign out").click()
    viewer.wait_for_url(f"{hosted['oidc']}/oauth2/end_session**")  # the provider ends its session too
    viewer.get_by_role("button", name="End session").click()
    viewer.wait_for_url(f"{hosted['url']}/**")
    connected(viewer)
    viewer.get_by_role("button", name="Sign in").wait_for()
    assert_sign_in_page_only(viewer)
    visit(viewer, hosted, "datasets")  # the identity cookie is gone: every page asks to sign in again
    assert_sign_in_page_only(viewer)
    people.forget(VIEWER)


def test_eight_people_at_once_each_get_their_own_dataset(people, hosted, lab_backend, tmp_path):
    """Eight browsers sign in and upload a dataset named "mine" interleaved; each keeps exactly their own."""
    from llm_lab import accounts, data

    pages = {email: people.new_page() for email in CROWD}
    try:
        for page in pages.values():           # all eight open the app ...
            page.goto(hosted["url"] + "/datasets")
        for page in pages.values():           # ... press Sign in ...
            connected(page)
            start_sign_in(page, hosted)
        for email, page in pages.items():     # ... and authorize at the provider
            authorize(page, email)
        for email, page in pages.items():
            page.wait_for_url(hosted["url"] + "/**")
            connected(page)
            assert f"{email} · editor" in sidebar(page)
            page.locator("[data-testid='stSidebarNav']").get_by_role("link", name="Datasets").click()
        for page in pages.values():
            page.get_by_text("Stored datasets").wait_for()
            wait_idle(page)
        files = {}
        for i, (email, page) in enumerate(pages.items()):
            files[email] = tmp_path / f"mine{i}.csv"
            files[email].write_bytes(csv_bytes(f"user{i}", 10 + i))
            page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(files[email]))
        for page in pages.values():
            page.get_by_text("Column roles").wait_for()
            wait_idle(page)
            page.get_by_label("Name", exact=True).fill("mine")
            page.get_by_label("Name", exact=True).press("Enter")
        for page in pages.values():
            wait_idle(page)
            page.get_by_role("button", name="Save dataset").click()
        for i, (email, page) in enumerate(pages.items()):
            page.get_by_text("Saved mine").wait_for()
            wait_idle(page)
            assert_no_exception_box(page)
            assert f"{10 + i} rows" in page.locator("[data-testid='stMain']").inner_text()
        screenshot(pages[CROWD[3]], "hosted-crowd-datasets")
        for i, email in enumerate(CROWD):
            actor = accounts.actor_for(email)
            assert [d.name for d in data.list_datasets(actor) if d.name not in data.demo_names()] == ["mine"]
            frame = data.load_frame(actor, "mine")
            assert len(frame) == 10 + i
            assert frame["text"].str.startswith(f"user{i} example").all(), frame["text"].head()
    finally:
        for page in pages.values():
            page.context.close()
