"""Save a trained model whole, write its model card, then register it; zip export.

The files are written into a staging folder (store.staged_dir); then, in one transaction, the folder moves
into place and the registry row is written, so no half-written model is ever listed. A save killed midway
leaves a staging folder (swept by a later save) or, between the move and the commit, a folder still marked
`SAVING` that no row names: the next save of that name reclaims it instead of moving to `NAME~2`. LoRA runs
are merged into the base weights (the registry loads full models); the adapter is kept beside them in
`adapter/`, or alone (`adapter_only`). Files other tools read name the base as they resolve it (a Hub id or the
base's absolute folder); LLM Lab's registry name for it stays in llm_lab.json. README.md is a Hugging Face
model card (`hf_card`) whose record section is LLM Lab's own card (results, recipe, reproduce command).
"""
import json
import os
import shutil
import time
from pathlib import Path

from .. import hf_card, model_files, paths, registry, settings, store
from ..access import Actor
from ..errors import ModelError
from .config import TrainConfig

TASK_HEAD = {"classify": "classifier", "causal-lm": "causal-lm", "pretrain": "causal-lm"}


def check_name_free(actor: Actor, name: str) -> None:
    """Model names are unique per workspace (and no model may take a built-in's name)."""
    if any(e.name == name and e.workspace in (None, actor.workspace) for e in registry.list_models(actor)):
        raise ModelError(f"A model named {name!r} exists already; choose another name.")


def check_out(actor: Actor, cfg: TrainConfig) -> None:
    """Saving to a folder of one's choosing (`out`) writes anywhere on the server: on a hosted server, an
    admin's power. Everyone else's models go to their workspace's models folder."""
    if cfg.out and settings.hosted():
        actor.require("server", "save a model to a folder of the server (out); leave it empty to save the model "
                                "in your workspace")


SAVING = ".llm_lab-saving"  # in a model folder while its save has not committed its registry row


def model_folder(actor: Actor, name: str) -> Path:
    """A new folder for the trained model `name` in the actor's workspace (paths.workspace_dir). A folder that
    is there already (a model unregistered, or of another workspace from before names were per workspace) is
    never overwritten: the new one gets a suffix. Only a save's own leftover is reused: a folder still marked
    `SAVING` that no registry row names (a save killed between its move and its commit). Call it inside the
    transaction that registers the model, so no live save is in that state."""
    base = paths.workspace_dir("models", actor.workspace)
    folder, n = base / name, 1
    while folder.exists() or folder.is_symlink():
        if _killed_save(folder):
            shutil.rmtree(folder)
            break
        n += 1
        folder = base / f"{name}~{n}"
    return folder


def _killed_save(folder: Path) -> bool:
    return (not folder.is_symlink() and (folder / SAVING).is_file()
            and not registry.location_registered(str(folder)))


def finish(actor: Actor, cfg: TrainConfig, trained, job_id: str | None) -> dict:
    name = cfg.name or cfg.default_name()
    check_out(actor, cfg)
    if not cfg.out:
        check_name_free(actor, name)
    folder = Path(cfg.out).expanduser().resolve() if cfg.out else None
    model = trained.model
    adapter = None
    if cfg.lora and hasattr(model, "merge_and_unload"):
        # the adapter's weights, taken before merging: merge_and_unload folds them into the base and removes them
        adapter = _adapter_files(model)
        model = model.merge_and_unload()
    if cfg.task != "pretrain" and not cfg.distill:  # a student with fewer layers is a change by itself
        check_changed(actor, cfg, model, trained)
    meta = {"dataset": trained.prepared.info, "hyperparameters": cfg.as_dict(), "metrics": trained.metrics,
            "train": trained.stats, "job_id": job_id, "command": cfg.to_cli()}
    if getattr(trained, "evaluation", None):
        meta["evaluation"] = trained.evaluation  # the held-out intervals and the comparison with the base
    if getattr(trained, "distillation", None):
        meta["distillation"] = trained.distillation  # teacher (also the parent), layers kept, T, alpha
    if cfg.out:
        with store.atomic_dir(folder) as tmp:
            _write(actor, tmp, name, cfg, trained, job_id, adapter, model, meta)
        return {"model": name, "folder": str(folder), "registered": False, **_summary(trained)}
    with store.staged_dir(paths.workspace_dir("models", actor.workspace), name) as tmp:
        _write(actor, tmp, name, cfg, trained, job_id, adapter, model, meta)
        folder = register_staged(actor, tmp, registry.ModelEntry(
            name, "trained", "", TASK_HEAD[cfg.task], parent=None if cfg.task == "pretrain" else cfg.model,
            labels=trained.prepared.labels, meta=meta))
    registry.forget(name)
    return {"model": name, "folder": str(folder), "registered": True, **_summary(trained)}


