"""Generation: prompt -> completion with `inference.generate`, scored against the reference column.

A chat model reads each prompt through its chat template (one user turn, after the task's `system` turn), as
Compare and `serve`'s /v1/chat/completions send it; `chat: false` on the task sends the raw prompt. The result
says which it was: `details["chat_template"]`, the text the model read for the first prompt, a note, and a
`chat_template` column in the drill-down.
"""
from __future__ import annotations

import numpy as np

from ... import metrics
from ...generation import GenerationSettings
from ...inference import chat, generate
from ...metrics import intervals
from .common import TaskError, headline, render, short

VERSION = 3  # 2: every metric with its interval; 3: a chat model's prompts go through its chat template
CHUNK = 16  # prompts per call, so progress and partial outputs are saved as the run goes


def run(state) -> dict:
    spec, loaded, frame = state.spec, state.loaded, state.frame
    prompts = render(spec.prompt, frame, "prompt")
    refs = frame["reference"].astype(str).tolist()
    settings = GenerationSettings.from_dict({"seed": spec.seed, **spec.generation, "chat": spec.chat,
                                             "system": spec.system})
    templated = chat.applies(loaded, prompts[0], settings) if prompts else False
    state.notes.extend(_template_notes(loaded, settings, templated))
    todo = state.partial.missing(len(prompts))
    done = len(prompts) - len(todo)
    with loaded.lock:
        for start in range(0, len(todo), CHUNK):
            chunk = todo[start:start + CHUNK]
            results = generate(loaded, [prompts[i] for i in chunk], settings)
            state.partial.add(chunk, [{"text": r.text.strip(), "new_tokens": r.new_tokens, "latency_s": r.latency_s,
                                       "tokens_per_s": r.tokens_per_s, "truncated": r.truncated,
                                       "stop_reason": r.stop_reason} for r in results])
            done += len(chunk)
            state.progress(done, len(prompts), f"{done}/{len(prompts)} prompts")
    outs = [state.partial.outputs[i] for i in range(len(prompts))]
    texts = [o["text"] for o in outs]
    empty = sum(1 for t in texts if not t)
    if empty == len(texts):
        raise TaskError(f"{loaded.entry.name} produced no text for any of the {len(texts)} prompts (it stopped at once, "
                        "e.g. on an end-of-text token or a stop string). Check the prompt template and stop strings.")
    if empty:
        state.notes.append(f"{empty} of {len(texts)} generations are empty; they count as wrong.")
    values, per = {}, {}
    for name in spec.metrics:
        out = metrics.compute(name, texts, refs, **({"ignore_case": True, "ignore_punctuation": True}
                                                     if name == "exact_match" else {}))
        if name == "rouge":
            values.update({k: out[k] for k in ("rouge1", "rouge2", "rougeL")})
            per.update({k: out[f"{k}_per_example"] for k in ("rouge1", "rouge2", "rougeL")})
        else:
            values[name] = out[name]
            if name == "exact_match":
                per["exact_match"] = out["matches"]
    head_name = spec.metrics[0] if spec.metrics else "exact_match"
    if head_name == "rouge":
        head_name = "rougeL"
    found = _intervals(values, per, texts, refs, spec.seed)
    tokens = sum(o["new_tokens"] for o in outs)
    state.stats["tokens"] = tokens
    state.stats["mean_latency_s"] = float(np.mean([o["latency_s"] for o in outs]))
    rows = [{"id": int(frame["id"].iloc[i]), "text": short(prompts[i]), "label": refs[i], "prediction": texts[i],
             "correct": bool(per["exact_match"][i]) if "exact_match" in per else None,
             "rougeL": round(per["rougeL"][i], 4) if "rougeL" in per else None,
             "new_tokens": outs[i]["new_tokens"], "truncated": outs[i]["truncated"], "chat_template": templated}
            for i in range(len(prompts))]
    details = {"generation": settings.as_dict(), "chat_template": templated,
               "prompt_read": chat.prompt_text(loaded, prompts[0], settings) if prompts else ""}
    return {"metrics": values, "details": details, "headline": headline(head_name, values, found.get(head_name)),
            "intervals": {k: v.to_dict() for k, v in found.items()},
            "per_example": rows}


def _template_notes(loaded, settings: GenerationSettings, templated: bool) -> list[str]:
    """What the model read, in words: its chat template applied or not, and why."""
    name = loaded.entry.name
    if templated:
        system = f" after the system turn {settings.system.strip()!r}" if settings.system.strip() else ""
        return [f"Each prompt went through {name}'s chat template as one user turn{system}; `chat: false` on the "
                "task sends the raw prompt."]
    if chat.has_template(loaded):
        return [f"`chat: false`: the prompts went to {name} as they are, without its chat template."]
    if settings.system.strip():
        return [f"{name} has no chat template: the prompts went as they are and `system` was not used."]
    return []


def _intervals(values, per, texts, refs, seed) -> dict:
    """Exact match: Wilson; ROUGE: BCa of the per-example mean; BLEU and chrF: BCa of sacrebleu's statistics."""
    out = {}
    for name in values:
        if name == "exact_match":
            out[name] = intervals.of_hits(per["exact_match"])
        elif name in ("rouge1", "rouge2", "rougeL"):
            out[name] = intervals.of_mean(per[name], seed=seed)
        elif name in ("bleu", "chrf"):
            out[name] = intervals.of_sacrebleu(name, texts, refs, seed=seed)
    return out
