"""Hugging Face model cards: README.md with YAML metadata, rendered from what LLM Lab knows of a model.

Every folder LLM Lab writes (a trained model, a variant, an exported folder) and ships (the built-ins) carries
one, so the Hub, `huggingface_hub.ModelCard` and people reading it find the same facts LLM Lab's registry holds:
licence, `library_name`, `pipeline_tag`, `base_model` (a Hub id: the Hub checks it names a model), datasets,
tags and a `model-index` of the metrics LLM Lab measured. The model-index schema has no field for an interval,
so a metric's 95% interval, its n and how it was made go into the metric's `args` (a free-form mapping the
schema allows); the body shows the same numbers as "value [low, high] n=…".

The YAML is written by `yaml.safe_dump` only, never by string formatting: a dataset name or a setting a user
typed cannot break out of its string. In the markdown body such text is escaped (`md_text`), so it is shown
as text, never as markup.

`render(CardFacts)` makes the text; `facts_from_training`, `facts_from_variant` and `facts_for_folder` gather
the facts from a training run's meta (llm_lab_training.json), a variant's (llm_lab_variant.json) or a folder's
files (for `models export`).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

PIPELINE_TAGS = {"classifier": "text-classification", "causal-lm": "text-generation", "encoder": "feature-extraction"}
TRAINING_FILE = "llm_lab_training.json"
VARIANT_FILE = "llm_lab_variant.json"
QUALITY_FILE = "llm_lab_quality.json"
CARD_FILE = "README.md"
# metric names LLM Lab records → the model-index `type` the Hub knows
METRIC_TYPES = {"accuracy": "accuracy", "f1": "f1", "loss": "loss", "perplexity": "perplexity",
                "bits_per_byte": "bits_per_byte"}


@dataclass
class Metric:
    """One measured number: its value, its 95% interval and n when LLM Lab measured them, and on what."""
    name: str
    value: float
    dataset: str = ""
    split: str = ""
    low: float | None = None
    high: float | None = None
    n: int | None = None
    method: str | None = None

    def text(self) -> str:
        from .stats.intervals import fmt

        shown = fmt(self.value, self.low, self.high, self.n, 4 if abs(self.value) < 10 else 2)
        return shown + (f" (95% {self.method})" if self.method and self.low is not None else "")


@dataclass
class CardFacts:
    name: str
    head: str                                   # classifier | causal-lm | encoder
    summary: str                                # what it is, one or two sentences
    licence: str = "unknown"                    # an SPDX-like id ("Apache-2.0"); "unknown" when nobody said
    base_model: str | None = None               # a Hub id any tool resolves; None: from scratch or a local base
    base_relation: str | None = None            # finetune | adapter | quantized | merge (the Hub's names)
    parent: str | None = None                   # LLM Lab's name of the model it was made from (body only)
    datasets: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    metrics: list[Metric] = field(default_factory=list)
    recipe: dict = field(default_factory=dict)  # training or compression settings
    intended_use: str = ""
    limitations: list[str] = field(default_factory=list)
    how_to_load: str = ""                        # markdown: the code that opens the folder without LLM Lab
    details: str = ""                            # markdown: LLM Lab's own card (results, reproduce), appended
    last_sections: str = ""                      # markdown appended as is (`models quality --card`'s section)


# ---------------------------------------------------------------- rendering
def md_text(value) -> str:
    """`value` as literal markdown text: markup characters escaped, newlines and table pipes made harmless."""
    text = str(value).replace("\r", " ").replace("\n", " ")
    return re.sub(r"([\\`*_{}\[\]<>()#+!|~])", r"\\\1", text)


def front_matter(facts: CardFacts) -> dict:
    meta = {"license": hub_licence(facts.licence), "library_name": "transformers",
            "pipeline_tag": PIPELINE_TAGS.get(facts.head, "feature-extraction")}
    if facts.base_model:
        meta["base_model"] = facts.base_model
        if facts.base_relation:
            meta["base_model_relation"] = facts.base_relation
    if facts.datasets:
        meta["datasets"] = list(dict.fromkeys(str(d) for d in facts.datasets))
    meta["tags"] = list(dict.fromkeys(["llm-lab", *facts.tags]))
    if facts.metrics:
        meta["model-index"] = [{"name": facts.name, "results": _results(facts)}]
    return meta


def _results(facts: CardFacts) -> list[dict]:
    """One model-index result per (dataset, split): the task, the dataset, its metrics (intervals in args)."""
    grouped: dict[tuple, list[Metric]] = {}
    for metric in facts.metrics:
        grouped.setdefault((metric.dataset or facts.name, metric.split), []).append(metric)
    results = []
    for (dataset, split), metrics in grouped.items():
        data = {"name": str(dataset), "type": str(dataset)}
        if split:
            data["split"] = split
        results.append({"task": {"type": PIPELINE_TAGS.get(facts.head, "feature-extraction")}, "dataset": data,
                        "metrics": [_metric_yaml(m) for m in metrics]})
    return results


def _metric_yaml(metric: Metric) -> dict:
    kind = next((t for key, t in METRIC_TYPES.items() if key in metric.name), metric.name)
    out = {"type": kind, "value": float(metric.value), "name": metric.name}
    args = {}
    if metric.low is not None and metric.high is not None:
        args.update(ci_low=float(metric.low), ci_high=float(metric.high), confidence=0.95)
        if metric.method:
            args["ci_method"] = metric.method
    if metric.n:
        args["n"] = int(metric.n)
    if args:
        out["args"] = args
    return out


def hub_licence(licence: str | None) -> str:
    """The Hub's licence id: lower case ("Apache-2.0" → "apache-2.0"); "unknown" when nobody said."""
    text = (licence or "").strip().lower()
    return text if re.fullmatch(r"[a-z0-9][a-z0-9.+-]*", text) else "unknown"


