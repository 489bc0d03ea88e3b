"""Comparison runs: 2-4 models on the same inputs, generation or classification.

A comparison is a `Comparison` (saved as JSON with `to_dict`, read back with `from_dict`, see `saved`):

    Comparison(mode="generation" | "classification", models=[...], settings={...}, source={...},
               inputs=[{"id", "text", "reference"?, "label"?, "conversation"?}],
               outputs={model: ModelOutput(error, rows, wall_s, info, corpus)},
               summary={model: {...}}, agreement=Agreement(...) (classification), id, title)

Generation rows hold the `GenerationResult` fields plus reference metrics (exact match, BLEU,
ROUGE via `llm_lab.metrics`) when the input has a reference. An input made from a conversation keeps its turns
in "conversation" (the models answer its last user turn with the earlier turns as context) and that last user
turn in "text", which is what tables and exports show as the prompt; comparisons saved before have no
"conversation" and load as they are. Classification rows hold the
predicted label, its probability and all class probabilities. A model that fails keeps
its error in `outputs[model].error`; the other models' outputs are kept.
"""
import time
from dataclasses import asdict, dataclass, field, fields

from .. import capabilities as caps
from ..errors import JobCancelled, LabError, failure_message

MODES = ("generation", "classification")
# What each mode of comparison needs from a model (the pickers list only models that fit)
NEEDS = {"generation": caps.GENERATE, "classification": caps.CLASSIFY}
MAX_MODELS = 4


@dataclass
class ModelOutput:
    """One model's side of a comparison: its rows (one per input), or the error that stopped it."""

    error: str | None = None
    rows: list = field(default_factory=list)
    wall_s: float = 0.0
    info: dict = field(default_factory=dict)
    corpus: dict | None = None      # generation with references: exact_match, bleu, rouge1, rougeL over all rows

    @property
    def ok(self) -> bool:
        return not self.error

    @classmethod
    def from_dict(cls, values: dict) -> "ModelOutput":
        return cls(**{k: v for k, v in values.items() if k in {f.name for f in fields(cls)}})

    def to_dict(self) -> dict:
        out = asdict(self)
        if out["corpus"] is None:
            out.pop("corpus")
        return out


@dataclass
class Agreement:
    """Classification: which rows all working models label the same, and pairwise agreement."""

    models: list = field(default_factory=list)
    rows: list = field(default_factory=list)
    rate: float = 1.0
    pairwise: dict = field(default_factory=dict)