def register_staged(actor: Actor, tmp: Path, entry: "registry.ModelEntry") -> Path:
    """Move a complete staging folder (`store.staged_dir` in the workspace's models folder) into place as
    `entry.name` and record `entry` there, in one transaction: registered or nothing. Marked `SAVING` until the
    row commits, so a save killed in between leaves a folder the next save of that name reclaims. Used by
    every model LLM Lab writes (trained models, compressed variants). Returns the folder."""
    (tmp / SAVING).touch()
    moved = None
    try:
        with store.transaction():
            check_name_free(actor, entry.name)
            folder = model_folder(actor, entry.name)
            os.replace(tmp, folder)
            moved = folder
            entry.location = str(folder)
            registry.register(actor, entry)
            (folder / SAVING).unlink()
    except BaseException:
        if moved is not None:
            _remove_unregistered(moved)
        raise
    return folder


def _write(actor: Actor, tmp: Path, name: str, cfg: TrainConfig, trained, job_id, adapter, model,
           meta: dict) -> None:
    """The folder's files. Other tools read config.json, adapter_config.json and README.md's YAML, so these name
    the base as they resolve it (`model_files.resolvable_base`: a Hub id or an absolute folder), never by
    registry name, which LLM Lab keeps in llm_lab.json."""
    base = None if cfg.task == "pretrain" else model_files.resolvable_base(actor, cfg.model)
    if adapter is not None and cfg.adapter_only:  # kilobytes over the base instead of a copy of it
        _write_files(adapter, tmp)
        registry.point_adapter_at(tmp, cfg.model, base)
        # the config of the model the adapter makes (its head class, labels), not the base's ("BertModel")
        model.config.architectures = [type(model).__name__]
        model.config.save_pretrained(tmp)
    elif adapter is not None:
        _write_files(adapter, tmp / "adapter")
        registry.point_adapter_at(tmp / "adapter", cfg.model, base)
        model.save_pretrained(tmp, safe_serialization=True)
    else:
        model.save_pretrained(tmp, safe_serialization=True)
    trained.tokenizer.save_pretrained(tmp)
    (tmp / "README.md").write_text(hf_card.render(card_facts(actor, name, cfg, trained, job_id, meta, base)))
    (tmp / "llm_lab_training.json").write_text(json.dumps(meta, indent=2, default=str))
    registry.check_folder(tmp)


def card_facts(actor: Actor, name: str, cfg: TrainConfig, trained, job_id, meta: dict, base: str | None):
    """The Hugging Face card's facts (`hf_card`), LLM Lab's own card kept as its record."""
    parent = registry.ModelEntry(name, "trained", "", TASK_HEAD[cfg.task],
                                 parent=None if cfg.task == "pretrain" else cfg.model)
    details = model_card(name, cfg, trained, job_id).split("\n", 1)[1]  # without its title: the card has one
    details = "\n".join("#" + line if line.startswith("## ") else line for line in details.splitlines())
    return hf_card.facts_from_training(
        name, TASK_HEAD[cfg.task], json.loads(json.dumps(meta, default=str)), labels=trained.prepared.labels,
        base_model=model_files.hub_base(actor, parent.parent), licence=model_files.licence_of(actor, parent),
        details=details, adapter_base=base if cfg.adapter_only else None)


def _remove_unregistered(folder: Path) -> None:
    """After a failed registration (its commit too: a full disk): remove the moved folder unless a row names it."""
    try:
        with store.transaction():
            if not registry.location_registered(str(folder)):
                shutil.rmtree(folder, ignore_errors=True)
    except (OSError, *store.DatabaseError):
        pass  # still marked SAVING: the next save of this name reclaims it


def _adapter_files(peft_model) -> dict[str, bytes]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        peft_model.save_pretrained(tmp)
        return {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}


def _write_files(files: dict[str, bytes], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)


UNCHANGED_LOGIT = 1e-4  # largest |logit difference| on the probe rows that still counts as "the same model"


