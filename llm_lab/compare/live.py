"""Typed prompts on the Compare page: stream each model's answer into its column, then assemble.

The page iterates `pieces(...)` with `st.write_stream`; the final `GenerationResult` lands in
`sink["result"]`. `collect(...)` turns what was streamed (and each model's error) into the same
`Comparison` a batched run gives.
"""
from . import runs


def pieces(loader, model: str, prompt, settings, sink: dict):
    """Text pieces of one model's answer as they are generated (str only). `prompt` is a string or a conversation
    (a list of role/content turns; inference/chat.py)."""
    from ..inference import stream

    loaded = loader(model, "causal-lm")
    for piece in stream(loaded, prompt, settings):
        if isinstance(piece, str):
            yield piece
        else:
            sink["result"] = piece


def stats_line(result) -> str:
    lp = "–" if result.mean_logprob is None else f"{result.mean_logprob:.3f}"
    line = (f"{result.new_tokens} tokens · {result.latency_s:.2f}s · {result.tokens_per_s:.1f} tok/s · "
            f"mean logprob {lp} · stopped: {result.stop_reason}")
    if getattr(result, "first_token_s", None) is not None:  # an endpoint's stream: time to its first text
        line += f" · first text after {result.first_token_s:.2f}s"
    return line + (f" · ⚠ {result.note}" if result.note else "")


def collect(models: list[str], inputs: list[dict], results: dict, errors: dict, settings) -> runs.Comparison:
    """results: {model: [GenerationResult per input]}; errors: {model: message}."""
    outputs = {}
    for m in models:
        if m in errors or len(results.get(m, [])) != len(inputs):
            outputs[m] = runs.ModelOutput(errors.get(m, "No output."), [], 0.0, {})
        else:
            rows = [r.as_dict() for r in results[m]]
            outputs[m] = runs.ModelOutput(None, rows, sum(r["latency_s"] for r in rows), {})
    return runs.assemble("generation", models, inputs, outputs, settings.as_dict(), {"type": "typed", "streamed": True})


def parse_stops(text: str) -> list[str]:
    """Stop strings typed in one box, separated by `|`; `\\n` and `\\t` stand for newline and tab."""
    return [s.replace("\\n", "\n").replace("\\t", "\t") for s in (text or "").split("|") if s]


def format_stops(stops: list[str]) -> str:
    """The text of the stop-strings box that `parse_stops` reads back as `stops`."""
    return "|".join(s.replace("\n", "\\n").replace("\t", "\\t") for s in stops or [])
