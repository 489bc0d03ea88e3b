"""How good a causal LM's text is: held-out perplexity, distinct-2 and repetition of greedy continuations.

What the built-in models' cards report and their tests check (`python -m llm_lab models quality NAME`).
- Held-out perplexity: on source files of the standard library's own test suite, which the `python`
  corpus leaves out (`corpora.SKIP_DIRS`), cut into context-sized windows. Per token, so two models compare
  only when they share a tokenizer; bits per byte compares any two.
- distinct-2 (Li et al., 2016): distinct word bigrams / all word bigrams over all continuations.
- repetition (seq-rep-4, Welleck et al., 2019): per continuation, 1 − distinct 4-grams / all 4-grams, averaged.
"""
import math
import sysconfig
from pathlib import Path

# Ordinary prompts of the built-ins' domain: Python code and prose about Python.
PROMPTS = [
    "A list in Python is",
    "def fibonacci(n):",
    "The function returns",
    "To read a file line by line,",
    "class Stack:\n    \"\"\"",
    "An exception is raised when",
    "import os\n\n\ndef",
    "A dictionary maps",
]
HELD_OUT_FILES = ["test/test_bisect.py", "test/test_textwrap.py", "test/test_heapq.py", "test/test_string.py"]


def words(text: str) -> list[str]:
    return text.split()


def ngrams(tokens: list[str], n: int) -> list[tuple]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(texts: list[str], n: int = 2) -> float:
    grams = [g for t in texts for g in ngrams(words(t), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repetition(texts: list[str], n: int = 4) -> float:
    rates = []
    for t in texts:
        grams = ngrams(words(t), n)
        if grams:
            rates.append(1 - len(set(grams)) / len(grams))
    return sum(rates) / len(rates) if rates else 0.0


def held_out_text(max_chars: int = 60_000) -> str:
    root = Path(sysconfig.get_paths()["stdlib"])
    parts = [(root / f).read_text(encoding="utf-8", errors="replace") for f in HELD_OUT_FILES if (root / f).exists()]
    return "\n\n".join(parts)[:max_chars]


def perplexity(loaded, text: str, window: int | None = None) -> dict:
    """Token perplexity and bits per byte of `text`, scored as the benchmark's language-modelling task scores it
    (`inference.loglikelihood_rolling`: a start token in front, context-sized disjoint windows)."""
    from . import inference

    if not text.strip():
        raise ValueError("No held-out text to score: this Python has no standard-library test files.")
    rolled = inference.loglikelihood_rolling(loaded, [text], max_length=window)[0]
    return {"perplexity": inference.perplexity([rolled]),
            "bits_per_byte": -rolled.logprob / math.log(2) / max(1, len(text.encode())), "tokens": len(rolled.logprobs)}


def quality(loaded, prompts: list[str] | None = None, settings=None) -> dict:
    """Greedy continuations (plain, and with the suggested anti-repetition settings) and their statistics."""
    from .generation import GenerationSettings, suggested
    from .inference import generate

    prompts = prompts or PROMPTS
    report = {"held_out": perplexity(loaded, held_out_text())}
    for label, s in (("greedy", settings or GenerationSettings(max_new_tokens=48)), ("suggested", suggested())):
        outs = [r.text for r in generate(loaded, prompts, s)]
        report[label] = {"distinct_2": distinct_n(outs), "repetition_4": repetition(outs),
                         "samples": dict(zip(prompts, outs))}
    return report


# ---------------------------------------------------------------- the built-ins' cards and the size ladder
QUALITY_FILE = "llm_lab_quality.json"


def card_section(report: dict, parameters: int) -> str:
    """The model card's "Quality" section: the numbers and every greedy continuation, as measured."""
    held, lines = report["held_out"], []
    lines += ["## Quality", "",
              f"Measured by `python -m llm_lab models quality` ({parameters:,} parameters).", "",
              "| measure | value |", "|---|---|",
              f"| held-out perplexity (stdlib test files, never trained on; {held['tokens']:,} tokens) | "
              f"{held['perplexity']:.2f} |",
              f"| held-out bits per byte | {held['bits_per_byte']:.3f} |"]
    for label in ("greedy", "suggested"):
        lines.append(f"| distinct-2, {label} | {report[label]['distinct_2']:.3f} |")
        lines.append(f"| repetition (seq-rep-4), {label} | {report[label]['repetition_4']:.3f} |")
    lines += ["", "\"greedy\" is plain greedy decoding; \"suggested\" adds the dashboard's defaults for small models "
              "(repetition penalty 1.2, no repeated 3-gram). Continuations (suggested settings, 48 new tokens):", ""]
    for prompt, text in report["suggested"]["samples"].items():
        lines += ["```text", prompt + text, "```", ""]
    return "\n".join(lines)


def ladder(entries) -> list[dict]:
    """Size and measured quality of the causal LMs among `entries` that carry a quality record."""
    import json

    rows = []
    for entry in entries:
        path = Path(entry.location) / QUALITY_FILE
        if entry.head == "causal-lm" and path.exists():
            q = json.loads(path.read_text())
            rows.append({"model": entry.name, "parameters": q["parameters"],
                         "held-out perplexity": round(q["held_out"]["perplexity"], 2),
                         "bits per byte": round(q["held_out"]["bits_per_byte"], 3),
                         "distinct-2": round(q["suggested"]["distinct_2"], 3),
                         "repetition": round(q["suggested"]["repetition_4"], 3)})
    return sorted(rows, key=lambda r: r["parameters"])