def render(facts: CardFacts) -> str:
    """README.md: YAML front matter (yaml.safe_dump) and the body."""
    import yaml

    head = yaml.safe_dump(front_matter(facts), sort_keys=False, allow_unicode=True)
    lines = [f"# {md_text(facts.name)}", "", facts.summary, "", "| | |", "|---|---|",
             f"| parent | {_code(facts.parent) + ' (its LLM Lab name)' if facts.parent else 'none'} |",
             f"| base model | {_code(facts.base_model) if facts.base_model else 'none on the Hub'} |",
             f"| licence | {md_text(facts.licence)} |"]
    if facts.labels:
        lines.append(f"| labels | {', '.join(md_text(x) for x in facts.labels)} |")
    if facts.datasets:
        lines.append(f"| data | {', '.join(_code(d) for d in facts.datasets)} |")
    lines += ["", "## Intended use", "", facts.intended_use or _default_use(facts.head), "",
              "## Limitations", ""]
    lines += [f"- {item}" for item in facts.limitations or [_default_limit()]]
    if facts.metrics:
        lines += ["", "## Metrics", "", "Measured by LLM Lab (95% intervals where it measured them).", "",
                  "| metric | data | value |", "|---|---|---|"]
        lines += [f"| {md_text(m.name)} | {md_text(m.dataset)}{' / ' + md_text(m.split) if m.split else ''} | "
                  f"{m.text()} |" for m in facts.metrics]
    if facts.recipe:
        lines += ["", "## Recipe", "", "| setting | value |", "|---|---|"]
        lines += [f"| {md_text(k)} | {md_text(_setting(v))} |" for k, v in facts.recipe.items()]
    if facts.how_to_load:
        lines += ["", "## How to load", "", facts.how_to_load]
    if facts.details.strip():
        lines += ["", "## LLM Lab record", "", facts.details.strip()]
    if facts.last_sections.strip():
        lines += ["", facts.last_sections.strip()]
    return "---\n" + head + "---\n\n" + "\n".join(lines).rstrip() + "\n"


