"""loglikelihood: how likely a causal LM finds a continuation after a context, and every token of a long text.

The shapes of lm-evaluation-harness's `LM.loglikelihood` and `LM.loglikelihood_rolling`:
- `loglikelihood(loaded, [(context, continuation), ...])`: per pair, the summed log-probability of the
  continuation's tokens and whether greedy decoding would have produced them. The context is cut from the left
  when context + continuation exceed the model's context (said in the result).
- `loglikelihood_rolling(loaded, texts)`: per text, the log-probability of every token, a start token (BOS,
  else EOS) in front so the first token is predicted too; a text longer than the context is scored in windows
  that predict `stride` new tokens each (default: the whole context, lm-eval's disjoint windows) with the tokens
  before them as context.
Both come down to `score_tokens`: requests of (input ids, target ids, n), where the model reads the input, predicts
the next token at every position, and the last n predictions are scored against the last n targets.

An endpoint model (`capabilities.endpoint`) whose server scores (`capabilities.SCORES_TEXT`, decided by the probe
in endpoints.py) has no tokenizer here: both calls go through `score_texts`, text-level requests of (text, start)
sent with echo + logprobs. A pair is `context + continuation` with start = len(context) after lm-eval's move of
the context's trailing spaces (`text_requests`); the tokens after those of the context alone are scored, with
the server's own tokenizer (lm-eval's split; endpoints.py says why not character offsets). A whole text (rolling) is one request with start 0:
its first token has no log-probability over echo (nothing precedes it, and the server's start token is not
known here), so it is left out of the sum and of the token count (`Rolling.unscored` says how many); windows and
`max_length` are the server's business (a text longer than its context is refused by it, in its words).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import capabilities as caps
from ..batching import pad, run_batched
from ..errors import ModelError
from .forward import lm_logits
from .inputs import limit, pad_id

DEFAULT_BATCH = 32
LOGIT_BUDGET_BYTES = 512 * 2**20  # float32 logits of one batch (rows x tokens x vocabulary), before log-softmax
SCORE = caps.needs("Log-likelihood scoring of token ids", caps.CAUSAL_LM,
                   hint="Pick a causal LM whose weights LLM Lab loads (an endpoint scores text through "
                        "inference.loglikelihood instead).")
SCORE_TEXT = caps.SCORE  # loglikelihood / loglikelihood_rolling: a local causal LM, or an endpoint that scores


@dataclass
class TokenScores:
    logprobs: list[float]        # of the scored tokens
    greedy: bool                 # every scored token was the model's top choice
    unscored: int = 0            # an endpoint's tokens without a log-probability (a text's first), left out
    unscored_chars: int = 0      # the characters of those tokens


class Scores(list):
    """`score_tokens`'s answer: a TokenScores (or None: not asked for) per request, and the batch size that ran."""
    batch_size: int = DEFAULT_BATCH


@dataclass
class Loglikelihood:
    logprob: float
    greedy: bool
    tokens: int                  # continuation tokens scored
    truncated: bool = False      # the context was cut from the left to fit
    note: str = ""


@dataclass
class Rolling:
    logprobs: list[float] = field(default_factory=list)   # one per token of the text
    windows: int = 0
    unscored: int = 0            # tokens without a log-probability (an endpoint's first token), not in logprobs
    unscored_chars: int = 0      # the characters of those tokens (at the text's start)

    @property
    def logprob(self) -> float:
        return float(np.sum(self.logprobs))


def start_token(tokenizer) -> int:
    """The token put in front of a text so its first token is predicted: BOS, else EOS, else padding, else 0."""
    for tid in (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id):
        if tid is not None:
            return int(tid)
    return 0


