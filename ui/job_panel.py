"""A live panel for one background job: progress, ETA, message, log, cancel/resume.

The job id sits in st.query_params under `key`, so a refresh or a shared link finds it again, and in the
session, so a page switch (the sidebar's links carry no query) does too (`watched`).
"""
import time

import streamlit as st

from llm_lab import jobs
from ui import backend
from ui.common import plain, show_permalink

ICONS = {"queued": ":material/hourglass_empty:", "running": ":material/directions_run:",
         "succeeded": ":material/check_circle:", "failed": ":material/error:", "cancelled": ":material/cancel:",
         "interrupted": ":material/bolt:"}


def _memory(key: str) -> str:
    return f"_job_panel_{key}"


def remember(key: str, job_id: str) -> None:
    st.query_params[key] = job_id
    st.session_state[_memory(key)] = job_id


def current(key: str) -> str | None:
    return st.query_params.get(key)


def watched(key: str, active=()) -> list[str]:
    """The jobs a page's live view follows: the one its address names (a permalink, a refresh); otherwise
    `active` (the user's queued and running jobs of this kind, found in the store) and the one this session
    followed last (a page switch or the sidebar's link, which carry no query). The first goes into the address."""
    named = current(key)
    if named:
        st.session_state[_memory(key)] = named
        return [named]
    ids = list(dict.fromkeys(i for i in (*active, st.session_state.get(_memory(key))) if i))
    if ids:
        remember(key, ids[0])
    return ids


def _eta(job: dict) -> str:
    if job["status"] != "running" or not job["done"] or not job["total"] or not job["started_at"]:
        return ""
    elapsed = time.time() - job["started_at"]
    left = elapsed / job["done"] * (job["total"] - job["done"])
    return f" · ETA {int(left // 60)}m {int(left % 60):02d}s"


def status_line(job: dict) -> str:
    return f"{ICONS.get(job['status'], '')} **{plain(job['title'])}** — {job['status']}{_eta(job)}"


def _tile(value) -> str:
    if value is None:
        return "—"
    return f"{value:.4g}" if isinstance(value, float) else plain(value) if isinstance(value, str) else value


def worker_note(job: dict) -> str | None:
    """Where a queued or running job runs, and what stopping the dashboard does to it."""
    if job["status"] not in jobs.ACTIVE or jobs.inline_mode():
        return None
    if jobs.team_mode():  # the team's workers (Admin → Workers lists them)
        worker = job.get("worker_id")
        return (f"Runs on worker {worker}; if it stops beating its heart the job ends interrupted, to be resumed "
                "on any worker." if job["status"] == jobs.RUNNING and worker else
                f"Waits in the team's {job.get('queue') or 'cpu'} queue for a worker that fits it.")
    info = jobs.worker_info()
    if info["external"]:
        return ("Runs in the server's own worker (LLM_LAB_EXTERNAL_WORKER): it keeps running when the dashboard "
                "stops." if info["alive"] else "No worker is running: the job waits in the queue until the "
                "operator starts it (docker compose: the worker service).")
    if not info["alive"]:
        return "No worker is running yet: the job waits in the queue until one starts."
    pid = info["pid"] or "?"
    if info["parent_pid"]:
        return (f"Runs in the background worker (process {pid}) that this dashboard started: it stops when the "
                "dashboard stops. A running job then ends interrupted; Resume continues it from its last "
                "checkpoint.")
    return (f"Runs in a worker started outside this dashboard (process {pid}): it keeps running when the "
            f"dashboard stops. Stop it with Ctrl-C where it runs, or `kill {pid}`.")


def show(job_id: str, extra=None, key: str = "job", link: str | None = None, tiles: tuple | None = None) -> None:
    """Draw the panel once; wrap in a fragment that reruns while the job is active.

    link: the job's permalink (`ui.common.permalink(page, <its query key>=job_id)`), shown under the log.
    tiles: the stats shown as metric tiles, always these, in this order ("—" until a value comes), so the row
    keeps its shape while the job reports more or fewer stats; by default the first six the job reports.

    Only an active job's panel polls: a finished one stays still, so what `extra` offers (a deferred
    download, whose file id Streamlit renews on every run) is not swapped under the user's click."""
    try:
        active = jobs.get(backend.actor(), job_id)["status"] in jobs.ACTIVE
    except Exception:  # the panel says why
        active = False

    @st.fragment(run_every=2.0 if active else None)
    def panel():
        try:
            job = jobs.get(backend.actor(), job_id)
        except Exception as exc:
            st.error(plain(exc))
            return
        was_active = f"{key}-was-active-{job_id}"
        if job["status"] not in jobs.ACTIVE and st.session_state.get(was_active):
            st.session_state[was_active] = False
            st.rerun()  # it has just finished: the whole page once (results below appear, the panel stops polling)
        st.session_state[was_active] = job["status"] in jobs.ACTIVE
        st.markdown(status_line(job))
        failed = job["status"] == "failed" and job["error"]
        # a failed job's message is its error, shown in red below: the bar says "failed" rather than repeat it
        st.progress(job["fraction"], text=plain(job["status"] if failed and job["message"] == job["error"]
                                               else job["message"] or job["status"]))
        note = worker_note(job)
        if note:
            st.caption(plain(note))
        names = list(tiles) if tiles else list(job["stats"])[:6]
        if names:
            for col, name in zip(st.columns(len(names)), names):
                col.metric(plain(name), _tile(job["stats"].get(name)))
        if failed:
            st.error(plain(job["error"]))
        if extra:
            extra(job)
        c1, c2, _ = st.columns([1, 1, 4])
        if job["status"] in jobs.ACTIVE and c1.button("Cancel", key=f"{key}-cancel-{job_id}"):
            jobs.cancel(backend.actor(), job_id)
            st.rerun(scope="fragment")
        if job["status"] in jobs.RESUMABLE and c2.button("Resume", key=f"{key}-resume-{job_id}"):
            jobs.resume(backend.actor(), job_id)
            st.rerun()  # the whole page: the panel polls again
        with st.expander("Log"):
            st.code("\n".join(jobs.logs(backend.actor(), job_id, 40)) or "(no log lines yet)", language=None)
        if link:
            show_permalink(link)

    panel()
