"""Datasets: upload, map columns to roles, clean, split, preview, save; list and delete stored datasets."""
import math
import re
import time
from pathlib import Path

import pandas as pd
import streamlit as st

from llm_lab import data, data_plots
from ui import backend
from ui.common import header, keep_valid, permalink, plain, show_permalink, url_choice, user_errors

header(":material/table_chart: Datasets", "Upload a table, tell LLM Lab which column is the text and which the label, clean it, split "
       "it, and save it. Every dataset is stored with a content hash, its column mapping and its cleaning recipe.")

NONE = "(none)"
FORMATS = "CSV, TSV, JSON, JSON Lines, Parquet or plain text (one example per line)"


def _raw(upload) -> pd.DataFrame:
    """The parsed upload, kept once per session (the latest file only) so reruns do not parse it again."""
    cache = st.session_state.setdefault("ds_parsed", {})
    if upload.file_id not in cache:
        cache.clear()  # before parsing: the previous upload's frame is not kept while the next one is read
        st.session_state.pop("ds_prepared", None)
        cache[upload.file_id] = data.read_table(upload.name, upload.getvalue())
    return cache[upload.file_id]


def _prepared(upload, raw: pd.DataFrame, roles: dict, recipe: data.Recipe):
    """The cleaned and split preview, kept for the latest upload, mapping and recipe (typing a name or a
    description reruns the page; it does not clean a million rows again)."""
    key = (upload.file_id, tuple(sorted(roles.items())), tuple(sorted(recipe.as_dict().items())))
    kept = st.session_state.get("ds_prepared")
    if kept is None or kept[0] != key:
        st.session_state.pop("ds_prepared", None)
        kept = (key, data.prepare(upload.name, b"", roles, recipe, raw=raw))
        st.session_state["ds_prepared"] = kept
    return kept[1]


def _profile_block(frame: pd.DataFrame, report: dict | None = None, key: str = "") -> None:
    prof = data.profile(frame)
    cols = st.columns(5)
    cols[0].metric("Rows", prof["rows"])
    if report:
        cols[1].metric("Empty rows dropped", report["empty_dropped"])
        cols[2].metric("Duplicates dropped", report["duplicates_dropped"])
        cols[3].metric("Truncated", report["truncated"])
    else:
        cols[1].metric("Empty rows", prof["empty_rows"])
        cols[2].metric("Duplicate rows", prof["duplicate_rows"])
        cols[3].metric("Labels", len(prof["label_counts"]) or "—")
    lengths = prof["length_chars"]
    if lengths:
        cols[4].metric("Median length", f"{lengths['median']:.0f} chars",
                       help=f"min {lengths['min']}, max {lengths['max']} characters in {plain(repr(prof['text_column']))}")
    left, right = st.columns(2)
    if prof["label_counts"]:
        left.plotly_chart(data_plots.label_distribution(frame), key=f"labels-{key}")
    if prof["text_column"]:
        (right if prof["label_counts"] else left).plotly_chart(
            data_plots.length_histogram(frame, prof["text_column"]), key=f"lengths-{key}")


# ---------------------------------------------------------------- upload
def _upload_section() -> None:
    st.subheader("Add a dataset")
    limit_mb, limit_rows = data.max_upload_bytes() / 2**20, data.max_upload_rows()
    upload = st.file_uploader(f"Upload a file: {FORMATS}", key="ds_upload", max_upload_size=max(1, math.ceil(limit_mb)),
                              help=f"Files up to {limit_mb:g} MB and {limit_rows:,} rows (settings upload_max_mb, "
                                   "upload_max_rows). Text must be UTF-8.")
    if upload is None:
        st.caption("No file? The demo datasets below (product reviews, prompts with answers, short documents) "
                   "are ready to use on every page.")
    else:
        with user_errors():
            raw = _raw(upload)
            st.caption(f"**{plain(upload.name)}**: {len(raw)} rows, {len(raw.columns)} columns")
            guess = data.guess_roles(raw)
            options = [NONE] + list(raw.columns)
            st.markdown("**Column roles**: which column holds what (guessed from the names; change as needed).")
            role_cols = st.columns(len(data.ROLES))
            roles = {}
            for col, role in zip(role_cols, data.ROLES):
                default = guess.get(role, NONE)
                choice = col.selectbox(role, options, index=options.index(default), key=f"ds_role_{role}_{upload.file_id}")
                if choice != NONE:
                    roles[role] = choice

            with st.expander("Cleaning and split", expanded=True):
                c1, c2, c3, c4 = st.columns(4)
                strip = c1.checkbox("Strip whitespace", True, key="ds_strip")
                drop_empty = c2.checkbox("Drop empty rows", True, key="ds_drop_empty")
                drop_dups = c3.checkbox("Drop duplicates", True, key="ds_drop_dups")
                max_chars = c4.number_input("Cap length (characters, 0 = none)", 0, 1_000_000, 0, step=100, key="ds_max")
                s1, s2, s3 = st.columns(3)
                train = s1.slider("Train share", 0.05, 1.0, 0.8, 0.05, key="ds_train")
                validation = s2.slider("Validation share", 0.0, 0.95, 0.1, 0.05, key="ds_val")
                seed = s3.number_input("Seed", 0, 2**31 - 1, 0, key="ds_seed")
                test = round(1 - train - validation, 2)
                st.caption(f"Split: train {train:.0%} · validation {validation:.0%} · test {max(test, 0):.0%}"
                           + (" (stratified by label)" if "label" in roles else ""))
                if test < -1e-9:
                    st.warning("Train + validation exceed 100 %: lower one of them.")
            recipe = data.Recipe(strip=strip, drop_empty=drop_empty, drop_duplicates=drop_dups,
                                 max_chars=int(max_chars) or None, train=train, validation=validation, seed=int(seed))

            frame, roles, report = _prepared(upload, raw, roles, recipe)
            st.markdown("**Preview** (after cleaning and splitting)")
            st.dataframe(frame.head(50), hide_index=True, height=240)
            _profile_block(frame, report, key="upload")

            stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(upload.name).stem).strip("-._") or "dataset"
            n1, n2 = st.columns([1, 2])
            name = n1.text_input("Name", stem, key=f"ds_name_{upload.file_id}")
            description = n2.text_input("Description (optional)", key="ds_desc")
            if st.button("Save dataset", type="primary", key="ds_save"):
                info = data.import_dataset(backend.actor(), name, upload.name, upload.getvalue(), roles, recipe, description,
                                           raw=raw)
                backend.clear()
                st.session_state["ds_pick"] = info.name  # show it below
                splits = " · ".join(f"{k} {info.splits[k]}" for k in ("train", "validation", "test") if k in info.splits)
                st.success(f"Saved **{plain(info.name)}**: {info.rows} rows ({splits}), hash `{info.content_hash[:12]}`.")


