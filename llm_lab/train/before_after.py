"""Before and after: the base model's and the fine-tuned model's answers to held-out prompts, side by side.

After a causal LM is fine-tuned on prompt/completion pairs, both models answer up to MAX_PROMPTS held-out prompts
(the test split, else the rows held out for evaluation: never a training row) greedily through
`inference.generate`, the chat template applied as in training (`TrainConfig.chat_template`). What is stored:

- the prompts, references and both models' answers, in the dataset's order;
- chrF against the references for each model (sacrebleu's corpus chrF from per-prompt statistics, with its BCa
  interval over the prompts: `metrics.intervals.of_sacrebleu`). chrF, not a dataset's own style marker, because
  it says how close the answers came to the references whatever the dataset teaches;
- the fine-tuned model against its base on chrF over the same prompts (`stats.paired`: paired bootstrap interval
  of the difference, paired permutation test), and how many answers changed at all.

`compare` returns it as a dict (`Evaluation.before_after`); `summary`, `rows` and `card_lines` put it in words
for the Train page and the model card. Generating is extra: a failure is a note, never a lost model.
"""
from __future__ import annotations

import numpy as np

from ..errors import failure_message

MAX_PROMPTS = 15          # a glance, not a benchmark: 15 greedy answers per model take seconds on a CPU
MAX_NEW_TOKENS = 96       # base models may ramble; the references' length decides below this
SLACK_TOKENS = 16         # beyond the longest reference, so a fine-tuned answer is not cut at its end
METRIC = "chrf"


def applies(actor, cfg) -> bool:
    """A causal-LM fine-tune on prompt/completion pairs (a distilled student is compared by its own report)."""
    from .data_prep import lm_format

    return cfg.task == "causal-lm" and not cfg.distill and lm_format(actor, cfg) == "prompt-completion"


def held_out(actor, cfg) -> tuple[list[str], list[str], str]:
    """Up to MAX_PROMPTS (prompt, reference) pairs no training row holds: the test split's, else the
    validation split's (or the rows `data_prep` holds out of train), in the dataset's order; and their split."""
    from .. import data
    from . import data_prep

    frame = data.load_frame(actor, cfg.dataset)
    usable = (frame["prompt"].astype(str).str.strip() != "") & (frame["reference"].astype(str).str.strip() != "")
    rows, split = frame[usable & (frame["split"] == "test")], "test"
    if rows.empty:
        _, rows, _ = data_prep._frames(actor, cfg, ("prompt", "reference"))
        split = "validation" if (frame["split"] == "validation").any() else "held out of train"
    if rows is None or rows.empty:
        return [], [], split
    rows = rows.head(MAX_PROMPTS)
    return rows["prompt"].astype(str).tolist(), rows["reference"].astype(str).tolist(), split


def settings_for(cfg, tokenizer, references: list[str]):
    """Greedy, no penalties (a fine-tune is judged on what it learnt, not on decoding tricks), the chat template
    as in training, and room for the longest reference plus SLACK_TOKENS."""
    from ..generation import GenerationSettings

    longest = max((len(ids) for ids in tokenizer(references, add_special_tokens=False)["input_ids"]), default=0)
    return GenerationSettings(max_new_tokens=min(MAX_NEW_TOKENS, longest + SLACK_TOKENS), do_sample=False,
                              repetition_penalty=1.0, no_repeat_ngram_size=0, chat=cfg.chat_template, seed=0)


def compare(actor, cfg, model, tokenizer, reporter=None, name: str | None = None) -> dict:
    """The base (`cfg.model`, loaded as the registry gives it: CPU, float32) and the fine-tuned `model` answer the
    held-out prompts; their answers and chrF side by side. {} when it does not apply; {"note": why} when the
    answers could not be made."""
    try:  # the comparison is extra: whatever fails here (the dataset deleted meanwhile, …) must not lose the run
        if not applies(actor, cfg):
            return {}
        prompts, references, split = held_out(actor, cfg)
        if not prompts:
            return {"note": "No held-out prompts to answer (no test or validation rows): no before/after comparison."}
        name = name or cfg.name or cfg.default_name()
        settings = settings_for(cfg, tokenizer, references)
        before = answers(_base(actor, cfg), prompts, settings)
        after = answers(_wrapped(model, tokenizer, name), prompts, settings)
    except Exception as exc:  # the comparison is extra: a model that cannot answer must not lose the run
        return {"note": f"The before/after answers were not made: {failure_message(exc)}"}
    result = measure(cfg.model, name, prompts, references, before, after)
    result.update(split=split, settings=settings.as_dict())
    if reporter is not None:
        reporter.log(summary(result))
    return result


