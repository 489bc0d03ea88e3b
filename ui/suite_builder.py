"""The Benchmarks page's suite builder: pick a dataset, its split(s) and which column plays each role, and see
before the run how many examples each task scores and what that many can tell.

The dataset box starts on a dataset that has the roles the task type needs (a label column for classification),
the split box on its test split, and each role on the column of the same name. A stored dataset's columns are
the roles it was imported with (llm_lab.data), which a task's `columns` can map to other roles (the runner reads
`spec.column(role)`). Several splits make one task per split.

An lm_eval task names a task of lm-evaluation-harness's catalogue (searchable, cached) or a task YAML uploaded
with its data files into the workspace's lm-eval folder, plus the few-shot count and a limit.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import streamlit as st

from llm_lab import data
from llm_lab.bench import suite as suites
from llm_lab.bench.suite import TASK_TYPES
from llm_lab.bench.tasks import lm_eval_task
from llm_lab.errors import LabError
from llm_lab.stats import power
from ui import backend
from ui.common import plain

ALL_ROWS = "all rows"                  # the split box's choice for every row (`split: all` in the YAML)
SPLIT_ORDER = ("test", "validation", "train")
PROPORTION_HEADLINES = {"accuracy", "exact_match"}   # right/wrong per example: the paired-accuracy MDE applies
NO_COLUMN = "(none)"
LM_EVAL = "lm_eval"                    # an lm-evaluation-harness task: a catalogue name or an uploaded YAML
CATALOGUE, UPLOADED = "catalogue", "uploaded YAML"
# task types that need fields the builder does not draw: written in YAML (Upload YAML)
YAML_ONLY = {"directional": "its templates (`directional: [{append: ..., expect: ...}]`)"}


# ---------------------------------------------------------------- choices (no widgets)
def columns_of(info) -> list[str]:
    """The columns a stored dataset has besides id and split: the roles it was imported with."""
    return [role for role in data.ROLES if info.roles.get(role)]


def fits(info, task_type: str) -> bool:
    """Whether the dataset has a column for every role the task type needs."""
    return all(role in columns_of(info) for role in TASK_TYPES[task_type].roles_needed)


def default_dataset(infos: list, task_type: str) -> str | None:
    """The first dataset that has what the task type needs (a labelled one for classification)."""
    return next((d.name for d in infos if fits(d, task_type)), None)


def split_options(info) -> list[str]:
    """Every split the dataset has (test first), then "all rows"."""
    def order(split: str):
        return SPLIT_ORDER.index(split) if split in SPLIT_ORDER else len(SPLIT_ORDER), split

    return sorted(info.splits or {}, key=order) + [ALL_ROWS]


def default_splits(info) -> list[str]:
    """The test split, so rows that trained a model do not score it; every row when there is no test split."""
    return ["test"] if "test" in (info.splits or {}) else [ALL_ROWS]


def split_rows(info, split: str) -> int:
    return int(info.rows) if split == ALL_ROWS else int((info.splits or {}).get(split, 0))


def examples(info, split: str, limit: int = 0, run_cap: int = 0) -> int:
    """How many examples a task on this split scores: its rows, then the task's limit, then the run's cap."""
    n = split_rows(info, split)
    for cap in (limit, run_cap):
        if cap:
            n = min(n, int(cap))
    return n


def rows_label(split: str) -> str:
    return "rows (all splits)" if split == ALL_ROWS else f"{split} rows"


def default_column(role: str, columns: list[str], required: bool):
    """The column named like the role; for a required role with none, None (the person must choose)."""
    if role in columns:
        return role
    return None if required else NO_COLUMN


def task_name(dataset: str, task_type: str, split: str, taken: set) -> str:
    base = f"{dataset}-{task_type}-{'all' if split == ALL_ROWS else split}"
    name, k = base, 2
    while name in taken:
        name, k = f"{base}-{k}", k + 1
    return name


def buildable_types() -> list[str]:
    return [t for t in TASK_TYPES if t not in YAML_ONLY]


def right_or_wrong(task_type: str) -> bool:
    """Whether the task type's headline is a share of right answers (the paired-accuracy MDE applies)."""
    return TASK_TYPES[task_type].headline in PROPORTION_HEADLINES


def half_width_points(n: int) -> str:
    return f"±{power.points(power.interval_half_width(n))} points"


def planning_text(task_type: str, n: int, split: str) -> str:
    """What n examples of this split can tell, before the run."""
    if task_type == "speed":
        return f"{n:,} {rows_label(split)} will be timed."
    if right_or_wrong(task_type):
        return power.planning_sentence(n, rows_label(split))
    return (f"{n:,} {rows_label(split)} will be scored; {TASK_TYPES[task_type].headline} comes with its 95% "
            "interval over them, wide when they are few.")


