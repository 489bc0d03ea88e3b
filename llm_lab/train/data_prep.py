"""Turn a stored dataset (or the pydoc corpus) into tokenized train/eval sets, or say why not.

Checks done here, before any model is loaded: the mapped columns exist, a label
column has at least two classes, and there are enough rows to train and hold some out.
"""
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import data
from ..batching import pad
from ..errors import DataError
from ..text_utils import natural_key
from ..access import Actor
from .config import TrainConfig

MIN_TRAIN_ROWS = 4


class ListDataset:
    """A list of feature dicts that Trainer can index (no `datasets` dependency)."""

    def __init__(self, rows: list[dict]):
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


@dataclass
class Prepared:
    train: ListDataset
    eval: ListDataset | None
    labels: list[str] | None
    tokens_per_sample: float       # mean non-pad tokens a training example feeds the model
    info: dict                     # dataset name, fingerprint, row counts (recorded in the model card)


def _frames(actor: Actor, cfg: TrainConfig, roles: tuple[str, ...]) -> tuple[pd.DataFrame, pd.DataFrame | None, dict]:
    info = data.get(actor, cfg.dataset)
    data.require(info, *roles)
    frame = data.load_frame(actor, cfg.dataset)
    for role in roles:  # drop rows whose needed columns are empty
        frame = frame[frame[role].astype(str).str.strip() != ""]
    train = frame[frame["split"] == "train"]
    val = frame[frame["split"] == "validation"]
    if val.empty and cfg.eval_fraction > 0:
        n_eval = int(round(len(train) * cfg.eval_fraction))
        if len(train) - n_eval < MIN_TRAIN_ROWS or n_eval < 1:
            raise DataError(
                f"Dataset {cfg.dataset!r} has {len(train)} training rows: too few to train and hold "
                f"{cfg.eval_fraction:.0%} out for evaluation (need at least {MIN_TRAIN_ROWS + 1}). "
                "Import more rows, or set the held-out fraction to 0.")
        held = train.sample(n=n_eval, random_state=cfg.seed).index
        val, train = train.loc[held], train.drop(held)
    if len(train) < MIN_TRAIN_ROWS:
        raise DataError(f"Dataset {cfg.dataset!r} has only {len(train)} training row(s); training needs at "
                        f"least {MIN_TRAIN_ROWS}. Import more rows or change its split.")
    meta = {"dataset": info.name, "fingerprint": info.fingerprint, "content_hash": info.content_hash,
            "train_rows": len(train), "eval_rows": len(val)}
    return train.reset_index(drop=True), (val.reset_index(drop=True) if len(val) else None), meta


def label_names(actor: Actor, cfg: TrainConfig, train: pd.DataFrame) -> list[str]:
    present = train[cfg.label_col].astype(str)
    if present.nunique() < 2:
        raise DataError(f"The label column of {cfg.dataset!r} has a single class ({present.iloc[0]!r}) in the "
                        "training rows. A classifier needs at least two classes.")
    stored = data.get(actor, cfg.dataset).label_names or []
    names = [str(n) for n in stored] or sorted(present.unique(), key=natural_key)
    return names + sorted(set(present) - set(names), key=natural_key)


def check_teacher_labels(cfg: TrainConfig, names: list, teacher_labels: list) -> None:
    """A distilled classifier keeps its teacher's head: every label of the dataset must be one of the teacher's."""
    unknown = sorted(set(map(str, names)) - set(map(str, teacher_labels)), key=natural_key)
    if unknown:
        raise DataError(f"The label(s) {', '.join(map(repr, unknown))} of {cfg.dataset!r} are not among the teacher "
                        f"{cfg.model}'s ({', '.join(map(str, teacher_labels))}): the student keeps the teacher's "
                        "head, so the dataset must be labelled like the teacher.")