if backend.actor().can("write"):
    _upload_section()
else:  # the backend refuses anyway; say so before anyone fills in a form
    st.info(f"You have read-only access here ({backend.actor().role}): you can look at datasets and use them on "
            "other pages, but not add or delete them. Ask an admin for the editor role.")

# ---------------------------------------------------------------- stored datasets
st.divider()
st.subheader("Stored datasets")
with user_errors():
    sets = backend.datasets()
    if not sets:
        st.info("No datasets in this workspace yet: upload one above.")
    else:
        table = pd.DataFrame([{
            "name": d.name, "rows": d.rows,
            "splits": " / ".join(f"{k} {d.splits.get(k, 0)}" for k in ("train", "validation", "test")),
            "roles": ", ".join(f"{r}={c}" for r, c in d.roles.items()),
            "labels": ", ".join(map(str, d.label_names or [])) or "—",
            "hash": d.content_hash[:12], "file": d.source_file,
            "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(d.created_at)),
        } for d in sets])
        st.dataframe(table, hide_index=True)
        names = [d.name for d in sets]
        wanted = st.query_params.get("dataset")
        if wanted is not None and wanted not in names:
            st.warning(f"No dataset {plain(repr(wanted))} here: it was deleted, or it is in a workspace you "
                       "cannot see.", icon=":material/link_off:")
        url_choice("dataset", "ds_pick", names)  # a permalink (?dataset=NAME) opens that dataset
        keep_valid("ds_pick", names)  # a deleted dataset's name is not left in the browser's box
        pick = st.selectbox("Look at", names, key="ds_pick")
        info = next(d for d in sets if d.name == pick)
        if wanted is not None and wanted in names and wanted != info.name:
            st.query_params["dataset"] = info.name  # the address follows the choice: it is the permalink
        if info.description:
            st.caption(plain(info.description))
        show_permalink(permalink("views/data.py", dataset=info.name))
        stored = backend.dataset_frame(info.name, info.fingerprint)
        tab_rows, tab_profile, tab_recipe = st.tabs(["Rows", "Profile", "Recipe and hash"])
        with tab_rows:
            split = st.radio("Split", ["all", "train", "validation", "test"], horizontal=True, key="ds_split")
            shown = stored if split == "all" else stored[stored["split"] == split]
            st.dataframe(shown.head(200), hide_index=True, height=300)
            st.caption(f"{len(shown)} rows" + (" (first 200 shown)" if len(shown) > 200 else ""))
        with tab_profile:
            _profile_block(stored, key=f"stored-{info.name}")
        with tab_recipe:
            st.json({"content_hash": info.content_hash, "fingerprint": info.fingerprint, "roles": info.roles,
                     "recipe": info.recipe, "cleaning": info.report, "source_file": info.source_file,
                     "label_names": info.label_names})
        if info.workspace != backend.actor().workspace:
            st.caption("A demo dataset LLM Lab ships: every workspace can use it, read-only.")
        else:
            with st.expander(f"Delete {plain(info.name)}"):
                sure = st.checkbox(f"Yes, delete {plain(info.name)} and its files", key=f"ds_sure_{info.name}")
                if st.button("Delete", disabled=not sure, key=f"ds_delete_{info.name}"):
                    data.delete(backend.actor(), info.name)
                    backend.clear()
                    if st.query_params.get("dataset") == info.name:
                        del st.query_params["dataset"]
                    st.toast(f"Deleted {plain(info.name)}")
                    st.rerun()
