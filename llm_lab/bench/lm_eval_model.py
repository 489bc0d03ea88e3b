"""LLM Lab's inference layer as an lm-evaluation-harness model (`lm_eval.api.model.LM`), registered as `llm-lab`.

`LabLM(loaded)` wraps a `registry.LoadedModel` and answers lm-eval's three request kinds through
`llm_lab.inference`, the one place a model runs:
- `loglikelihood`: `inference.loglikelihood` (pairs tokenised like lm-eval's `_encode_pair`);
- `loglikelihood_rolling`: `inference.loglikelihood_rolling` (a start token, BOS else EOS, and disjoint
  windows, like lm-eval's `hf` backend);
- `generate_until`: `inference.generate` with the request's `until` stop strings, `max_gen_toks`, and
  `do_sample`/`temperature`/`top_p`/`top_k`; the raw prompt (no chat template), as lm-eval sends it.
Nothing here assumes weights: an endpoint model answers whatever the inference layer lets it answer, and the
rest is refused there with the one capability message.

From the command line (lm-eval finds models only in modules that were imported, so this module runs its CLI):

    python -m llm_lab.bench.lm_eval_model --model llm-lab --model_args model=tiny-gpt --tasks arc_easy
"""
from __future__ import annotations

import hashlib
import json

import lm_eval.models  # noqa: F401  (lm-eval fills its own models in only while its registry is empty: first)
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from .. import inference
from ..errors import LabError

DEFAULT_MAX_GEN_TOKS = 256   # lm-eval's own default when a task names none
# generation kwargs lm-eval tasks send, and the GenerationSettings field each becomes
GEN_FIELDS = {"do_sample": "do_sample", "temperature": "temperature", "top_p": "top_p", "top_k": "top_k",
              "repetition_penalty": "repetition_penalty", "no_repeat_ngram_size": "no_repeat_ngram_size"}


CHUNK_REQUESTS = 128         # requests answered between progress reports (and cancel checks)


class LmEvalRequestError(LabError):
    pass


def request_position(kind: str, request) -> int:
    """A request's place in the partial outputs: its content's hash (lm-eval's request order need not hold)."""
    text = json.dumps([kind, request], sort_keys=True, default=str)
    return int(hashlib.sha256(text.encode()).hexdigest()[:15], 16)