def score_tokens(loaded, requests: list[tuple[list[int], list[int], int]], *, batch_size: int | None = None,
                 positions: list[int] | None = None, on_batch=None) -> Scores:
    """Per request, the log-probabilities of its last n targets; longest first, batches halve on out-of-memory
    and hold at most LOGIT_BUDGET_BYTES of logits (a 50k-word vocabulary and 1,024-token windows: two a batch).
    `positions` runs only those requests (the others stay None); `on_batch(rows, scores)` hears of each batch."""
    import torch
    import torch.nn.functional as F

    caps.require(SCORE, loaded)
    model, device, pid = loaded.model, loaded.device, pad_id(loaded.tokenizer)
    out = Scores([None] * len(requests))
    todo = list(range(len(requests))) if positions is None else list(positions)

    @torch.inference_mode()
    def forward(batch):
        ids, mask = pad([requests[p][0] for p in batch], pid)
        targets, _ = pad([requests[p][1] for p in batch], 0)
        logits = lm_logits(model, input_ids=ids.to(device), attention_mask=mask.to(device)).float()
        logp = F.log_softmax(logits, dim=-1)
        picked = logp.gather(-1, targets.to(device).unsqueeze(-1)).squeeze(-1).cpu().numpy()
        top = logp.argmax(-1).cpu().numpy()
        scores = []
        for row, p in enumerate(batch):
            length, n = len(requests[p][0]), requests[p][2]
            target = np.asarray(requests[p][1][length - n:length])
            scores.append(TokenScores(picked[row, length - n:length].tolist(),
                                      bool((top[row, length - n:length] == target).all())))
        return scores

    def collect(batch, scores):
        for p, s in zip(batch, scores):
            out[p] = s
        if on_batch:
            on_batch(batch, scores)

    if todo:
        lengths = np.array([len(r[0]) for r in requests])
        config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        vocab = int(getattr(config, "vocab_size", 0) or 50_000)
        budget = max(1, LOGIT_BUDGET_BYTES // (vocab * 4))  # tokens of logits a batch may hold
        with loaded.lock:
            out.batch_size = run_batched(todo, lengths, forward, int(batch_size or DEFAULT_BATCH), loaded.device,
                                         collect, token_budget=budget)
    return out


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) exactly as lm-evaluation-harness's causal `_encode_pair` makes them, so
    our scores equal lm-eval's `hf` backend (and lm-eval's clients against `serve`): spaces at the end of the
    context move to the continuation; the whole text is encoded with the tokenizer's own special tokens (a
    tokenizer that adds BOS gets it, as in lm-eval) and the continuation is what follows the context's own
    encoding — so a token spanning the boundary belongs to the continuation. An empty context reads the start
    token (BOS, else EOS), unless the continuation itself begins with it."""
    context, continuation = str(context), str(continuation)
    if not context:
        cont = tokenizer(continuation, add_special_tokens=False)["input_ids"]
        first = start_token(tokenizer)
        return ([first], cont) if not cont or cont[0] != first else (cont[:1], cont[1:])
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tokenizer(context + continuation)["input_ids"]
    ctx = tokenizer(context)["input_ids"]
    return ctx, whole[len(ctx):]


def pair_requests(loaded, pairs: list[tuple[str, str]], max_length: int | None = None):
    """(requests, cut flags) for (context, continuation) pairs, tokenised as lm-eval does (`encode_pair`)."""
    caps.require(SCORE, loaded)
    tok = loaded.tokenizer
    cap = limit(loaded, max_length)
    requests, cut = [], []
    for context, continuation in pairs:
        ctx, cont = encode_pair(tok, context, continuation)
        whole = (ctx + cont)[-(cap + 1):]
        requests.append((whole[:-1], whole[1:], min(len(cont), len(whole) - 1)))
        cut.append(len(ctx) + len(cont) > cap + 1)
    return requests, cut


def text_requests(pairs: list[tuple[str, str]]) -> list[tuple[str, int]]:
    """An endpoint's (text, start) per (context, continuation): the context's trailing spaces move to the
    continuation (as lm-eval's `_encode_pair` does), start is where the continuation begins."""
    out = []
    for i, (context, continuation) in enumerate(pairs):
        context, continuation = str(context), str(continuation)
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        if not context:
            raise ModelError(f"Pair {i + 1} has an empty context: over an endpoint the first token of a text has no "
                             "log-probability (echo gives none), so a continuation needs a context before it.")
        out.append((context + continuation, len(context)))
    return out


def score_texts(loaded, requests: list[tuple[str, int]], *, positions: list[int] | None = None,
                on_done=None) -> list[TokenScores | None]:
    """An endpoint's answer to text-level requests (text, start): per request the TokenScores of the text's tokens
    after those of `text[:start]` (see endpoints.score_texts); `positions` and `on_done(position, scores)` as
    `score_tokens`'s."""
    caps.require(SCORE_TEXT, loaded)
    if not loaded.capabilities.endpoint:
        raise ModelError(f"{loaded.entry.name} is loaded here: score it by tokens (score_tokens), not over HTTP.")

    def scores(answer) -> TokenScores:
        logprobs, greedy, unscored, chars = answer
        return TokenScores(logprobs, greedy, unscored, chars)

    def heard(position, answer) -> None:
        if on_done:
            on_done(position, scores(answer))

    answers = loaded.model.score_texts(requests, positions, heard)
    return [None if a is None else scores(a) for a in answers]


def _endpoint_loglikelihood(loaded, pairs, max_length) -> list[Loglikelihood]:
    note = (f"max_length {max_length} is not applied over an endpoint: the server reads the whole text (its own "
            "context limit applies)." if max_length else "")
    scored = score_texts(loaded, text_requests(pairs))
    return [Loglikelihood(float(np.sum(s.logprobs)), s.greedy, len(s.logprobs), False, note) for s in scored]


def loglikelihood(loaded, pairs: list[tuple[str, str]], *, max_length: int | None = None,
                  batch_size: int | None = None) -> list[Loglikelihood]:
    """Per (context, continuation): log P(continuation | context), summed over its tokens."""
    if loaded.capabilities.endpoint:  # text over HTTP: the server's tokenizer, echo + logprobs
        return _endpoint_loglikelihood(loaded, pairs, max_length)
    requests, cut = pair_requests(loaded, pairs, max_length)
    scores = score_tokens(loaded, requests, batch_size=batch_size)
    cap = limit(loaded, max_length)
    return [Loglikelihood(float(np.sum(s.logprobs)), s.greedy, len(s.logprobs), c,
                          f"Context and continuation are longer than the {cap} tokens read: the context was cut "
                          "from the left (and the continuation's start too, when it alone is longer)." if c else "")
            for s, c in zip(scores, cut)]


def rolling_windows(loaded, texts: list[str], max_length: int | None = None, stride: int | None = None):
    """(requests, owner: the text each window belongs to, context, stride) for `loglikelihood_rolling`."""
    caps.require(SCORE, loaded)
    tok = loaded.tokenizer
    context = limit(loaded, max_length)
    stride = min(stride or context, context)
    first = start_token(tok)
    encoded = tok([str(t) for t in texts], add_special_tokens=False, return_attention_mask=False)["input_ids"] \
        if texts else []
    requests, owner = [], []
    for i, ids in enumerate(encoded):
        for window in windows(ids, first, context, stride):
            requests.append(window)
            owner.append(i)
    return requests, owner, context, stride


def windows(ids: list[int], first: int, context: int, stride: int) -> list[tuple[list[int], list[int], int]]:
    """Score requests covering every token of `ids` once: `first` in front, at most `context` tokens read per
    window, `stride` new tokens predicted per window with the tokens before them as context."""
    tokens = [first] + list(ids)
    out, a = [], 1
    while a < len(tokens):
        b = min(a + stride, len(tokens))
        s = max(0, b - 1 - context)
        out.append((tokens[s:b - 1], tokens[s + 1:b], b - a))
        a = b
    return out


def loglikelihood_rolling(loaded, texts: list[str], *, max_length: int | None = None, stride: int | None = None,
                          batch_size: int | None = None) -> list[Rolling]:
    """Per text, the log-probability of each of its tokens (see the module's words on windows; an endpoint's
    first token of each text is left out, `Rolling.unscored`)."""
    if loaded.capabilities.endpoint:
        kept = [i for i, t in enumerate(texts) if str(t)]  # an empty text has no tokens to score
        out = [Rolling() for _ in texts]
        for i, s in zip(kept, score_texts(loaded, [(str(texts[i]), 0) for i in kept])):
            out[i] = Rolling(list(s.logprobs), 1, s.unscored, s.unscored_chars)
        return out
    requests, owner, _, _ = rolling_windows(loaded, texts, max_length, stride)
    scores = score_tokens(loaded, requests, batch_size=batch_size)
    out = [Rolling() for _ in texts]
    for i, s in zip(owner, scores):
        out[i].logprobs.extend(s.logprobs)
        out[i].windows += 1
    return out


def perplexity(rolled: list[Rolling]) -> float:
    """Token perplexity over texts scored by `loglikelihood_rolling` (every token weighs the same)."""
    total = sum(len(r.logprobs) for r in rolled)
    return float(np.exp(-sum(r.logprob for r in rolled) / max(1, total)))