def split_front_matter(text: str) -> tuple[dict, str]:
    """(the YAML metadata, the body) of a model card; ({}, text) when it has no front matter."""
    import yaml

    if not text.startswith("---\n"):
        return {}, text
    end = text.find("\n---\n", 4)
    if end < 0:
        return {}, text
    return yaml.safe_load(text[4:end]) or {}, text[end + 5:]


def _code(value) -> str:
    """`value` as a code span: markdown escapes do not work inside one (a backslash would show), so only what
    could end the span, the line or a table cell is replaced."""
    text = str(value).replace("`", "'").replace("\r", " ").replace("\n", " ").replace("|", "\\|")
    return f"`{text}`"


def _setting(value) -> str:
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def _default_use(head: str) -> str:
    return {"classifier": "Classifying short English texts into the labels above, in experiments and demos.",
            "causal-lm": "Continuing text in the domain it was trained on, for experiments and teaching.",
            }.get(head, "Sentence embeddings and as a base to fine-tune, for experiments.")


def _default_limit() -> str:
    return ("A small model trained or changed by LLM Lab on little data: check it on your own data before "
            "relying on it; it has not been evaluated for bias or safety.")


def load_snippet(head: str, folder_hint: str = "path/to/this/folder") -> str:
    """How to open a complete folder with plain transformers."""
    task = PIPELINE_TAGS.get(head, "feature-extraction")
    auto = {"classifier": "AutoModelForSequenceClassification", "causal-lm": "AutoModelForCausalLM"}.get(
        head, "AutoModel")
    return "\n".join(["```python", f"from transformers import {auto}, AutoTokenizer, pipeline", "",
                      f'pipe = pipeline("{task}", model="{folder_hint}")',
                      f'model = {auto}.from_pretrained("{folder_hint}")', "```"])


def adapter_snippet(head: str, base: str) -> str:
    """How to open an adapter-only folder with peft (its config holds the head and labels the base lacks)."""
    auto = {"classifier": "AutoModelForSequenceClassification", "causal-lm": "AutoModelForCausalLM"}.get(
        head, "AutoModel")
    return "\n".join([
        ("This folder is a PEFT LoRA adapter (and the trained head), not a complete model: open it over its base "
         "with peft, or write a complete folder with `python -m llm_lab models export NAME --out DIR`."), "",
        "```python", "from peft import PeftModel",
        f"from transformers import AutoConfig, {auto}, AutoTokenizer", "",
        'folder = "path/to/this/folder"',
        f"base = {auto}.from_pretrained({json.dumps(base)}, config=AutoConfig.from_pretrained(folder))",
        "model = PeftModel.from_pretrained(base, folder).merge_and_unload()",
        "tokenizer = AutoTokenizer.from_pretrained(folder)", "```"])


def onnx_snippet() -> str:
    return "\n".join([  # noqa: FLY002  one line of code per item reads better than one long string
        "An ONNX graph (`model.onnx`) with the tokenizer beside it:", "", "```python",
        "import onnxruntime as ort", "from transformers import AutoTokenizer", "",
        'folder = "path/to/this/folder"', 'session = ort.InferenceSession(f"{folder}/model.onnx")',
        "tokenizer = AutoTokenizer.from_pretrained(folder)",
        'enc = tokenizer(["some text"], return_tensors="np")',
        "names = {i.name for i in session.get_inputs()}",
        "logits = session.run(None, {k: v for k, v in enc.items() if k in names})[0]", "```"])


# ---------------------------------------------------------------- facts from what LLM Lab recorded
def metrics_from_training(meta: dict) -> list[Metric]:
    """The held-out metrics of a training run, with their intervals when the run measured them."""
    info = meta.get("dataset") or {}
    dataset = str(info.get("dataset") or (meta.get("hyperparameters") or {}).get("corpus") or "")
    found = ((meta.get("evaluation") or {}).get("intervals")) or {}
    out = []
    for name, value in sorted((meta.get("metrics") or {}).items()):
        if not isinstance(value, (int, float)):
            continue
        ci = found.get(name) or {}
        out.append(Metric(name, float(value), dataset, "eval", ci.get("low"), ci.get("high"),
                          ci.get("n") or info.get("eval_rows"), ci.get("method")))
    return out