@dataclass
class Comparison:
    mode: str                       # "generation" or "classification" (saved as "kind" before; still read)
    models: list
    inputs: list
    outputs: dict                   # model -> ModelOutput
    settings: dict = field(default_factory=dict)
    source: dict = field(default_factory=lambda: {"type": "typed"})
    created_at: float = 0.0
    summary: dict = field(default_factory=dict)     # model -> the numbers shown above the table
    agreement: Agreement | None = None
    id: str | None = None
    title: str | None = None
    extra: dict = field(default_factory=dict)       # saved keys this version does not know (kept, written back)

    def ok_models(self) -> list[str]:
        return [m for m in self.models if self.outputs[m].ok]

    def to_dict(self) -> dict:
        # a file saved with the old "kind" key keeps it when saved again (older versions can still read it)
        out = {("kind" if "kind" in self.extra else "mode"): self.mode, "models": list(self.models), "inputs": self.inputs,
               "outputs": {m: o.to_dict() for m, o in self.outputs.items()}, "settings": self.settings,
               "source": self.source, "created_at": self.created_at, "summary": self.summary}
        if self.agreement is not None:
            out["agreement"] = asdict(self.agreement)
        for key in ("id", "title"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return {**self.extra, **out}

    @classmethod
    def from_dict(cls, values: dict) -> "Comparison":
        """A comparison from its JSON (also those saved as plain dicts before this class existed)."""
        names = {f.name for f in fields(cls)} - {"extra"}
        known = {k: v for k, v in values.items() if k in names}
        if "mode" not in known and "kind" in values:  # saved before "kind" was renamed "mode"
            known["mode"] = values["kind"]
        known["outputs"] = {m: ModelOutput.from_dict(o) for m, o in (values.get("outputs") or {}).items()}
        if values.get("agreement") is not None:
            known["agreement"] = Agreement(**values["agreement"])
        for key in ("settings", "source", "summary"):
            if known.get(key) is None:
                known.pop(key, None)
        return cls(**known, extra={k: v for k, v in values.items() if k not in names})


def form(comparison: Comparison) -> dict:
    """What a new comparison like this one starts from (the Compare page's form, when it is reopened): its
    mode and models, its dataset sample (`dataset`, `split`, `limit`), its conversation (`conversation`, the
    text `format_conversation` writes, with its `reference`) or its typed inputs (`texts`, one per line) with
    their references or gold labels (`golds`, line k for input k), and its generation settings."""
    src = comparison.source or {}
    gen = comparison.mode == "generation"
    golds = [str(row.get("reference" if gen else "label") or "") for row in comparison.inputs]
    turns = next((row["conversation"] for row in comparison.inputs if row.get("conversation")), None)
    typed = not src.get("dataset") and turns is None
    return {"mode": comparison.mode, "models": list(comparison.models),
            "dataset": src.get("dataset"), "split": src.get("split"), "limit": src.get("limit"),
            "texts": "\n".join(row["text"] for row in comparison.inputs) if typed else None,
            "golds": "\n".join(golds).rstrip("\n") if typed else None,
            "conversation": format_conversation(turns) if turns else None,
            "reference": golds[0] if turns else None,
            "settings": saved_settings(comparison.settings) if gen else None}


def saved_settings(values: dict | None):
    """The GenerationSettings a comparison ran with. One saved before chat templates existed ran every prompt
    raw: it reopens with the raw-prompt switch on, so running it again gives the same kind of answers."""
    from ..generation import GenerationSettings

    values = dict(values or {})
    if values and "chat" not in values:
        values["chat"] = False
    return GenerationSettings.from_dict(values)


# ---------------------------------------------------------------- conversations
ROLE_PREFIXES = ("system", "user", "assistant")


def parse_conversation(text: str) -> list[dict]:
    """A conversation typed as text: a line starting with "user:", "assistant:" or "system:" begins a turn;
    any other line (code, a list, a blank line) goes on with the turn above it. It must end with a user turn,
    the one the models answer."""
    from ..inference.chat import check_conversation

    turns = []
    for number, line in enumerate((text or "").splitlines(), 1):
        role, sep, rest = line.partition(":")
        if sep and role.strip().lower() in ROLE_PREFIXES:
            turns.append({"role": role.strip().lower(), "content": rest.strip()})
        elif turns:
            turns[-1]["content"] += "\n" + line
        elif line.strip():
            raise LabError(f"Conversation line {number} ({line.strip()[:40]!r}) belongs to no turn: start each "
                           "turn with \"user:\", \"assistant:\" or \"system:\".")
    for turn in turns:
        turn["content"] = turn["content"].strip()
    if not turns:
        raise LabError("The conversation is empty: write at least one line starting with \"user:\".")
    return check_conversation(turns)


def format_conversation(turns: list[dict]) -> str:
    """The text `parse_conversation` reads back as `turns`."""
    return "\n".join(f"{t['role']}: {t['content']}" for t in turns)


def conversation_input(turns: list[dict], reference: str | None = None) -> dict:
    """The one input of a conversation: the models get the turns, tables show the last user turn as its text."""
    from ..inference.chat import check_conversation

    turns = check_conversation(turns)
    row = {"id": "1", "text": turns[-1]["content"], "conversation": turns}
    if reference not in (None, ""):
        row["reference"] = str(reference)
    return row


def prompt_of(row: dict):
    """What the models answer for an input: its conversation (the earlier turns as context), else its text."""
    return row.get("conversation") or row["text"]


def check_models(models: list[str]) -> list[str]:
    models = list(dict.fromkeys(m.strip() for m in models if m and m.strip()))
    if not 2 <= len(models) <= MAX_MODELS:
        raise LabError(f"Pick two to {MAX_MODELS} different models to compare (got {len(models)}).")
    return models


def make_inputs(texts: list[str], references: list[str | None] | None = None, labels=None, ids=None) -> list[dict]:
    """Inputs from typed texts (one per line) or dataset columns; empty texts are refused."""
    from ..generation import check_prompts

    texts = check_prompts([t for t in texts])
    out = []
    for i, text in enumerate(texts):
        row = {"id": str(ids[i]) if ids is not None else str(i + 1), "text": text}
        if references is not None and references[i] not in (None, ""):
            row["reference"] = str(references[i])
        if labels is not None and labels[i] not in (None, ""):
            row["label"] = str(labels[i])
        out.append(row)
    return out


def run(actor, mode: str, models: list[str], inputs: list[dict], settings=None, progress=None, loader=None,
        source: dict | None = None) -> Comparison:
    """Run every model on every input (batched per model) and return the comparison.

    `progress(done, total, message)` is called as work finishes (done/total count model x input).
    """
    from ..generation import GenerationSettings

    actor.require("run", "run comparisons")  # models run on the server: an editor's right, not a viewer's
    if mode not in MODES:
        raise LabError(f"Unknown comparison mode {mode!r}; use one of {', '.join(MODES)}.")
    models = check_models(models)
    if not inputs:
        raise LabError("Nothing to compare: give at least one input.")
    if loader is None:
        from ..registry import load

        loader = lambda name, head: load(actor, name, head=head)  # noqa: E731
    settings = settings or GenerationSettings()
    prompts = [prompt_of(row) for row in inputs]
    n, total = len(inputs), len(models) * len(inputs)
    outputs = {}
    for mi, name in enumerate(models):
        report = (lambda done, _t, mi=mi, name=name: progress(mi * n + done, total, f"{name}: {done}/{n}")) \
            if progress else None
        start = time.perf_counter()
        try:
            loaded = loader(name, NEEDS[mode].head)
            caps.require(NEEDS[mode], loaded)
            start = time.perf_counter()  # run time, not load time
            if mode == "generation":
                from ..inference import generate

                rows = [r.as_dict() for r in generate(loaded, prompts, settings, progress=report)]
            else:
                rows = classify_rows(loaded, [row["text"] for row in inputs], report)
            outputs[name] = ModelOutput(None, rows, time.perf_counter() - start, _info(loaded))
        except JobCancelled:
            raise
        except Exception as exc:  # one model failing must not lose the others
            outputs[name] = ModelOutput(failure_message(exc), [], time.perf_counter() - start, {})
        if progress:
            progress((mi + 1) * n, total, f"{name} done")
    return assemble(mode, models, inputs, outputs, settings.as_dict() if mode == "generation" else {}, source)


def _info(loaded) -> dict:
    return {"device": loaded.device, "dtype": loaded.dtype, "head_is_new": loaded.head_is_new,
            "source": loaded.entry.source, "location": loaded.entry.location}


def classify_rows(loaded, texts: list[str], report=None, batch_size: int = 32) -> list[dict]:
    from .. import inference

    rows = []
    for start in range(0, len(texts), batch_size):
        result = inference.classify(loaded, texts[start:start + batch_size], batch_size=batch_size)
        labels = result.labels or [str(j) for j in range(result.probs.shape[1])]
        for i, p in enumerate(result.probs):
            label, prob = result.predicted(i)
            row = {"label": label, "prob": prob, "probs": {labels[j]: float(p[j]) for j in range(len(labels))}}
            if result.tokens.truncated(i):
                row["note"] = result.tokens.note(i)
            rows.append(row)
        if report:
            report(len(rows), len(texts))
    return rows


def assemble(mode: str, models: list[str], inputs: list[dict], outputs: dict[str, ModelOutput],
             settings: dict | None = None, source: dict | None = None) -> Comparison:
    """Build the comparison from per-model outputs and add reference metrics / agreement."""
    comparison = Comparison(mode=mode, models=list(models), inputs=inputs, outputs=outputs, settings=settings or {},
                            source=source or {"type": "typed"}, created_at=time.time())
    if mode == "generation":
        add_reference_metrics(comparison)
    else:
        comparison.agreement = agreement(comparison)
    comparison.summary = summary(comparison)
    return comparison


def add_reference_metrics(comparison: Comparison) -> None:
    """Per row: exact_match, bleu, rouge1, rougeL against the input's reference (when it has one)."""
    from .. import metrics

    refs = [row.get("reference") for row in comparison.inputs]
    have = [i for i, r in enumerate(refs) if r is not None]
    if not have:
        return
    for name, out in comparison.outputs.items():
        if out.error:
            continue
        preds = [out.rows[i]["text"] for i in have]
        gold = [refs[i] for i in have]
        em = metrics.compute("exact_match", preds, gold)["matches"]
        rouge = metrics.compute("rouge", preds, gold)
        for k, i in enumerate(have):
            row = out.rows[i]
            row["exact_match"] = float(em[k])
            row["bleu"] = float(metrics.compute("bleu", [preds[k]], [gold[k]])["bleu"])
            row["rouge1"] = float(rouge["rouge1_per_example"][k])
            row["rougeL"] = float(rouge["rougeL_per_example"][k])
        out.corpus = {"exact_match": float(sum(em) / len(em)),
                         "bleu": float(metrics.compute("bleu", preds, gold)["bleu"]),
                         "rouge1": float(rouge["rouge1"]), "rougeL": float(rouge["rougeL"]),
                         "references": len(have)}


def agreement(comparison: Comparison) -> Agreement:
    """Which rows all (working) models label the same, pairwise agreement and model-vs-model tables."""
    ok = comparison.ok_models()
    n = len(comparison.inputs)
    labels = {m: [r["label"] for r in comparison.outputs[m].rows] for m in ok}
    agree = [len({labels[m][i] for m in ok}) <= 1 for i in range(n)] if ok else [True] * n
    pairwise = {}
    for i, a in enumerate(ok):
        for b in ok[i + 1:]:
            same = sum(x == y for x, y in zip(labels[a], labels[b]))
            pairwise[f"{a} | {b}"] = same / n if n else 1.0
    return Agreement(models=ok, rows=agree, rate=sum(agree) / n if n else 1.0, pairwise=pairwise)


def confusion_between(comparison: Comparison, model_a: str, model_b: str):
    """A table: rows = model_a's labels, columns = model_b's labels, cells = number of inputs."""
    import pandas as pd

    a = [r["label"] for r in comparison.outputs[model_a].rows]
    b = [r["label"] for r in comparison.outputs[model_b].rows]
    table = pd.crosstab(pd.Series(a, name=model_a), pd.Series(b, name=model_b))
    return table


def summary(comparison: Comparison) -> dict:
    """Per model: the numbers shown above the table."""
    from .. import metrics

    out = {}
    for name in comparison.models:
        o = comparison.outputs[name]
        if o.error:
            out[name] = {"error": o.error}
            continue
        rows = o.rows
        if comparison.mode == "generation":
            tokens = sum(r["new_tokens"] for r in rows)
            lps = [r["mean_logprob"] for r in rows if r["mean_logprob"] is not None]
            s = {"outputs": len(rows), "new_tokens": tokens, "wall_s": o.wall_s,
                 "tokens_per_s": tokens / o.wall_s if o.wall_s else 0.0,
                 "mean_latency_s": sum(r["latency_s"] for r in rows) / len(rows) if rows else 0.0,
                 "mean_logprob": sum(lps) / len(lps) if lps else None,
                 "truncated": sum(r["truncated"] for r in rows)}
            s.update(o.corpus or {})
        else:
            s = {"outputs": len(rows), "mean_prob": sum(r["prob"] for r in rows) / len(rows) if rows else 0.0,
                 "wall_s": o.wall_s, "head_is_new": o.info.get("head_is_new", False)}
            gold = [row.get("label") for row in comparison.inputs]
            if rows and all(g is not None for g in gold):
                s["accuracy"] = float(metrics.compute("accuracy", [r["label"] for r in rows], gold)["accuracy"])
        out[name] = s
    return out