def check_changed(actor: Actor, cfg: TrainConfig, model, trained) -> None:
    """Refuse to register a twin: when the fine-tuned model's logits on a few training rows equal its parent's,
    the run changed nothing (typically a learning rate too low for LoRA) and the user should hear so."""
    import torch

    from ..inference.forward import outputs

    rows = trained.prepared.train.rows[:8]
    model.eval()  # no dropout: the comparison must be deterministic
    parent = registry.load(actor, cfg.model, head=TASK_HEAD[cfg.task], device="cpu", dtype="float32")
    if cfg.task == "classify" and parent.head_is_new:
        return  # a new head is a change by itself
    diff = 0.0
    with parent.lock, torch.inference_mode():
        for row in rows:
            ids = torch.tensor([row["input_ids"]])
            ours = outputs(model, input_ids=ids.to(model.device)).logits.float().cpu()
            theirs = outputs(parent.model, input_ids=ids).logits.float()
            if ours.shape != theirs.shape:
                return  # another set of labels: a new head, a change by itself
            diff = max(diff, float((ours - theirs).abs().max()))
    if diff < UNCHANGED_LOGIT:
        raise ModelError(
            f"The fine-tune changed nothing: on {len(rows)} training rows its outputs equal {cfg.model}'s (largest "
            f"logit difference {diff:.1e}), so no model was registered. Raise the learning rate (LoRA usually needs "
            f"1e-4 to 1e-3; this run used {cfg.learning_rate:g}) or train for more steps.")


def _summary(trained) -> dict:
    return {"metrics": trained.metrics, "stats": trained.stats, "evaluation": getattr(trained, "evaluation", None) or {}}


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _result(value, interval: dict | None) -> str:
    from ..stats.intervals import Interval

    return Interval.from_dict(interval).text() + f" (95% {interval['method']})" if interval else _fmt(value)


def _evaluation_notes(evaluation: dict | None) -> list[str]:
    from .evaluation import base_line

    line = base_line(evaluation)
    return ["", line] if line else []


def model_card(name: str, cfg: TrainConfig, trained, job_id: str | None) -> str:
    from . import before_after

    info = trained.prepared.info
    base = f"GPT-2 `{cfg.preset}` from scratch ({_fmt(trained.stats.get('parameters'))} parameters)" \
        if cfg.task == "pretrain" else f"`{cfg.model}`"
    what = {"classify": "text classifier", "causal-lm": "causal language model", "pretrain": "causal language model"}[cfg.task]
    lines = [f"# {name}", "", f"A {what} trained by LLM Lab on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", "",
             "| | |", "|---|---|", f"| task | {cfg.task} |", f"| base | {base} |",
             (f"| data | `{info.get('dataset')}` (fingerprint `{str(info.get('fingerprint', ''))[:16]}`), "
              f"{info.get('train_rows')} train / {info.get('eval_rows', 0)} eval rows |")]
    if cfg.task == "pretrain":
        arch = cfg.architecture()
        lines.append("| architecture | " + ", ".join(f"{k}={v}" for k, v in arch.items())
                     + f"; byte-level BPE trained with `tokenizers` on the same corpus ({info.get('tokens')} tokens) |")
    if cfg.lora:
        kept = (f"the adapter only (`adapter_model.safetensors`), loaded over `{cfg.model}`" if cfg.adapter_only
                else "merged into the weights, adapter in `adapter/`")
        lines.append(f"| LoRA | r={cfg.lora_r}, alpha={cfg.lora_alpha}, targets={cfg.lora_targets or 'default'}; {kept} |")
    dist = getattr(trained, "distillation", None)
    if dist:
        lines.append(f"| distilled | from `{dist['teacher']}` ({dist['teacher_layers']} layers): its layers "
                     f"{', '.join(map(str, dist['layers_kept']))} kept; loss {dist['alpha']:g}·T²·KL at "
                     f"T={dist['temperature']:g} + {1 - dist['alpha']:g}·cross-entropy |")
    if trained.prepared.labels:
        lines.append(f"| labels | {', '.join(map(str, trained.prepared.labels))} |")
    if job_id:
        lines.append(f"| job | `{job_id}` |")
    lines += ["", "## Results", "", "| metric | value |", "|---|---|"]
    found = (getattr(trained, "evaluation", None) or {}).get("intervals") or {}
    # a held-out metric with its interval: "value [95% interval] n=rows"
    lines += [f"| {k} | {_result(v, found.get(k))} |" for k, v in sorted(trained.metrics.items())]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in trained.stats.items()]
    lines += _evaluation_notes(getattr(trained, "evaluation", None))
    lines += before_after.card_lines((getattr(trained, "evaluation", None) or {}).get("before_after"))
    lines += ["", "## Recipe", "", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in cfg.relevant().items()]
    lines += ["", "## Reproduce", "", "```bash", cfg.to_cli() + (f" --name {name}" if not cfg.name else ""), "```", "",
              ("Runs the same code path (`llm_lab.train`) as the dashboard's Train page; with a fixed seed the "
               "result is reproducible on the same hardware and library versions."), ""]
    return "\n".join(lines)


def zip_bytes(actor: Actor, name: str) -> bytes:
    """The model as a zip any tool opens (the download button and the CLI): the folder `models export` writes
    (an adapter merged into its base, a Hugging Face card), not the registry's folder as it is."""
    from ..export_folder import zip_bytes as exported_zip

    return exported_zip(actor, name)