def new_tasks(*, dataset: str, task_type: str, splits: list[str], columns: dict, metrics: list, limit: int,
              prompt: str, choices: str, taken: set) -> list[dict]:
    """One task per picked split, as suite YAML mappings."""
    out = []
    for split in splits:
        task = {"name": task_name(dataset, task_type, split, taken), "type": task_type, "dataset": dataset,
                "split": "all" if split == ALL_ROWS else split, "columns": dict(columns)}
        taken.add(task["name"])
        if metrics:
            task["metrics"] = list(metrics)
        if limit:
            task["limit"] = int(limit)
        if prompt:
            task["prompt"] = prompt
        if task_type == "multiple_choice" and choices.strip():
            task["choices"] = [c.strip() for c in choices.split(",") if c.strip()]
        out.append(task)
    return out


# ---------------------------------------------------------------- widgets
def _pick_dataset(infos: list, task_type: str, container) -> str:
    """The dataset box. It starts on a dataset that fits the task type, and moves to one when the task type
    changes to one the picked dataset cannot serve; a dataset the person picks otherwise stays."""
    names = [d.name for d in infos]
    by_name = {d.name: d for d in infos}
    current = st.session_state.get("b_dataset")
    type_changed = st.session_state.get("_b_type_seen") not in (None, task_type)
    st.session_state["_b_type_seen"] = task_type
    if current not in names or (type_changed and not fits(by_name[current], task_type)):
        st.session_state["b_dataset"] = default_dataset(infos, task_type) or names[0]

    def label(name: str) -> str:
        missing = [r for r in TASK_TYPES[task_type].roles_needed if r not in columns_of(by_name[name])]
        return name if not missing else f"{name} (no {', '.join(missing)} column)"

    return container.selectbox("Dataset", names, key="b_dataset", format_func=label,
                               help="Datasets with the columns this task type needs come first by default.")


def _pick_columns(info, task_type: str) -> tuple[dict, list[str]]:
    """Which dataset column plays each role: ({role: column}, roles still unmapped)."""
    columns = columns_of(info)
    kind = TASK_TYPES[task_type]
    roles = [(r, True) for r in kind.roles_needed] + [(r, False) for r in kind.optional if r in data.ROLES]
    mapped, unmapped = {}, []
    for (role, required), slot in zip(roles, st.columns(max(len(roles), 1))):
        options = columns if required else [NO_COLUMN] + columns
        default = default_column(role, columns, required)
        choice = slot.selectbox(f"Column for {role}", options, key=f"b_col:{info.name}:{role}",
                                index=options.index(default) if default is not None else None,
                                placeholder="choose a column",
                                help=f"The dataset column the task reads as `{role}`"
                                     + ("" if required else " (optional)") + ".")
        if choice is None:
            unmapped.append(role)
        elif choice != NO_COLUMN:
            mapped[role] = choice
    return mapped, unmapped


def _explain(info, task_type: str, splits: list[str], limit: int, run_cap: int) -> None:
    """Before the run: per picked split, the examples a task scores and what that many can tell."""
    for split in splits:
        n = examples(info, split, limit, run_cap)
        st.info(plain(f"{info.name}: {planning_text(task_type, n, split)}"), icon=":material/calculate:")
        if task_type != "speed" and 0 < n < power.SMALL_N:
            st.warning(plain(_small_n_warning(info, split, n)), icon=":material/warning:")
        elif n == 0:
            st.warning(plain(f"{info.name} has no {rows_label(split)}: a task on it would have nothing to score."),
                       icon=":material/warning:")
    if "train" in splits or (ALL_ROWS in splits and len(info.splits or {}) > 1):
        st.caption(plain("The train split (also part of all rows) holds the rows a model may have been fine-tuned "
                         "on: a score on them says little about new text."))
    if "test" not in (info.splits or {}):
        st.caption(plain(f"{info.name} has no test split, so by default every row is scored."))


def _small_n_warning(info, split: str, n: int) -> str:
    where = "all rows" if split == ALL_ROWS else f"the {split} split"
    remedy = ("Raise the limit (or the run's Examples per task)." if n < split_rows(info, split)
              else "Use a dataset with more held-out rows.")
    return (f"Only {n} examples in {where} of {info.name}: intervals will be wide (one model's accuracy "
            f"{half_width_points(n)}), and only large differences between models can be told apart. {remedy}")


def _detectable(n: int | None, task_type: str) -> tuple[str, str]:
    """The table's "smallest detectable difference" and "one model ±" for n examples."""
    if not n or not right_or_wrong(task_type):
        return "—", "—"
    mde = power.planning_mde(n)
    return ("none reliably" if mde >= 1 else f"≈ {power.points(mde)} points"), half_width_points(n)