def metrics_from_quality(report: dict | None) -> list[Metric]:
    """`models quality`'s held-out numbers (stdlib test files, never trained on); n = tokens scored."""
    held = (report or {}).get("held_out") or {}
    return [Metric(name, float(held[name]), "python-stdlib-tests", "held-out", n=held.get("tokens"))
            for name in ("perplexity", "bits_per_byte") if name in held]


def facts_from_training(name: str, head: str, meta: dict, *, labels=None, base_model: str | None = None,
                        licence: str = "unknown", details: str = "", adapter_base: str | None = None) -> CardFacts:
    """A trained model's facts from its meta (llm_lab_training.json). `base_model`: the parent's Hub id (YAML);
    `adapter_base`: how an adapter-only folder names its base for peft (a Hub id or an absolute folder)."""
    cfg = meta.get("hyperparameters") or {}
    task = cfg.get("task", "")
    scratch = task == "pretrain"
    parent = None if scratch else (meta.get("distillation") or {}).get("teacher") or cfg.get("model")
    adapter = bool(cfg.get("lora") and cfg.get("adapter_only"))
    what = {"classify": "text classifier", "causal-lm": "causal language model",
            "pretrain": "causal language model"}.get(task, "model")
    how = ("pretrained from scratch" if scratch else
           f"distilled from {_code(parent)}" if meta.get("distillation") else
           f"fine-tuned from {_code(parent)}" + (" with LoRA" if cfg.get("lora") else ""))
    tags = [task] + (["lora", "peft"] if cfg.get("lora") else []) + (["distillation"] if meta.get("distillation")
                                                                      else [])
    recipe = _relevant(cfg)
    dataset = (meta.get("dataset") or {}).get("dataset") or cfg.get("dataset") or cfg.get("corpus")
    return CardFacts(
        name=name, head=head, summary=f"A {what} {how} by LLM Lab.", licence=licence,
        base_model=None if scratch else base_model,
        base_relation=("adapter" if adapter else "finetune") if base_model and not scratch else None,
        parent=parent, datasets=[dataset] if dataset else [], tags=[t for t in tags if t], labels=list(labels or []),
        metrics=metrics_from_training(meta), recipe=recipe, details=details,
        how_to_load=adapter_snippet(head, adapter_base or base_model or "BASE") if adapter else load_snippet(head),
        limitations=_training_limits(meta))


def _relevant(settings: dict) -> dict:
    """The settings that matter for the run's task (`TrainConfig.relevant`), else all but where it was saved."""
    from .train.config import TrainConfig

    try:
        return TrainConfig.from_dict(settings).relevant()
    except Exception:  # noqa: BLE001  settings of an older LLM Lab: shown as recorded
        return {k: v for k, v in settings.items() if k not in ("name", "out")}


def _training_limits(meta: dict) -> list[str]:
    info = meta.get("dataset") or {}
    rows = info.get("train_rows")
    out = [_default_limit()]
    if rows:
        out.append(f"Trained on {rows} rows of {_code(info.get('dataset'))} and evaluated on "
                   f"{info.get('eval_rows', 0)} held-out rows: with so few, its metrics are uncertain (their n and, "
                   "where measured, their intervals are in the metrics).")
    return out


