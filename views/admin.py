"""Admin: users and roles, team workspaces, the audit log, server settings, and the workers with their queue
(admins only; the backend checks)."""
import json
from datetime import date, datetime, timezone

import pandas as pd
import streamlit as st

from llm_lab import accounts, audit, jobs, settings
from ui import backend
from ui.common import user_errors

st.title("Admin")
st.caption(f"Server mode: {settings.mode()}. Every change here is written to the audit log.")
if not settings.hosted():
    st.info("Local mode: you are the one user, with every right, and nobody signs in. Users, roles and "
            "workspaces take effect when the server runs hosted (LLM_LAB_MODE=hosted; see the README).")
actor = backend.actor()

users_tab, spaces_tab, audit_tab, settings_tab, workers_tab = st.tabs(
    ["Users", "Workspaces", "Audit log", "Settings", "Workers"])

with users_tab, user_errors():
    users = accounts.list_users(actor)
    frame = pd.DataFrame(users)
    if not frame.empty:
        for col in ("created_at", "last_seen"):
            frame[col] = pd.to_datetime(frame[col], unit="s", utc=True)
    if users:
        st.dataframe(frame, hide_index=True, width="stretch")
    else:
        st.caption("Nobody has signed in yet. Users appear here on their first sign-in, or add them below.")
    pending = [u["email"] for u in users if u["role"] == "pending"]
    if pending:
        st.warning(f"{len(pending)} user(s) waiting for approval.")
    c1, c2, c3 = st.columns([3, 2, 1], vertical_alignment="bottom")
    who = c1.selectbox("User", [u["email"] for u in users], key="adm_user")
    current = next((u["role"] for u in users if u["email"] == who), "viewer")  # "removed" is restored by a role
    role = c2.selectbox("Role", accounts.ASSIGNABLE_ROLES, key=f"adm_role_{who}",
                        index=accounts.ASSIGNABLE_ROLES.index(current if current in accounts.ASSIGNABLE_ROLES else "viewer"))
    if c3.button("Set role", key="adm_set_role", disabled=not who or role == current):
        accounts.set_role(actor, who, role)
        st.rerun()
    with st.expander("Add or remove a user"):
        a1, a2 = st.columns([3, 2])
        email = a1.text_input("E-mail", key="adm_new_email")
        new_role = a2.selectbox("Role", accounts.ASSIGNABLE_ROLES, index=2, key="adm_new_role")
        if st.button("Add user", key="adm_add") and email:
            accounts.add_user(actor, email, new_role)
            st.rerun()
        st.caption("Removing locks a user out: signing in again does not bring them back (giving them a role "
                   "does). What they made stays in its workspace.")
        gone = st.selectbox("User to remove", [u["email"] for u in users if u["role"] != "removed"], index=None,
                            key="adm_remove_who")
        sure = st.checkbox("Yes, remove this user", key="adm_remove_sure", disabled=not gone)
        if st.button("Remove", key="adm_remove", disabled=not (gone and sure)):
            accounts.remove_user(actor, gone)
            st.rerun()

with spaces_tab, user_errors():
    spaces = accounts.list_workspaces(actor)
    st.dataframe(pd.DataFrame([dict(s, members=", ".join(s["members"])) for s in spaces]),
                 hide_index=True, width="stretch", column_order=["name", "kind", "members", "created_by"])
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    name = c1.text_input("New team workspace", key="adm_ws_name")
    if c2.button("Create", key="adm_ws_create") and name:
        accounts.create_workspace(actor, name)
        st.rerun()
    teams = [s["name"] for s in spaces if s["kind"] == "team"]
    m1, m2, m3, m4 = st.columns([2, 3, 1, 1], vertical_alignment="bottom")
    team = m1.selectbox("Team workspace", teams, key="adm_ws_team")
    member = m2.selectbox("User", [u["email"] for u in accounts.list_users(actor)], key="adm_ws_member")
    if m3.button("Add", key="adm_ws_add") and team and member:
        accounts.add_member(actor, team, member)
        st.rerun()
    if m4.button("Remove", key="adm_ws_del") and team and member:
        accounts.remove_member(actor, team, member)
        st.rerun()

with audit_tab, user_errors():
    f1, f2, f3, f4 = st.columns(4)
    user = f1.text_input("User", key="adm_au_user")
    action = f2.text_input("Action", key="adm_au_action", help="e.g. sign-in, share, dataset.delete")
    space = f3.text_input("Workspace", key="adm_au_ws")
    since = f4.date_input("Since", value=None, key="adm_au_since")
    start = datetime.combine(since, datetime.min.time(), timezone.utc).timestamp() if isinstance(since, date) else None
    rows = audit.entries(actor, user=user.strip() or None, action=action.strip() or None,
                         workspace=space.strip() or None, since=start)
    st.caption(f"{len(rows)} entries, newest first.")
    st.dataframe(pd.DataFrame(rows, columns=["time"] + audit.COLUMNS[1:]), hide_index=True, width="stretch")
    st.download_button("Download CSV", audit.to_csv(rows), "llm_lab_audit.csv", "text/csv", key="adm_au_csv")

with settings_tab, user_errors():
    table = pd.DataFrame([dict(r, value=json.dumps(r["value"]), default=json.dumps(r["default"]))
                          for r in settings.all_settings(actor)])
    st.dataframe(table, hide_index=True, width="stretch")
    s1, s2, s3 = st.columns([2, 3, 1], vertical_alignment="bottom")
    name = s1.selectbox("Setting", list(settings.DEFAULTS), key="adm_set_name")
    value = s2.text_input("New value", key="adm_set_value", help="a number, true/false, a comma-separated list, or JSON")
    if s3.button("Save", key="adm_set_save") and value:
        settings.put(actor, name, value)
        st.rerun()

with workers_tab, user_errors():
    overview = jobs.workers_overview(actor)
    st.caption("Team workers on Redis (LLM_LAB_QUEUE_URL): each beats every few seconds; one silent past the "
               "timeout is lost and its job interrupted, to be resumed on any worker." if overview["team"] else
               "Laptop mode: one local worker takes every job. Set LLM_LAB_QUEUE_URL=redis://… for team workers.")
    if overview["workers"]:
        st.dataframe(pd.DataFrame(overview["workers"]), hide_index=True, width="stretch",
                     column_order=["host", "pid", "queue", "gpus", "gpu_memory_gb", "status", "seen_s_ago",
                                   "current_job", "job_title"])
    else:
        st.warning("No worker is running: queued jobs wait until one starts (`python -m llm_lab worker`).")
    waiting = ", ".join(f"{name}: {count}" for name, count in overview["pending"].items())
    st.caption(f"{len(overview['queue'])} job(s) queued (messages on the queue: {waiting}).")
    if overview["queue"]:
        st.dataframe(pd.DataFrame(overview["queue"]), hide_index=True, width="stretch",
                     column_order=["id", "title", "created_by", "workspace", "queue", "needs_gpu", "gpu_memory_gb",
                                   "waiting_s", "message"])
