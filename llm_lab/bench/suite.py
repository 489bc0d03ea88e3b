"""A benchmark suite is a YAML file: a name, a version and a list of declared tasks.

    name: my-suite
    version: 1
    tasks:
      - name: sentiment            # unique in the suite
        type: classification       # classification | language_modeling | generation | multiple_choice | speed
                                   # | invariance | directional | lm_eval
        dataset: demo-reviews      # a dataset in the store (demo-* are built in)
        split: test                # optional: one split, or `all` for every row; default the test split
                                   # (every row when the dataset has none; a speed task: every row)
        columns: {text: text, label: label}   # task role -> dataset column
        prompt: "Review: {text}"   # optional template over the task roles
        metrics: [accuracy, f1]
        limit: 200                 # optional: first N rows (in id order)
        slices: [{column: label}, {length: [50, 200]}]   # optional: groups to cut results by (bench/slices.py)
        contamination: my-train-set  # optional: check the scored rows against this dataset (contamination_split,
                                     # contamination_threshold, contamination_n); a model LLM Lab trained is
                                     # always checked against its own training rows

A generation task sends each prompt through a chat model's chat template (as one user turn), like Compare and
`serve`'s /v1/chat/completions; a model without one gets the prompt as it is:

        chat: false                # optional: the raw prompt even to a chat model (default true)
        system: "Answer in one word."  # optional: the system turn ("" : the template's own default)

Robustness (CheckList-style) tasks of a classifier, deterministic under `seed` (bench/perturb.py):

      - name: robust
        type: invariance           # the prediction should not change: flip rate per perturbation
        dataset: demo-reviews
        perturbations: [typo, casing, {find: good, replace: great}]   # default: every built-in kind
      - name: moves
        type: directional          # the expected label's probability should rise
        dataset: demo-reviews
        directional: [{append: " I hated it.", expect: negative}]

An lm-evaluation-harness task (bench/tasks/lm_eval_task.py) names a task of lm-eval's catalogue or a task YAML
(stored in the workspace's lm-eval folder, or its text), instead of a dataset:

      - name: arc
        type: lm_eval
        task: arc_easy             # or  yaml: my_task.yaml
        num_fewshot: 0             # optional: lm-eval's few-shot count (default: the task's own)
        limit: 100                 # optional: the first N documents
        seed: 0                    # optional: lm-eval's seeds

Parsing keeps each node's line, so an invalid file gets a message naming the line and the field.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import audit
from .. import capabilities as caps
from ..access import DEFAULT_WORKSPACE, Actor
from ..errors import LabError

BUILTIN_DIR = Path(__file__).parent / "suites"


@dataclass(frozen=True)
class TaskType:
    """What a task type needs and computes."""

    name: str
    roles_needed: tuple[str, ...]       # dataset roles it needs
    optional: tuple[str, ...]           # roles it may use
    metrics: tuple[str, ...]            # metrics it can compute
    default_metrics: tuple[str, ...]    # metrics when the task names none
    headline: str                       # the headline metric when the task's metrics do not pick one
    model_needs: caps.Needs             # what it needs from a model (llm_lab.capabilities decides)

    @property
    def roles(self) -> tuple[str, ...]:
        return self.roles_needed + self.optional


_CLASSIFICATION_METRICS = ("accuracy", "f1", "precision", "recall", "roc_auc", "confusion_matrix")
TASK_TYPES = {t.name: t for t in (
    TaskType("classification", ("text", "label"), ("text_pair",), _CLASSIFICATION_METRICS, _CLASSIFICATION_METRICS,
             "accuracy", caps.needs("A classification task", caps.CLASSIFIER, hint="Score a causal LM with a "
                                    "multiple_choice task, or fine-tune a classifier first.")),
    TaskType("language_modeling", ("text",), (), ("perplexity",), ("perplexity",), "perplexity",
             caps.needs("A language_modeling task", caps.SCORES_TEXT, endpoint_ok=True)),
    TaskType("generation", ("prompt", "reference"), (), ("exact_match", "bleu", "chrf", "rouge"),
             ("exact_match", "chrf", "rouge"), "exact_match", caps.needs("A generation task", caps.GENERATES_TEXT,
                                                     endpoint_ok=True)),  # endpoint models too
    TaskType("multiple_choice", ("text", "label"), ("choices",), ("accuracy", "f1"), ("accuracy", "f1"), "accuracy",
             caps.needs("A multiple_choice task", caps.SCORES_TEXT, endpoint_ok=True)),
    TaskType("speed", ("text",), (), (), (), "examples_per_s", caps.needs("A speed task")),
    TaskType("invariance", ("text",), ("label", "text_pair"), (), (), "flip_rate",
             caps.needs("An invariance task", caps.CLASSIFIER, hint="It perturbs a classifier's inputs; fine-tune a "
                                                                    "classifier first.")),
    TaskType("directional", ("text",), ("label", "text_pair"), (), (), "failure_rate",
             caps.needs("A directional task", caps.CLASSIFIER, hint="It edits a classifier's inputs; fine-tune a "
                                                                    "classifier first.")),
    # lm-eval's task decides its metrics and requests; the runner asks for scoring when it has loglikelihood ones
    TaskType("lm_eval", (), (), (), (), "accuracy", caps.needs("An lm_eval task", caps.GENERATES_TEXT,
                                                                endpoint_ok=True)),
)}
# Fields added after results were first stored: left out of a task's definition (its hash, the cache key) while
# they hold these defaults, so results stored before they existed keep their keys.
LATER_FIELDS = {"perturbations": [], "directional": [], "slices": [], "contamination": None,
                "contamination_split": None, "contamination_threshold": None, "contamination_n": None,
                "chat": True, "system": "", "task": None, "yaml": None, "num_fewshot": None}
LM_EVAL_FIELDS = ("task", "yaml", "num_fewshot")  # an lm_eval task's own fields (bench/tasks/lm_eval_task.py)
CHAT_FIELDS = ("chat", "system")  # a generation task's prompts and the model's chat template (inference/chat.py)
TASK_FIELDS = {"name", "type", "dataset", "split", "columns", "prompt", "metrics", "limit", "max_length", "stride",
               "batch_size", "generation", "choices", "choices_sep", "label_map", "seed", "description",
               "repeats"} | set(LATER_FIELDS)
ROBUSTNESS_TYPES = ("invariance", "directional")
SUITE_FIELDS = {"name", "version", "description", "tasks"}


class SuiteError(LabError):
    pass


@dataclass
class TaskSpec:
    name: str
    type: str
    dataset: str
    columns: dict = field(default_factory=dict)
    split: str | None = None
    prompt: str | None = None
    metrics: list = field(default_factory=list)
    limit: int | None = None
    max_length: int | None = None
    stride: int | None = None
    batch_size: int | None = None
    generation: dict = field(default_factory=dict)
    choices: list | None = None
    choices_sep: str = "|"
    label_map: dict = field(default_factory=dict)
    seed: int = 0
    description: str = ""
    repeats: int = 3
    perturbations: list = field(default_factory=list)   # invariance: built-in kinds and/or find/regex templates
    directional: list = field(default_factory=list)     # directional: templates with the label they `expect`
    slices: list = field(default_factory=list)          # slice definitions (bench/slices.py)
    contamination: str | None = None                   # a dataset to check the scored rows against
    contamination_split: str | None = None
    contamination_threshold: float | None = None        # None: contamination.DEFAULT_THRESHOLD
    contamination_n: int | None = None                  # None: contamination.DEFAULT_N
    chat: bool = True                                   # generation: prompts go through a chat model's template
    system: str = ""                                    # generation: the system turn ("": the template's default)
    task: str | None = None                             # lm_eval: a task (or group) of lm-eval's catalogue
    yaml: str | None = None                             # lm_eval: a task YAML (a stored file's name, or its text)
    num_fewshot: int | None = None                      # lm_eval: few-shot examples (None: the task's own)
    line: int = 0

    @property
    def headline(self) -> str:
        return TASK_TYPES[self.type].headline

    @property
    def split_shown(self) -> str:
        """The split as a suite table shows it: the named one, or what is scored without one."""
        if self.split:
            return self.split
        if self.type == "lm_eval":
            return "the lm-eval task's own"
        return "all (speed)" if self.type == "speed" else "test (default; all rows if none)"

    def definition(self) -> dict:
        out = asdict(self)
        out.pop("line")
        out.pop("description")
        for name, default in LATER_FIELDS.items():
            if out[name] == default:
                out.pop(name)
        return out

    def definition_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.definition(), sort_keys=True).encode()).hexdigest()[:16]

    def column(self, role: str) -> str:
        return self.columns.get(role, role)


@dataclass
class Suite:
    name: str
    version: str
    tasks: list[TaskSpec]
    description: str = ""
    source: str = "builtin"
    text: str = ""

    def digest(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:12]


# ---------------------------------------------------------------- parsing with line numbers
def _plain(node, lines: dict, path: tuple):
    import yaml

    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out = {}
        for key_node, value_node in node.value:
            key = key_node.value
            out[key] = _plain(value_node, lines, path + (key,))
            lines[path + (key,)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_plain(item, lines, path + (i,)) for i, item in enumerate(node.value)]
    return yaml.safe_load(yaml.serialize(node)) if node.tag != "tag:yaml.org,2002:str" else node.value


MAX_DEPTH = 32  # nesting of mappings and lists; a suite needs 4 (suite, tasks, task, columns)


def max_bytes() -> int:
    """The largest suite file (setting yaml_max_kb)."""
    from .. import settings

    return int(settings.get("yaml_max_kb")) * 1024


def upload_max_mb() -> int:
    """What the page's uploader accepts, in whole MB (the browser refuses bigger files before sending them)."""
    return max(1, -(-max_bytes() // 2**20))


def _check_size(size: int, origin: str) -> None:
    limit = max_bytes()
    if size > limit:
        raise SuiteError(f"{origin} is {size / 1024:.1f} KB; a suite file may be at most {limit // 1024} KB "
                         "(setting yaml_max_kb). A suite names datasets and settings: keep the examples in a dataset.")


def _check_events(text: str, origin: str) -> None:
    """Refuse what could blow up, from the event stream, before any node or value is built: aliases (a few
    hundred bytes of nested `*refs` expand to gigabytes, the "billion laughs") and deep nesting."""
    import yaml

    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            raise SuiteError(f"{origin}, line {event.start_mark.line + 1}: aliases (*{event.anchor}) are not allowed "
                             "in suite files. Write the values out in full where the alias stands.")
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise SuiteError(f"{origin}, line {event.start_mark.line + 1}: mappings and lists nest more than "
                                 f"{MAX_DEPTH} levels deep; a suite needs four (suite, tasks, task, columns).")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def parse(text: str, source: str = "uploaded", origin: str = "the suite") -> Suite:
    """Parse and validate suite YAML; raise SuiteError naming the line and the field on any problem.

    The text is at most yaml_max_kb, and aliases are refused before anything is expanded."""
    import yaml

    if not (text or "").strip():
        raise SuiteError(f"{origin} is empty. A suite needs a name and a list of tasks.")
    _check_size(len(text.encode("utf-8", errors="replace")), origin)
    try:
        _check_events(text, origin)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        raise SuiteError(f"{origin} is not valid YAML ({where}): {getattr(exc, 'problem', exc)}.") from exc
    lines: dict = {}
    raw = _plain(root, lines, ()) if root is not None else None
    if not isinstance(raw, dict):
        raise SuiteError(f"{origin}, line 1: the top level must be a mapping with `name` and `tasks`.")

    def fail(path: tuple, message: str):
        line = lines.get(path) or lines.get(path[:-1]) or 1
        field_name = ".".join(str(p) for p in path) or "(top level)"
        raise SuiteError(f"{origin}, line {line}, field `{field_name}`: {message}")

    for key in raw:
        if key not in SUITE_FIELDS:
            fail((key,), f"unknown field; a suite has {', '.join(sorted(SUITE_FIELDS))}.")
    name = raw.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}", name):
        fail(("name",), "a suite needs a name of letters, digits, '.', '_' or '-'.")
    tasks = raw.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        fail(("tasks",), "`tasks` must be a non-empty list of tasks.")
    specs, seen = [], set()
    for i, task in enumerate(tasks):
        specs.append(_task(task, i, fail, seen))
    return Suite(name, str(raw.get("version", 1)), specs, str(raw.get("description", "")), source, text)


def _task(task, i: int, fail, seen: set) -> TaskSpec:
    from .. import metrics

    base = ("tasks", i)
    if not isinstance(task, dict):
        fail(base, "each task must be a mapping with name, type, dataset, ...")
    for key in task:
        if key not in TASK_FIELDS:
            fail(base + (key,), f"unknown task field; task fields are {', '.join(sorted(TASK_FIELDS))}.")
    if task.get("type") == "lm_eval":
        return _lm_eval_task(task, base, fail, seen)
    for key in LM_EVAL_FIELDS:
        if key in task:
            fail(base + (key,), f"`{key}` belongs to an lm_eval task.")
    for key in ("name", "type", "dataset"):
        if not isinstance(task.get(key), str) or not task[key].strip():
            fail(base + (key,), f"every task needs a `{key}` (text).")
    if task["name"] in seen:
        fail(base + ("name",), f"task name {task['name']!r} is used twice; names must be unique.")
    seen.add(task["name"])
    if task["type"] not in TASK_TYPES:
        fail(base + ("type",), f"unknown task type {task['type']!r}; use one of {', '.join(TASK_TYPES)}.")
    task_type = TASK_TYPES[task["type"]]
    needs, optional, allowed, default_metrics = task_type.roles_needed, task_type.optional, task_type.metrics, task_type.default_metrics
    columns = task.get("columns", {}) or {}
    if not isinstance(columns, dict) or not all(isinstance(v, str) for v in columns.values()):
        fail(base + ("columns",), "`columns` maps task roles to dataset columns, e.g. {text: text, label: label}.")
    for role in columns:
        if role not in needs + optional:
            fail(base + ("columns", role), f"role {role!r} is not used by a {task['type']} task; "
                                          f"it uses {', '.join(needs + optional)}.")
    metric_list = task.get("metrics", list(default_metrics))
    if not isinstance(metric_list, list):
        fail(base + ("metrics",), "`metrics` must be a list, e.g. [accuracy, f1].")
    for j, m in enumerate(metric_list):
        try:
            key = metrics.canonical(str(m))
        except LabError:
            key = None
        if key not in allowed:
            nothing = ("none (speed tasks measure time)" if task["type"] == "speed" else
                       f"none ({_a(task['type'])} task reports {task_type.headline} and its parts)")
            fail(base + ("metrics", j), f"metric {m!r} does not apply to {_a(task['type'])} task; "
                                        f"choose from {', '.join(allowed) or nothing}.")
    for key in ("limit", "max_length", "stride", "batch_size", "repeats"):
        value = task.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            fail(base + (key,), f"`{key}` must be a whole number of at least 1.")
    prompt = task.get("prompt")
    if prompt is not None:
        if not isinstance(prompt, str):
            fail(base + ("prompt",), "`prompt` must be text with {role} placeholders.")
        fields = set(re.findall(r"{(\w+)}", prompt))
        unknown = fields - set(needs + optional)
        if unknown:
            fail(base + ("prompt",), f"placeholder(s) {', '.join('{' + f + '}' for f in sorted(unknown))} are not "
                                     f"roles of this task ({', '.join(needs)}).")
    gen = task.get("generation", {}) or {}
    if not isinstance(gen, dict):
        fail(base + ("generation",), "`generation` must be a mapping such as {max_new_tokens: 32}.")
    if gen:
        from ..generation import GenerationSettings

        known = set(GenerationSettings.__dataclass_fields__)
        for key in gen:
            if key in CHAT_FIELDS:
                fail(base + ("generation", key), f"`{key}` is a field of the task itself: write `{key}: ...` "
                                                 "beside `generation`, not inside it.")
            if key not in known:
                fail(base + ("generation", key), f"unknown generation setting; use {', '.join(sorted(known))}.")
        try:
            GenerationSettings.from_dict(gen)
        except LabError as exc:
            fail(base + ("generation",), str(exc))
    split = task.get("split")
    if split is not None and (not isinstance(split, str) or not split.strip()):
        fail(base + ("split",), "`split` names one split of the dataset (train, validation, test) or `all`.")
    choices = task.get("choices")
    if task["type"] == "multiple_choice":
        if choices is None and "choices" not in columns:
            fail(base + ("choices",), "a multiple_choice task needs `choices: [a, b, ...]` or a `choices` column.")
        if choices is not None and (not isinstance(choices, list) or len(choices) < 2):
            fail(base + ("choices",), "`choices` must be a list of at least two options.")
    label_map = task.get("label_map", {}) or {}
    if not isinstance(label_map, dict):
        fail(base + ("label_map",), "`label_map` maps dataset labels to model labels, e.g. {pos: POSITIVE}.")
    later = _later_fields(task, base, fail)
    return TaskSpec(
        name=task["name"], type=task["type"], dataset=task["dataset"], columns={str(k): v for k, v in columns.items()},
        split=task.get("split"), prompt=prompt, metrics=[metrics.canonical(str(m)) for m in metric_list],
        limit=task.get("limit"), max_length=task.get("max_length"), stride=task.get("stride"),
        batch_size=task.get("batch_size"), generation=dict(gen), choices=[str(c) for c in choices] if choices else None,
        choices_sep=str(task.get("choices_sep", "|")), label_map={str(k): str(v) for k, v in label_map.items()},
        seed=int(task.get("seed", 0)), description=str(task.get("description", "")), repeats=int(task.get("repeats", 3)),
        line=0, **later)


def _lm_eval_task(task: dict, base: tuple, fail, seen: set) -> TaskSpec:
    """An lm_eval task: `task` (a catalogue name) or `yaml`, with num_fewshot, limit, seed and description; the
    fields of LLM Lab's own task types (dataset, columns, metrics, ...) do not apply to it."""
    allowed = {"name", "type", "description", "limit", "seed", "batch_size"} | set(LM_EVAL_FIELDS)
    for key in task:
        if key not in allowed:
            fail(base + (key,), f"an lm_eval task takes {', '.join(sorted(allowed))}; lm-eval's task decides "
                                "the data, prompts and metrics.")
    if not isinstance(task.get("name"), str) or not task["name"].strip():
        fail(base + ("name",), "every task needs a `name` (text).")
    if task["name"] in seen:
        fail(base + ("name",), f"task name {task['name']!r} is used twice; names must be unique.")
    seen.add(task["name"])
    if ("task" in task) == ("yaml" in task):
        fail(base + ("task",), "an lm_eval task names either `task: NAME` (lm-eval's catalogue) or `yaml: ...` "
                               "(an uploaded task YAML), one of the two.")
    for key in ("task", "yaml"):
        if key in task and (not isinstance(task[key], str) or not task[key].strip()):
            fail(base + (key,), f"`{key}` is text: " + ("a catalogue task name such as arc_easy." if key == "task"
                                                        else "the file name of an uploaded YAML, or its text."))
    for key in ("limit", "batch_size"):
        value = task.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            fail(base + (key,), f"`{key}` must be a whole number of at least 1.")
    shots = task.get("num_fewshot")
    if shots is not None and (not isinstance(shots, int) or isinstance(shots, bool) or shots < 0):
        fail(base + ("num_fewshot",), "`num_fewshot` is a whole number of at least 0.")
    seed = task.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        fail(base + ("seed",), "`seed` is a whole number.")
    return TaskSpec(name=task["name"], type="lm_eval", dataset="", limit=task.get("limit"), seed=seed,
                    batch_size=task.get("batch_size"), description=str(task.get("description", "")),
                    task=task.get("task"), yaml=task.get("yaml"), num_fewshot=shots, metrics=[])


def _a(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def _chat_fields(task: dict, base: tuple, fail) -> dict:
    """`chat` (true: a chat model reads each prompt through its chat template; false: the raw prompt) and
    `system` (the system turn), checked; they belong to a generation task."""
    out = {}
    for key in CHAT_FIELDS:
        if key not in task:
            continue
        if task["type"] != "generation":
            fail(base + (key,), f"`{key}` belongs to a generation task, not {_a(task['type'])} task.")
        value = task[key]
        if key == "chat" and not isinstance(value, bool):
            fail(base + (key,), "`chat` is true (apply the model's chat template when it has one) or false "
                                "(send the prompts as they are).")
        if key == "system" and not isinstance(value, str):
            fail(base + (key,), "`system` is the text of the system turn, e.g. \"Answer in one word.\".")
        out[key] = value
    return out


def _later_fields(task: dict, base: tuple, fail) -> dict:
    """The robustness, slice and contamination fields, checked; each problem names its field."""
    from . import perturb, slices

    kind = task["type"]
    out = {}
    for key in ("perturbations", "directional"):
        if key in task and kind != key.replace("perturbations", "invariance"):
            fail(base + (key,), f"`{key}` belongs to {_a(key.replace('perturbations', 'invariance'))} task, not "
                                f"{_a(kind)} task.")
    items = task.get("perturbations")
    if items is not None:
        if not isinstance(items, list) or not items:
            fail(base + ("perturbations",), f"`perturbations` is a non-empty list of built-in kinds "
                                            f"({', '.join(perturb.KINDS)}) and/or templates such as "
                                            "{find: good, replace: great}.")
        for j, item in enumerate(items):
            if isinstance(item, str):
                if item not in perturb.KINDS:
                    fail(base + ("perturbations", j), f"unknown perturbation {item!r}; built-in kinds are "
                                                      f"{', '.join(perturb.KINDS)}.")
                continue
            try:
                perturb.check_spec(item)
            except perturb.PerturbError as exc:
                fail(base + ("perturbations", j), str(exc))
        seen = {}
        for j, item in enumerate(items):  # rows are paired by (example, kind): each kind once
            name = item if isinstance(item, str) else (perturb.Template.from_spec(item).name
                                                       if isinstance(item, dict) else None)
            if name is not None and name in seen:
                fail(base + ("perturbations", j), f"the perturbation {name!r} is listed twice (also item "
                                                  f"{seen[name] + 1}); give a template its own `name`.")
            seen.setdefault(name, j)
        out["perturbations"] = [i if isinstance(i, str) else dict(i) for i in items]
    if kind == "directional":
        items = task.get("directional")
        if not isinstance(items, list) or not items:
            fail(base + ("directional",), "a directional task needs `directional: [{append: \" I hated it.\", "
                                          "expect: negative}, ...]` (append, prepend, find/replace or regex/replace, "
                                          "and the label the edit should make more likely).")
        for j, item in enumerate(items):
            try:
                perturb.check_spec(item, extra_keys={"expect"})
            except perturb.PerturbError as exc:
                fail(base + ("directional", j), str(exc))
            if not isinstance(item.get("expect"), (str, int)) or isinstance(item.get("expect"), bool) \
                    or str(item["expect"]) == "":
                fail(base + ("directional", j), "each directional template needs `expect`: the label it should "
                                                "make more likely.")
        out["directional"] = [dict(i, expect=str(i["expect"])) for i in items]
    out.update(_chat_fields(task, base, fail))
    if task.get("slices") is not None:
        try:
            slices.check(task["slices"])
        except slices.SliceError as exc:
            fail(base + ("slices",), str(exc))
        out["slices"] = [dict(s) for s in task["slices"]]  # as written: the definition hashes what the user wrote
    for key in ("contamination", "contamination_split"):
        value = task.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            fail(base + (key,), f"`{key}` names a " + ("dataset" if key == "contamination" else "split") + ".")
        if value is not None:
            out[key] = value
    if task.get("contamination_split") is not None and task.get("contamination") is None:
        fail(base + ("contamination_split",), "`contamination_split` goes with `contamination: DATASET`.")
    threshold = task.get("contamination_threshold")
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
            fail(base + ("contamination_threshold",), "`contamination_threshold` is a share in (0, 1], e.g. 0.5: "
                                                      "a row is a near duplicate when that share of its n-grams "
                                                      "occur in the training data.")
        out["contamination_threshold"] = float(threshold)
    n = task.get("contamination_n")
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 50:
            fail(base + ("contamination_n",), "`contamination_n` is the n-gram size in words, a whole number "
                                              "from 1 to 50 (default 8).")
        out["contamination_n"] = n
    return out


# ---------------------------------------------------------------- finding suites
def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def user_dir(workspace: str = DEFAULT_WORKSPACE) -> Path:
    """Where a workspace's saved suites live: LLM_LAB_HOME/suites for the default workspace (as before
    workspaces existed), LLM_LAB_HOME/suites/@<workspace> for the others."""
    from .. import paths

    if workspace == DEFAULT_WORKSPACE:
        return paths.subdir("suites")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,99}", workspace):
        raise SuiteError(f"Workspace name {workspace!r} cannot hold saved suites.")
    return paths.subdir("suites", f"@{workspace}")


def list_suites(actor: Actor) -> list[dict]:
    """Built-in suites and the suites saved in the workspaces the actor sees: [{name, source, path}]."""
    actor.require("read", "read suites")
    out = [{"name": p.stem, "source": "builtin", "path": str(p)} for p in sorted(BUILTIN_DIR.glob("*.yaml"))]
    for workspace in actor.workspaces:
        out += [{"name": p.stem, "source": "saved", "path": str(p)} for p in sorted(user_dir(workspace).glob("*.yaml"))]
    return out


def load(actor: Actor, name_or_path: str) -> Suite:
    """A built-in or saved suite by name, or a YAML file by path."""
    available = list_suites(actor)
    for item in available:
        if item["name"] == name_or_path:
            origin = f"suite {item['name']!r}"
            return parse(_read(Path(item["path"]), origin), item["source"], origin)
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return parse(_read(path, str(path)), "file", str(path))
    names = ", ".join(s["name"] for s in available)
    raise SuiteError(f"No suite named {name_or_path!r}. Suites here: {names}; or give the path of a YAML file.")


def _read(path: Path, origin: str) -> str:
    """A suite file's text, refused by its size before it is read."""
    _check_size(path.stat().st_size, origin)
    return path.read_text()


def save(actor: Actor, text: str) -> Suite:
    """Validate an uploaded or built suite and keep it in the actor's workspace
    (LLM_LAB_HOME/suites/<name>.yaml in the default workspace)."""
    from .. import store

    actor.require("write", "save suites")
    suite = parse(text, "saved")
    if suite.name in builtin_names():
        raise SuiteError(f"{suite.name!r} is the name of a built-in suite; give yours another name.")
    folder = user_dir(actor.workspace)
    owner_file = folder / f".{suite.name}.owner"  # who saved it first: in a team, only they (or an admin) replace it
    owner = owner_file.read_text().strip() if owner_file.exists() else None
    if owner and owner != actor.user and not actor.can("admin"):
        raise SuiteError(f"A suite named {suite.name!r} was saved here by {owner}; only they or an admin can "
                         "replace it. Give yours another name.")
    store.atomic_write_bytes(folder / f"{suite.name}.yaml", text.encode())
    if not owner:
        store.atomic_write_bytes(owner_file, actor.user.encode())
    audit.record(actor, "suite.save", suite.name, {"version": suite.version, "replaced": owner is not None})
    suite.source = "saved"
    return suite


def to_yaml(name: str, tasks: list[dict], version: int = 1, description: str = "") -> str:
    """YAML text for a suite built in the page (validated by `parse` before use)."""
    import yaml

    body = {"name": name, "version": version, "description": description, "tasks": tasks}
    return yaml.safe_dump(body, sort_keys=False, allow_unicode=True)