def classification(actor: Actor, cfg: TrainConfig, tokenizer, labels: list[str] | None = None) -> Prepared:
    """`labels`: the label names to train (a distilled student keeps its teacher's head), in place of the dataset's;
    a dataset label not among them is refused."""
    roles = (cfg.text_col, cfg.label_col) + ((cfg.pair_col,) if cfg.pair_col else ())
    train, val, meta = _frames(actor, cfg, roles)
    names = label_names(actor, cfg, train)
    if labels is not None:
        check_teacher_labels(cfg, names, labels)
        names = [str(l) for l in labels]
    index = {n: i for i, n in enumerate(names)}

    def encode(frame):
        if frame is None:
            return None
        pair = frame[cfg.pair_col].astype(str).tolist() if cfg.pair_col else None
        enc = tokenizer(frame[cfg.text_col].astype(str).tolist(), pair, truncation=True, max_length=cfg.max_length)
        labels = [index.get(str(v), -1) for v in frame[cfg.label_col]]
        rows = [{"input_ids": ids, "attention_mask": mask, "labels": y}
                for ids, mask, y in zip(enc["input_ids"], enc["attention_mask"], labels) if y >= 0]
        return ListDataset(rows)

    train_ds, eval_ds = encode(train), encode(val)
    return Prepared(train_ds, eval_ds, names, _mean_len(train_ds), meta)


def lm_format(actor: Actor, cfg: TrainConfig) -> str:
    if cfg.lm_format != "auto":
        return cfg.lm_format
    roles = data.get(actor, cfg.dataset).roles
    return "prompt-completion" if "prompt" in roles and "reference" in roles else "text"


def causal(actor: Actor, cfg: TrainConfig, tokenizer) -> Prepared:
    """A text column, or prompt/completion pairs with the loss on the completion only: through the base model's
    chat template when it has one (`uses_chat_template`), else the prompt's text followed by the completion's."""
    fmt = lm_format(actor, cfg)
    roles = ("prompt", "reference") if fmt == "prompt-completion" else (cfg.text_col,)
    train, val, meta = _frames(actor, cfg, roles)
    eos = tokenizer.eos_token_id
    meta["format"] = fmt
    templated = fmt == "prompt-completion" and uses_chat_template(cfg, tokenizer)
    if fmt == "prompt-completion":
        meta["chat_template"] = templated

    def encode(frame):
        if frame is None:
            return None
        if fmt == "text":
            rows = []
            for ids in tokenizer(frame[cfg.text_col].astype(str).tolist())["input_ids"]:
                ids = (ids + ([eos] if eos is not None else []))[:cfg.max_length]
                if len(ids) >= 2:
                    rows.append({"input_ids": ids, "labels": list(ids)})
            return ListDataset(rows)
        pairs = (chat_pairs if templated else raw_pairs)(tokenizer, frame["prompt"].astype(str).tolist(),
                                                         frame["reference"].astype(str).tolist())
        return ListDataset([row for p, c in pairs if (row := completion_example(p, c, cfg.max_length))])

    train_ds, eval_ds = encode(train), encode(val)
    if len(train_ds) < MIN_TRAIN_ROWS:
        raise DataError(f"Only {len(train_ds)} usable training rows in {cfg.dataset!r} after tokenizing "
                        f"(texts must give at least 2 tokens). Check the {', '.join(roles)} column(s).")
    return Prepared(train_ds, eval_ds if eval_ds else None, None, _mean_len(train_ds), meta)


def uses_chat_template(cfg: TrainConfig, tokenizer) -> bool:
    """Prompt/completion pairs go through the chat template when the tokenizer has one and the config does not
    ask for raw text (`chat_template=False`): a chat model then learns in the shape it is asked in."""
    return bool(cfg.chat_template and getattr(tokenizer, "chat_template", None))


