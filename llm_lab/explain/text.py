"""Tokenising for explanations: truncation with a note, readable tokens, baseline token ids."""
from dataclasses import dataclass, field

import torch

from .. import inference
from ..errors import LabError


class InputError(LabError):
    pass


@dataclass
class Encoded:
    input_ids: torch.Tensor          # (1, T) on the model's device
    tokens: list[str]                # readable token strings
    special: list[bool]              # True for [CLS]/[SEP]/BOS … (kept in baselines)
    notes: list[str] = field(default_factory=list)
    truncated: bool = False
    original_length: int = 0


def max_length(loaded, cap: int | None = None) -> int:
    """The model's context length (`inference.limit`, decided once at load), at most `cap`."""
    return inference.limit(loaded, cap)


def readable(tokenizer, ids: list[int]) -> list[str]:
    """Token strings a person can read: 'Ġword' → ' word', '##ing' stays (WordPiece convention)."""
    out = []
    for tok in tokenizer.convert_ids_to_tokens(ids):
        tok = str(tok)
        if tok.startswith("Ġ") or tok.startswith("▁"):
            tok = " " + tok[1:]
        tok = tok.replace("Ċ", "\\n").replace("ĉ", "\\t")
        out.append(tok)
    return out


def encode(loaded, text: str, cap: int | None = None, add_special_tokens: bool = True) -> Encoded:
    if text is None or not str(text).strip():
        raise InputError("The text is empty: type or pick some text to explain.")
    tok = loaded.tokenizer
    tokens = inference.tokenize(loaded, [str(text)], max_length=cap, add_special_tokens=add_special_tokens)
    ids, truncated = tokens.ids[0], tokens.truncated(0)
    notes = [tokens.note(0)] if truncated else []
    if not ids:
        raise InputError("The text produced no tokens for this model's tokenizer.")
    special_ids = set(tok.all_special_ids or [])
    specials = [i in special_ids for i in ids] if add_special_tokens else [False] * len(ids)
    return Encoded(torch.tensor([ids], device=loaded.device), readable(tok, ids), specials, notes, truncated,
                   tokens.original[0])


def baseline_token_id(loaded, kind: str) -> int:
    tok = loaded.tokenizer
    if kind == "mask":
        if tok.mask_token_id is None:
            raise InputError(f"{loaded.entry.name}'s tokenizer has no [MASK] token; use the pad baseline.")
        return tok.mask_token_id
    if kind in ("pad", "zero"):
        for cand in (tok.pad_token_id, tok.unk_token_id, tok.eos_token_id, 0):
            if cand is not None:
                return cand
    raise InputError(f"Unknown baseline {kind!r}: choose pad, mask or zero.")


def baseline_ids(loaded, enc: Encoded, kind: str) -> torch.Tensor:
    """The input with every non-special token replaced by the baseline token."""
    base = enc.input_ids.clone()
    keep = torch.tensor([enc.special], device=base.device)
    base[~keep] = baseline_token_id(loaded, kind)
    return base