def facts_from_variant(name: str, head: str, parent: str, meta: dict, *, title: str = "", description: str = "",
                       labels=None, base_model: str | None = None, licence: str = "unknown",
                       details: str = "") -> CardFacts:
    recipe = meta.get("recipe") or {}
    method = recipe.get("method", "")
    onnx = method in ("onnx", "int8")
    limits = [_default_limit()] + [str(n) for n in meta.get("notes") or []]
    if method == "heads":
        limits.append("Attention heads were cut out, so layers have different head counts: plain transformers "
                      "cannot build this architecture; `python -m llm_lab models export` writes an equivalent "
                      "full-size folder (the removed heads as zeros) that any tool opens.")
    return CardFacts(
        name=name, head=head, summary=f"A {title or method} variant of {_code(parent)}, made by LLM Lab. "
        + description, licence=licence, base_model=base_model,
        base_relation="quantized" if method in ("int8", "fp16", "bf16") else "finetune" if base_model else None,
        parent=parent, tags=["compression", method] + (["onnx"] if onnx else []), labels=list(labels or []),
        recipe={"method": method, **(recipe.get("params") or {})}, details=details,
        how_to_load=onnx_snippet() if onnx else ("" if method == "heads" else load_snippet(head)),
        limitations=limits, datasets=[d for d in [(recipe.get("params") or {}).get("dataset")] if d])


def facts_for_folder(actor, entry, folder: Path, head: str) -> CardFacts:
    """The facts of a registry model's folder, from its LLM Lab files and the registry (for `models export`)."""
    from . import model_files

    folder = Path(folder)
    details = previous_details(folder)
    labels = entry.labels or []
    licence = model_files.licence_of(actor, entry)
    base = model_files.hub_base(actor, entry.parent) if entry.parent else None
    if (folder / TRAINING_FILE).exists():
        meta = json.loads((folder / TRAINING_FILE).read_text())
        adapter = (folder / "adapter_config.json").exists() and not (folder / "model.safetensors").exists()
        facts = facts_from_training(entry.name, head, meta, labels=labels, base_model=base, licence=licence,
                                    details=details, adapter_base=_adapter_config_base(folder) if adapter else None)
    elif (folder / VARIANT_FILE).exists():
        facts = facts_from_variant(entry.name, head, entry.parent or "", json.loads((folder / VARIANT_FILE).read_text()),
                                   labels=labels, base_model=base, licence=licence, details=details)
    else:
        hub = (entry.meta or {}).get("hub_id") or (entry.location if entry.source == "hub" else None)
        facts = CardFacts(entry.name, head, md_text(entry.description or f"A model from {entry.source}."),
                          licence=licence, base_model=hub, base_relation=None, labels=labels, details=details,
                          how_to_load=load_snippet(head))
    add_quality(facts, folder)
    return facts


def _adapter_config_base(folder: Path) -> str | None:
    return json.loads((folder / "adapter_config.json").read_text()).get("base_model_name_or_path")


def add_quality(facts: CardFacts, folder: Path) -> None:
    """`models quality`'s numbers (llm_lab_quality.json), when the folder has them: metrics and their section."""
    from .lm_quality import card_section

    path = Path(folder) / QUALITY_FILE
    if path.exists():
        report = json.loads(path.read_text())
        facts.metrics += metrics_from_quality(report)
        facts.last_sections = card_section(report, report.get("parameters") or 0)


def previous_details(folder: Path) -> str:
    """LLM Lab's own card of a folder (its README.md without front matter, title or sections this module writes),
    kept as the card's record: the results tables, the recipe and the command that reproduces it."""
    path = Path(folder) / CARD_FILE
    if not path.exists():
        return ""
    _, body = split_front_matter(path.read_text())
    body = body.split("\n## Quality\n", 1)[0]  # re-made from llm_lab_quality.json (`facts_for_folder`)
    if "\n## LLM Lab record\n" in body:
        body = body.split("\n## LLM Lab record\n", 1)[1]
    lines = body.strip().splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    # demote the record's own sections below "LLM Lab record"
    return "\n".join("#" + line if line.startswith("## ") else line for line in lines).strip()


def write(folder: Path, facts: CardFacts) -> Path:
    path = Path(folder) / CARD_FILE
    path.write_text(render(facts))
    return path