def raw_pairs(tokenizer, prompts: list[str], completions: list[str]) -> list[tuple[list, list]]:
    """(prompt ids, completion ids) as plain text: the prompt, then " completion" and EOS."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    p_ids = tokenizer(prompts)["input_ids"]
    c_ids = tokenizer([" " + c.lstrip() for c in completions])["input_ids"]
    return [(p, c + eos) for p, c in zip(p_ids, c_ids)]


def chat_pairs(tokenizer, prompts: list[str], completions: list[str]) -> list[tuple[list, list]]:
    """(prompt ids, completion ids) through the chat template: the prompt as one user turn ready for the
    assistant's answer (`chat.template_ids`, the ids inference generates from), then the answer and the
    template's end-of-turn token (SmolLM2's <|im_end|>, its EOS), so the model learns where to stop."""
    from ..inference.chat import template_ids

    end = end_of_turn(tokenizer)
    c_ids = tokenizer(completions, add_special_tokens=False)["input_ids"]
    return [(template_ids(tokenizer, [{"role": "user", "content": p}]), c + end) for p, c in zip(prompts, c_ids)]


ANSWER_MARK = "LLM-LAB-ANSWER-7F3C"


def end_of_turn(tokenizer) -> list[int]:
    """The tokens the chat template closes an assistant turn with, found by rendering one: what follows the
    answer, without the line break after it (ChatML: <|im_end|>). EOS when the template adds nothing there."""
    turns = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": ANSWER_MARK}]
    try:
        text = tokenizer.apply_chat_template(turns, tokenize=False)
    except Exception:  # a template that refuses this shape: EOS is what generation stops at anyway
        text = ""
    tail = text[text.rfind(ANSWER_MARK) + len(ANSWER_MARK):].strip() if ANSWER_MARK in text else ""
    ids = tokenizer(tail, add_special_tokens=False)["input_ids"] if tail else []
    if ids:
        return list(ids)
    return [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []


def completion_example(prompt: list[int], completion: list[int], max_length: int) -> dict | None:
    """One training row: the loss on the completion's tokens only (labels -100 on the prompt). A row too long
    loses the start of its prompt (inference cuts a long prompt the same way), keeping at least one prompt
    token; None when no completion token would be scored."""
    if len(prompt) + len(completion) > max_length:
        prompt = prompt[-max(1, max_length - len(completion)):]
    ids = (prompt + completion)[:max_length]
    labels = ([-100] * len(prompt) + completion)[:max_length]
    if not any(label != -100 for label in labels[1:]):
        return None
    return {"input_ids": ids, "labels": labels}


def pretrain_texts(actor: Actor, cfg: TrainConfig) -> tuple[list[str], dict]:
    if not cfg.dataset:
        from ..corpora import CORPORA

        texts = CORPORA[cfg.corpus]()
        return texts, {"dataset": cfg.corpus, "fingerprint": _text_hash(texts), "train_rows": len(texts)}
    info = data.get(actor, cfg.dataset)
    data.require(info, cfg.text_col)
    frame = data.load_frame(actor, cfg.dataset)
    texts = [t for t in frame[cfg.text_col].astype(str) if t.strip()]
    return texts, {"dataset": info.name, "fingerprint": info.fingerprint, "content_hash": info.content_hash,
                   "train_rows": len(texts)}


def pretrain_blocks(cfg: TrainConfig, texts: list[str], tokenizer, block: int, meta: dict) -> Prepared:
    """Concatenate the corpus (documents separated by EOS) and cut it into fixed-length blocks."""
    stream: list[int] = []
    for ids in tokenizer(texts)["input_ids"]:
        stream += ids + [tokenizer.eos_token_id]
    n_blocks = len(stream) // block
    if n_blocks < MIN_TRAIN_ROWS + 1:
        raise DataError(f"The corpus gives {len(stream)} tokens, only {n_blocks} block(s) of {block}: too little "
                        "to pretrain on. Use a larger dataset or a shorter context (n_positions).")
    arr = np.asarray(stream[: n_blocks * block], dtype=np.int64).reshape(n_blocks, block)
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(n_blocks)
    n_eval = max(1, int(round(n_blocks * cfg.eval_fraction))) if cfg.eval_fraction > 0 else 0
    to_rows = lambda idx: ListDataset([{"input_ids": arr[i].tolist(), "labels": arr[i].tolist()} for i in sorted(idx)])
    meta = dict(meta, tokens=len(stream), blocks=n_blocks, train_rows=n_blocks - n_eval, eval_rows=n_eval)
    return Prepared(to_rows(order[n_eval:]), to_rows(order[:n_eval]) if n_eval else None, None, float(block), meta)


def _mean_len(ds: ListDataset | None) -> float:
    if not ds or not len(ds):
        return 0.0
    return float(np.mean([len(r["input_ids"]) for r in ds.rows]))


def _text_hash(texts: list[str]) -> str:
    import hashlib

    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode())
        h.update(b"\0")
    return h.hexdigest()


class CausalCollator:
    """Right-pads input_ids (pad id) and labels (-100) to the longest row of the batch."""

    def __init__(self, pad_id: int, multiple_of: int = 8):
        self.pad_id, self.multiple_of = pad_id, multiple_of

    def __call__(self, rows: list[dict]) -> dict:
        ids, mask = pad([r["input_ids"] for r in rows], self.pad_id, multiple_of=self.multiple_of)
        labels, _ = pad([r["labels"] for r in rows], -100, multiple_of=self.multiple_of)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}