def _built_table(tasks: list[dict], infos: list, run_cap: int) -> pd.DataFrame:
    """The tasks built so far, each with its examples and the smallest difference it could detect."""
    by_name = {d.name: d for d in infos}
    rows = []
    for t in tasks:
        if t["type"] == LM_EVAL:
            rows.append({"task": t["name"], "dataset": f"lm-eval: {t.get('task') or t.get('yaml')}",
                         "split": "the task's own", "columns": "",
                         "examples": f"first {t['limit']:,}" if t.get("limit") else "all",
                         "smallest detectable difference": "—", "one model": "—"})
            continue
        info = by_name.get(t["dataset"])
        split = ALL_ROWS if t.get("split") == "all" else t.get("split")
        n = examples(info, split, t.get("limit", 0), run_cap) if info else None
        mde, half = _detectable(n, t["type"])
        rows.append({"task": t["name"], "dataset": t["dataset"], "split": t.get("split"),
                     "columns": ", ".join(f"{r}←{c}" for r, c in t.get("columns", {}).items()),
                     "examples": "dataset not found" if n is None else f"{n:,}",
                     "smallest detectable difference": mde, "one model": half})
    return pd.DataFrame(rows)


def build() -> str | None:
    """Draw the builder; return the built suite's YAML text, or None while it has no task."""
    tasks = st.session_state.setdefault("b_built", [])
    infos = backend.datasets()
    f1, f2, f3 = st.columns(3)
    name = f1.text_input("Suite name", "my-suite", key="b_name")
    task_type = f2.selectbox("Task type", buildable_types(), key="b_type",
                             help="".join(f"A {t} task needs {what}: write it in YAML and upload it. "
                                          for t, what in YAML_ONLY.items()) or None)
    if task_type == LM_EVAL:
        _lm_eval_form(tasks, f3)
    elif not infos:
        st.info("No datasets yet: import one on the Datasets page to build a suite on it (an lm_eval task needs "
                "none).")
    else:
        _dataset_form(tasks, infos, task_type, f3)
    if not tasks:
        return None
    run_cap = int(st.session_state.get("b_limit_run") or 0)
    st.dataframe(_built_table(tasks, infos, run_cap), hide_index=True)
    suite_text = suites.to_yaml(name, tasks)
    b1, b2 = st.columns(2)
    if b2.button("Clear tasks", key="b_clear"):  # drawn before the check, so a suite that fails it can be cleared
        st.session_state["b_built"] = []
        st.rerun()
    suites.parse(suite_text, "built", "the suite you built")  # a bad suite name: the page shows why
    if b1.button("Save suite", key="b_save_built"):
        st.success(f"Saved suite {plain(repr(suites.save(backend.actor(), suite_text).name))}.")
    return suite_text


def _dataset_form(tasks: list, infos: list, task_type: str, f3) -> None:
    """A task of LLM Lab's own types: dataset, split(s), columns, metrics; "Add task" appends to `tasks`."""
    dataset = _pick_dataset(infos, task_type, f3)
    info = next(d for d in infos if d.name == dataset)
    g1, g2 = st.columns([2, 1])
    options = split_options(info)
    splits = g1.multiselect("Split(s)", options, default_splits(info), key=f"b_splits:{dataset}",
                            format_func=lambda s: f"{s} ({split_rows(info, s):,} rows)",
                            help="One task per split. The test split holds rows no model trained on.")
    limit = g2.number_input("Examples (0 = all)", 0, 100_000, 200, key="b_limit",
                            help="Score the first N rows of each split (in id order).")
    mapped, unmapped = _pick_columns(info, task_type)
    h1, h2 = st.columns(2)
    kind = TASK_TYPES[task_type]
    metric_choice = h1.multiselect("Metrics", list(kind.metrics), list(kind.default_metrics),
                                   key=f"b_metrics:{task_type}")
    prompt = h2.text_input("Prompt template (optional)", "", key="b_prompt", help="e.g. Review: {text}")
    choices = ""
    if task_type == "multiple_choice":
        choices = st.text_input("Choices (comma separated)", "", key="b_choices")
    run_cap = int(st.session_state.get("b_limit_run") or 0)  # the run's "Examples per task", drawn below
    _explain(info, task_type, splits, int(limit), run_cap)
    problem = None
    if unmapped:
        problem = (f"{dataset} has no column named {', '.join(unmapped)}: choose which of its columns "
                   f"({', '.join(columns_of(info)) or 'none'}) plays that role, or pick another dataset.")
    elif not splits:
        problem = "Pick at least one split (or all rows)."
    if problem:
        st.warning(plain(problem), icon=":material/rule:")
    if st.button("Add task", key="b_add", disabled=bool(problem),
                 help="One task per picked split." if len(splits) > 1 else None):
        tasks.extend(new_tasks(dataset=dataset, task_type=task_type, splits=splits, columns=mapped,
                               metrics=metric_choice, limit=int(limit), prompt=prompt, choices=choices,
                               taken={t["name"] for t in tasks}))