@register_model("llm-lab")
class LabLM(LM):
    """An lm-eval model over a loaded LLM Lab model. `progress(done, total, what)` hears of each request kind."""

    def __init__(self, loaded=None, model: str | None = None, batch_size=None, max_length=None, seed: int = 0,
                 progress=None, partial=None, **_ignored):
        super().__init__()
        if loaded is None:
            loaded = _load_by_name(model)
        self.loaded = loaded
        self.batch = int(batch_size) if str(batch_size or "").isdigit() else None
        self.max_length = int(max_length) if max_length else None
        self.seed = int(seed)
        self.progress = progress or (lambda done, total, what: None)
        self.partial = partial  # cache.Partial: answers kept across a cancel or a crash, so a rerun resumes
        self.counts = {"loglikelihood": 0, "loglikelihood_rolling": 0, "generate_until": 0}

    # ------------------------------------------------------------ lm-eval's three calls
    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        pairs = [(str(r.args[0]), str(r.args[1])) for r in requests]

        def score(chunk):
            scored = inference.loglikelihood(self.loaded, chunk, max_length=self.max_length, batch_size=self.batch)
            return [[float(s.logprob), bool(s.greedy)] for s in scored]

        out = [(float(a[0]), bool(a[1])) for a in self._answer("loglikelihood", pairs, pairs, score)]
        for pair, answer in zip(pairs, out):
            self.cache_hook.add_partial("loglikelihood", pair, answer)
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        texts = [str(r.args[0]) for r in requests]

        def score(chunk):
            rolled = inference.loglikelihood_rolling(self.loaded, chunk, max_length=self.max_length,
                                                     batch_size=self.batch)
            if any(r.unscored for r in rolled):  # lm-eval divides by every word/byte: the sum must cover them all
                raise LmEvalRequestError(
                    f"{self.loaded.entry.name} is an endpoint: over HTTP a text's first token has no "
                    "log-probability (echo gives none), so lm-eval's loglikelihood_rolling (word_perplexity, "
                    "bits_per_byte) would leave it out and look better than it is. Run this task on a local "
                    "model, or use LLM Lab's language_modeling task, which reports the tokens it scores.")
            return [float(r.logprob) for r in rolled]

        out = [float(a) for a in self._answer("loglikelihood_rolling", texts, texts, score)]
        for text, answer in zip(texts, out):
            self.cache_hook.add_partial("loglikelihood_rolling", (text,), answer)
        return out

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Requests with the same generation kwargs run through `inference.generate` together (batched there)."""
        items = [(str(r.args[0]), json.dumps(r.args[1], sort_keys=True, default=str)) for r in requests]

        def generate(chunk):
            groups: dict[str, list[int]] = {}
            for i, (_, key) in enumerate(chunk):
                groups.setdefault(key, []).append(i)
            texts: list = [None] * len(chunk)
            for key, idx in groups.items():
                results = inference.generate(self.loaded, [chunk[i][0] for i in idx],
                                             generation_settings(json.loads(key), self.seed))
                for i, result in zip(idx, results):
                    texts[i] = result.text
            return texts

        # the same kwargs next to each other: whole batches within a chunk
        order = sorted(range(len(items)), key=lambda i: items[i][1])
        answers = self._answer("generate_until", [items[i] for i in order], [items[i] for i in order], generate)
        out: list = [None] * len(items)
        for i, text in zip(order, answers):
            out[i] = str(text)
        for r, text in zip(requests, out):
            self.cache_hook.add_partial("generate_until", r.args, text)
        return out

    def _answer(self, kind: str, requests: list, keys: list, compute) -> list:
        """`compute` over the requests a chunk at a time: each chunk's answers kept in the partial outputs
        (a resumed run skips them) and reported, so a long task shows progress and can be cancelled."""
        positions = [request_position(kind, k) for k in keys]
        kept = self.partial.outputs if self.partial is not None else {}
        todo = [i for i, p in enumerate(positions) if p not in kept]
        answers = {p: kept[p] for p in positions if p in kept}
        done = len(requests) - len(todo)
        self.progress(done, len(requests), kind)
        step = max(CHUNK_REQUESTS, self.batch or 1)  # at least one full batch
        for start in range(0, len(todo), step):
            idx = todo[start:start + step]
            values = compute([requests[i] for i in idx])
            answers.update({positions[i]: v for i, v in zip(idx, values)})
            if self.partial is not None:
                self.partial.add([positions[i] for i in idx], values)
            done += len(idx)
            self.progress(done, len(requests), kind)
        self.counts[kind] += len(requests)
        return [answers[p] for p in positions]

    # ------------------------------------------------------------ what lm-eval records about the model
    @property
    def tokenizer_name(self) -> str:
        return str(self.loaded.entry.name)

    def get_model_info(self) -> dict:
        entry = self.loaded.entry
        return {"llm_lab_model": entry.name, "llm_lab_source": entry.source, "llm_lab_location": entry.location}


def generation_settings(gen_kwargs: dict, seed: int = 0):
    """lm-eval's generation kwargs as LLM Lab's GenerationSettings (raw prompt, no chat template); a kwarg with
    no counterpart is refused by name, never dropped."""
    from lm_eval.models.utils import normalize_gen_kwargs

    from ..generation import GenerationSettings

    kwargs = normalize_gen_kwargs(dict(gen_kwargs or {}), DEFAULT_MAX_GEN_TOKS)
    until = kwargs.pop("until", None) or []
    until = [until] if isinstance(until, str) else list(until)
    values = {"max_new_tokens": int(kwargs.pop("max_gen_toks")), "stop": [str(s) for s in until], "chat": False,
              "seed": seed}
    for key in list(kwargs):
        if key in GEN_FIELDS:
            values[GEN_FIELDS[key]] = kwargs.pop(key)
    unknown = [k for k in kwargs if kwargs[k] is not None]
    if unknown:
        raise LmEvalRequestError(f"The task's generation_kwargs {', '.join(map(repr, sorted(unknown)))} have no "
                                 f"counterpart in LLM Lab's generation; use {', '.join(['until', 'max_gen_toks'] + list(GEN_FIELDS))}.")
    if not values.get("do_sample"):
        values.pop("temperature", None)  # greedy: lm-eval sets temperature 0, which sampling would refuse
    return GenerationSettings.from_dict(values)


def _load_by_name(name: str | None):
    """The registry model `name` for the command line (the local user), with the head text needs."""
    from .. import capabilities as caps
    from .. import registry
    from ..access import LOCAL

    if not name:
        raise LmEvalRequestError("Name the LLM Lab model: --model_args model=NAME (a name from `python -m llm_lab "
                                 "models list`).")
    entry = registry.resolve(LOCAL, name)
    head = caps.require_entry(caps.GENERATE, entry)
    return registry.load(LOCAL, name, head=head)


def main() -> None:
    """lm-eval's own command line, with the `llm-lab` model registered."""
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()


if __name__ == "__main__":
    main()
