"""What a model reads: texts become token ids cut at the model's context length, and the cut is recorded.

One rule for every feature: an input longer than the model takes is cut to `limit(loaded)` tokens (the context
length decided once at load, `Capabilities.max_context`), or to a shorter `max_length` a caller asks for and
says so. `Tokens` keeps each row's length before the cut, so a page can say "612 tokens, only the first 512 used".
"""
from __future__ import annotations

from dataclasses import dataclass


def limit(loaded, max_length: int | None = None) -> int:
    """The most tokens one input gets: the model's context, or `max_length` when the caller asks for fewer."""
    context = int(loaded.capabilities.max_context)
    return min(context, int(max_length)) if max_length else context


@dataclass
class Tokens:
    """Token ids per row (and token type ids for models that take them), each at most `limit` long."""
    ids: list[list[int]]
    type_ids: list[list[int]] | None
    original: list[int]          # each row's length before the cut
    limit: int                   # the most tokens a row got
    context: int = 0             # the model's context (0: the same as `limit`)

    @property
    def lengths(self) -> list[int]:
        return [len(row) for row in self.ids]

    def truncated(self, i: int) -> bool:
        return self.original[i] > len(self.ids[i])

    def note(self, i: int) -> str:
        """What was done to row i, in words ("" when nothing)."""
        if not self.truncated(i):
            return ""
        if self.context and self.limit < self.context:  # a shorter cut the caller asked for
            return (f"The text has {self.original[i]} tokens; only the first {len(self.ids[i])} tokens are used here "
                    f"(at most {self.limit}; the model reads up to {self.context}).")
        return (f"The text has {self.original[i]} tokens; the model reads at most {self.limit}, so only the first "
                f"{len(self.ids[i])} tokens are used.")

    def notes(self) -> list[str]:
        return [self.note(i) for i in range(len(self.ids))]

    def cut_count(self) -> int:
        return sum(self.truncated(i) for i in range(len(self.ids)))


def tokenize(loaded, texts: list[str], pairs: list[str] | None = None, max_length: int | None = None,
             add_special_tokens: bool = True) -> Tokens:
    """Tokenise every text once, in bulk, without padding; rows over the limit are tokenised again with the
    tokenizer's own truncation (so special tokens stay where the model expects them)."""
    tok = loaded.tokenizer
    cap, context = limit(loaded, max_length), limit(loaded)
    texts = [str(t) for t in texts]
    pairs = None if pairs is None else [str(p) for p in pairs]
    if not texts:
        return Tokens([], None, [], cap, context)
    # under the model's lock: a truncating call switches the (shared, Rust) tokenizer's truncation on and off again
    with loaded.lock:
        full = tok(texts, pairs, add_special_tokens=add_special_tokens, truncation=False, padding=False,
                   return_attention_mask=False, verbose=False)
        ids = [list(row) for row in full["input_ids"]]
        types = [list(row) for row in full["token_type_ids"]] if "token_type_ids" in full else None
        original = [len(row) for row in ids]
        long_rows = [i for i, n in enumerate(original) if n > cap]
        if long_rows:
            cut = tok([texts[i] for i in long_rows], None if pairs is None else [pairs[i] for i in long_rows],
                      add_special_tokens=add_special_tokens, truncation=True, max_length=cap, padding=False,
                      return_attention_mask=False)
            for j, i in enumerate(long_rows):
                ids[i] = list(cut["input_ids"][j])[:cap]
                if types is not None:
                    types[i] = list(cut["token_type_ids"][j])[:cap]
    return Tokens(ids, types, original, cap, context)


def pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def wrap(model, tokenizer, head: str, name: str = "model"):
    """A model that is not (yet) in the registry (a variant being built, a model being trained) in the shape the
    four calls take: capabilities decided by the one rule (`capabilities.of_model`), its own lock."""
    import threading
    from types import SimpleNamespace

    from .. import capabilities

    caps = capabilities.of_model(model, tokenizer, head, head, False, False)
    if head == "causal-lm":  # the caller says it is one (a model in training, wrapped by peft, may not say so itself)
        from dataclasses import replace

        caps = replace(caps, provides=caps.provides | {capabilities.CAUSAL_LM, capabilities.GENERATES_TEXT})
    device = str(getattr(model, "device", "cpu"))
    return SimpleNamespace(model=model, tokenizer=tokenizer, device=device, capabilities=caps, head=head,
                           labels=list(caps.labels), head_is_new=False, lock=threading.RLock(),
                           entry=SimpleNamespace(name=name, source="local", location=""))