# ---------------------------------------------------------------- lm-evaluation-harness tasks
@st.cache_data(show_spinner="Reading lm-eval's task catalogue…", ttl=3600)
def lm_eval_catalogue() -> list[str]:
    """lm-eval's task, group and tag names (indexing its YAML files takes seconds: cached)."""
    return lm_eval_task.catalogue()


def lm_eval_task_spec(*, source: str, task: str | None, yaml_file: str | None, num_fewshot: int, limit: int,
                      taken: set) -> dict:
    """One lm_eval task as a suite YAML mapping (num_fewshot < 0: the task's own)."""
    base = (task if source == CATALOGUE else Path(yaml_file or "task").stem) or "lm-eval"
    name, k = f"lm-eval-{base}", 2
    while name in taken:
        name, k = f"lm-eval-{base}-{k}", k + 1
    out = {"name": name, "type": LM_EVAL}
    if source == CATALOGUE:
        out["task"] = task
    else:
        out["yaml"] = yaml_file
    if num_fewshot >= 0:
        out["num_fewshot"] = int(num_fewshot)
    if limit:
        out["limit"] = int(limit)
    return out


def _lm_eval_uploads() -> None:
    """A task YAML and its data files, kept in the workspace's lm-eval folder (what `yaml:` and `data_files` name)."""
    u1, u2 = st.columns(2)
    up = u1.file_uploader("Task YAML", type=["yaml", "yml"], key="b_lm_yaml_up",
                          help="An lm-eval task YAML: Jinja templates over the data's columns; no !function, "
                               "include or Python. Its data: `dataset_path: json` and `dataset_kwargs: "
                               "{data_files: {test: FILE}}`, FILE uploaded beside it.")
    data_up = u2.file_uploader("Data files", type=["jsonl", "json", "csv", "parquet", "txt"],
                               accept_multiple_files=True, key="b_lm_data_up")
    for item in ([up] if up is not None else []) + list(data_up or []):
        # once per content, not on every rerun: a corrected file of the same name and size is stored too
        token = hashlib.sha256(item.getvalue()).hexdigest()
        if st.session_state.get(f"_b_lm_stored:{item.name}") != token:
            lm_eval_task.store_upload(backend.actor(), item.name, item.getvalue())
            st.session_state[f"_b_lm_stored:{item.name}"] = token
            st.caption(plain(f"Stored {item.name} in your workspace's lm-eval folder."))


def _lm_eval_form(tasks: list, f3) -> None:
    """An lm-evaluation-harness task: a catalogue name or an uploaded YAML, few-shot count and limit."""
    source = f3.radio("lm-eval task from", [CATALOGUE, UPLOADED], key="b_lm_source", horizontal=True)
    task = yaml_file = None
    if source == CATALOGUE:
        names = lm_eval_catalogue()
        task = st.selectbox("lm-eval task", names, key="b_lm_task", index=None, placeholder="type to search",
                            help="A task, group or tag of lm-eval's catalogue. Tasks whose data is on the Hugging "
                                 "Face Hub need it reachable (or already downloaded).")
    else:
        _lm_eval_uploads()
        stored = [f for f in lm_eval_task.stored_files(backend.actor()) if f.endswith((".yaml", ".yml"))]
        yaml_file = st.selectbox("Stored task YAML to run", stored, key="b_lm_yaml_pick", index=None,
                                 placeholder="pick an uploaded task YAML")
        if yaml_file:  # checked now (fields, data files, nothing that runs code), not first at run time
            try:
                lm_eval_task.prepare_yaml(backend.actor(), yaml_file)
            except LabError as exc:
                st.error(plain(str(exc)), icon=":material/error:")
                yaml_file = None
    g1, g2 = st.columns(2)
    shots = g1.number_input("Few-shot examples (-1 = the task's own)", -1, 50, -1, key="b_lm_fewshot")
    limit = g2.number_input("Examples (0 = all)", 0, 100_000, 200, key="b_limit",
                            help="Score the first N documents of the task (each task of a group).")
    missing = not (task if source == CATALOGUE else yaml_file)
    if missing:
        st.warning("Pick a catalogue task." if source == CATALOGUE else "Upload and pick a task YAML.",
                   icon=":material/rule:")
    if st.button("Add task", key="b_add", disabled=missing):
        tasks.append(lm_eval_task_spec(source=source, task=task, yaml_file=yaml_file, num_fewshot=int(shots),
                                       limit=int(limit), taken={t["name"] for t in tasks}))