def _base(actor, cfg):
    from .. import registry

    return registry.load(actor, cfg.model, head="causal-lm", device="cpu", dtype="float32")


def _wrapped(model, tokenizer, name: str):
    from .. import inference

    return inference.wrap(model, tokenizer, "causal-lm", name)


def answers(loaded, prompts: list[str], settings) -> list[str]:
    """Greedy answers, dropout off for a model in training (and back on after)."""
    from .. import inference

    was_training = getattr(loaded.model, "training", False)
    loaded.model.eval()
    try:
        return [r.text.strip() for r in inference.generate(loaded, prompts, settings)]
    finally:
        loaded.model.train(was_training)


def measure(base: str, model: str, prompts: list[str], references: list[str], before: list[str],
            after: list[str]) -> dict:
    """chrF of each model's answers with its interval, the paired comparison, the count of changed answers."""
    from ..metrics.intervals import of_sacrebleu
    from ..stats import paired

    outcomes = [paired.Outcomes(who, chrf_stats(texts, references), chrf_of) for who, texts in
                ((base, before), (model, after))]
    comparison = paired.compare(outcomes, metric=METRIC, adjust="none", seed=0)[0]
    return {"base": base, "model": model, "metric": METRIC, "n": len(prompts), "prompts": prompts,
            "references": references, "before": before, "after": after,
            "changed": sum(b != a for b, a in zip(before, after)),
            "intervals": {"before": of_sacrebleu(METRIC, before, references).to_dict(),
                          "after": of_sacrebleu(METRIC, after, references).to_dict()},
            "comparison": comparison.to_dict()}


def chrf_stats(predictions: list[str], references: list[str]) -> np.ndarray:
    """sacrebleu's chrF statistics per answer (one row each): their column sums give corpus chrF."""
    from sacrebleu.metrics import CHRF

    return np.asarray(CHRF()._extract_corpus_statistics(list(predictions), [list(references)]), dtype=float)


def chrf_of(sums) -> np.ndarray:
    """Corpus chrF of each row of summed statistics, scored by sacrebleu itself."""
    from sacrebleu.metrics import CHRF

    scorer = CHRF()
    return np.array([scorer._compute_score_from_stats(list(row)).score for row in np.atleast_2d(sums)])


# ---------------------------------------------------------------- in words
def _interval(found: dict | None) -> str:
    from ..stats.intervals import Interval

    ci = Interval.from_dict(found)
    return ci.text(digits=1) if ci else "—"


def summary(result: dict | None) -> str:
    """One sentence: chrF before and after with their intervals, how many answers changed, the verdict."""
    if not result:
        return ""
    if "note" in result:
        return result["note"]
    found = result["intervals"]
    return (f"Held-out answers ({result['n']} {result['split']} prompts, greedy): chrF {_interval(found['before'])} "
            f"before ({result['base']}), {_interval(found['after'])} after; {result['changed']} of {result['n']} "
            f"answers changed. {result['comparison']['verdict']}")


def rows(result: dict | None) -> list[dict]:
    """One row per prompt: prompt, reference, the base's answer, the fine-tuned model's answer."""
    if not result or "note" in result:
        return []
    return [{"prompt": p, "reference": r, "before": b, "after": a} for p, r, b, a in
            zip(result["prompts"], result["references"], result["before"], result["after"])]


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def card_lines(result: dict | None) -> list[str]:
    """The model card's "Before and after" section (markdown), or nothing."""
    if not result:
        return []
    lines = ["", "## Before and after", "", summary(result)]
    if "note" not in result:
        lines += ["", f"| prompt | reference | {_cell(result['base'])} (before) | this model (after) |",
                  "|---|---|---|---|"]
        lines += [f"| {_cell(r['prompt'])} | {_cell(r['reference'])} | {_cell(r['before'])} | {_cell(r['after'])} |"
                  for r in rows(result)]
    return lines
