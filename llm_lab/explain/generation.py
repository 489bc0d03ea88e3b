"""Attribute each generated token of a causal LM to the prompt and to earlier generated tokens.

Three ways, same output shape (a token × token matrix, rows = generated tokens, columns = prompt
tokens followed by generated tokens; NaN where a column is not before the row's token):
- `gen_ig` (ours): layer IG on the token embeddings of the log-probability of every generated
  token, all output tokens in one batched Captum call (rows of the batch = output tokens × steps),
  chunked by the prefix each output token needs. Attributes to earlier generated tokens too, unless
  `include_generated=False`, which reproduces Captum's LLMGradientAttribution exactly.
- `gen_captum_ig`: Captum's `LLMGradientAttribution(LayerIntegratedGradients)`: one run per
  output token, prompt tokens only.
- `gen_ablation`: Captum's `LLMAttribution(FeatureAblation)`: prompt tokens only.

The prompt's tokens are the ones generation reads (inference/chat.py): a chat model's prompt goes through its
chat template unless `chat_template=False`, so the columns include the template's own tokens (`<|im_start|>`, the
role names) and a chat model's answer stops at its end-of-turn token. Special tokens stay in every baseline,
so their attribution is 0 in all three methods.
"""
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ..errors import ModelError
from ..generation import GenerationSettings
from ..inference import chat, forward
from . import specs
from . import text as textmod
from .attributions import input_grads_only, release


@dataclass
class GenerationAttribution:
    model: str
    method: str
    method_name: str
    prompt_tokens: list[str]
    output_tokens: list[str]
    matrix: list[list[float | None]]   # (outputs, prompt + outputs); None where not attributable
    output_logprobs: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    prompt: str = ""
    chat_template: bool = False        # the prompt went through the model's chat template

    def to_dict(self) -> dict:
        return asdict(self)

    def array(self) -> np.ndarray:
        return np.array([[np.nan if v is None else v for v in row] for row in self.matrix], dtype=float)

    def top_prompt_tokens(self, k: int = 3) -> list[dict]:
        arr = self.array()[:, :len(self.prompt_tokens)]
        rows = []
        for i, tok in enumerate(self.output_tokens):
            order = np.argsort(-np.nan_to_num(arr[i], nan=-np.inf))[:k]
            rows.append({"position": i, "output token": tok,
                         **{f"top {r + 1}": f"{self.prompt_tokens[j]!r} ({arr[i, j]:+.3f})" for r, j in enumerate(order)}})
        return rows


def _generate(loaded, ids: torch.Tensor, max_new_tokens: int, stop_at_eos: bool = False) -> torch.Tensor:
    """Greedy tokens after `ids`: `max_new_tokens` of them, or up to the end-of-turn token (kept) when
    `stop_at_eos` (a chat model's answer ends there)."""
    tok = loaded.tokenizer
    with torch.inference_mode():
        out = forward.generate_ids(loaded.model, input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                    max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id,
                                    eos_token_id=tok.eos_token_id if stop_at_eos else None)
    return out[0, ids.shape[1]:]


def encode_prompt(loaded, prompt, cap: int, settings: GenerationSettings) -> textmod.Encoded:
    """The prompt's tokens as generation reads them: through the chat template when it applies (the ids of
    `chat.prompt_ids`, cut from the left to `cap` so the assistant's turn stays, as inference.generate cuts);
    otherwise the raw text (`textmod.encode`)."""
    if isinstance(prompt, str) and not chat.applies(loaded, prompt, settings):
        return textmod.encode(loaded, prompt, cap=cap)
    if isinstance(prompt, str) and not prompt.strip():
        raise textmod.InputError("The text is empty: type or pick some text to explain.")
    ids, _ = chat.prompt_ids(loaded, prompt, settings)
    notes = []
    if len(ids) > cap:
        notes.append(f"The prompt has {len(ids)} tokens with the chat template; only the last {cap} are used (the "
                     "model's context minus the tokens to generate).")
    kept = ids[-cap:]
    special_ids = set(loaded.tokenizer.all_special_ids or [])
    return textmod.Encoded(torch.tensor([kept], device=loaded.device), textmod.readable(loaded.tokenizer, kept),
                           [i in special_ids for i in kept], notes, len(ids) > cap, len(ids))


def attribute_generation(loaded, prompt, max_new_tokens: int = 16, method: str = "gen_ig",
                         target: str | None = None, n_steps: int = 20, baseline: str = "pad",
                         include_generated: bool = True, chunk_tokens: int = 8,
                         token_budget: int = 32768, chat_template: bool = True,
                         system: str = "") -> GenerationAttribution:
    """Attribute the tokens generated after `prompt` (a string, or a conversation; see inference/chat.py).
    `chat_template=False` attributes the raw prompt even for a chat model; `system` is the system turn a chat
    template gets."""
    spec = specs.get_method(method)
    specs.require(loaded, spec)
    if spec.key not in specs.GENERATION_METHODS:
        raise ModelError(f"{spec.name} explains a classifier; use attribute() for it.")
    limit = textmod.max_length(loaded)
    if max_new_tokens < 1:
        raise ModelError("Generate at least one token to attribute.")
    settings = GenerationSettings(chat=chat_template, system=system)
    templated = chat.applies(loaded, prompt, settings)
    enc = encode_prompt(loaded, prompt, max(1, limit - max_new_tokens), settings)
    notes = list(enc.notes) + _template_notes(loaded, templated, chat_template)
    start = time.perf_counter()
    with loaded.lock, input_grads_only(loaded):
        try:
            if target:
                gen = torch.tensor(loaded.tokenizer(target, add_special_tokens=False)["input_ids"][:max_new_tokens],
                                   device=loaded.device)
                if len(gen) == 0:
                    raise ModelError("The target text produced no tokens.")
            else:
                gen = _generate(loaded, enc.input_ids, max_new_tokens, stop_at_eos=templated)
            if spec.key == "gen_ig":
                matrix, logprobs = _ours(loaded, enc, gen, n_steps, baseline, include_generated, chunk_tokens,
                                         token_budget)
            elif spec.key == "gen_captum_ig":
                matrix, logprobs = _captum_ig(loaded, enc, gen, n_steps, baseline)
            else:
                matrix, logprobs = _captum_ablation(loaded, enc, gen, baseline)
        finally:
            release(loaded)
    p = enc.input_ids.shape[1]
    full = np.full((len(gen), p + len(gen)), np.nan)
    full[:, :matrix.shape[1]] = matrix
    for i in range(len(gen)):
        full[i, p + i:] = np.nan
    out_tokens = textmod.readable(loaded.tokenizer, gen.tolist())
    rows = [[None if np.isnan(v) else float(v) for v in row] for row in full]
    return GenerationAttribution(loaded.entry.name, spec.key, spec.name, enc.tokens, out_tokens, rows,
                                 [float(x) for x in logprobs], notes, time.perf_counter() - start,
                                 chat.last_user_text(prompt) if chat.is_conversation(prompt) else prompt, templated)


def _template_notes(loaded, templated: bool, asked: bool) -> list[str]:
    if templated:
        return [f"The prompt went through {loaded.entry.name}'s chat template, as generation sends it: its own "
                "tokens (such as <|im_start|> and the role names) are columns too, and the answer stops at the "
                "end-of-turn token. Switch the chat template off to attribute the raw prompt."]
    if not asked and chat.has_template(loaded):
        return [f"The raw prompt, without {loaded.entry.name}'s chat template."]
    return []


class _TokenLogProb(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, inputs_embeds, positions, tokens):
        width = inputs_embeds.shape[1]
        if _keeps_logits(self.model):  # the LM head only where a token is scored, not at every position
            keep = int(width - positions.min())
            logits = forward.lm_logits(self.model, inputs_embeds=inputs_embeds, logits_to_keep=keep)
            positions = positions - (width - logits.shape[1])
        else:
            logits = forward.lm_logits(self.model, inputs_embeds=inputs_embeds)
        rows = torch.arange(logits.shape[0], device=logits.device)
        picked = torch.log_softmax(logits[rows, positions].float(), dim=-1)
        return picked[rows, tokens]


def _keeps_logits(model) -> bool:
    import inspect

    return "logits_to_keep" in inspect.signature(type(model).forward).parameters


def _ours(loaded, enc, gen, n_steps, baseline, include_generated, chunk_tokens, token_budget):
    from captum.attr import IntegratedGradients

    p, g = enc.input_ids.shape[1], len(gen)
    seq = torch.cat([enc.input_ids[0], gen]).unsqueeze(0)
    emb = loaded.model.get_input_embeddings()
    base_id = textmod.baseline_token_id(loaded, baseline)
    base = seq.clone()
    base[0, :p][~torch.tensor(enc.special, device=seq.device)] = base_id
    if include_generated:
        base[0, p:] = base_id
    fwd = _TokenLogProb(loaded.model)
    ig = IntegratedGradients(fwd)
    matrix = np.zeros((g, p + g))
    with torch.no_grad():
        x_all, b_all = emb(seq), emb(base)
        logits = forward.lm_logits(loaded.model, input_ids=seq)[0].float()
        logprobs = torch.log_softmax(logits[p - 1:p - 1 + g], -1)[torch.arange(g), gen].cpu().numpy()
        if baseline == "zero":
            b_all = torch.where(base.unsqueeze(-1) == seq.unsqueeze(-1), x_all, torch.zeros_like(x_all))
    for lo in range(0, g, chunk_tokens):
        hi = min(g, lo + chunk_tokens)
        width = p + hi - 1                      # the longest prefix this chunk needs
        n = hi - lo
        x = x_all[:, :width].expand(n, -1, -1)
        b = b_all[:, :width].expand(n, -1, -1)
        positions = torch.arange(p - 1 + lo, p - 1 + hi, device=seq.device)
        ibs = max(n, token_budget // max(width, 1))
        attr = ig.attribute(x, baselines=b, additional_forward_args=(positions, gen[lo:hi]), n_steps=n_steps,
                            internal_batch_size=ibs)
        matrix[lo:hi, :width] = attr.sum(-1).detach().float().cpu().numpy()
    return matrix, logprobs


def _captum_ig(loaded, enc, gen, n_steps, baseline):
    from captum.attr import LayerIntegratedGradients, LLMGradientAttribution

    inp = _token_input(loaded, enc, baseline)
    llm = LLMGradientAttribution(LayerIntegratedGradients(loaded.model, loaded.model.get_input_embeddings()),
                                 loaded.tokenizer)
    res = llm.attribute(inp, target=gen, n_steps=n_steps)
    return _every_column(res.token_attr.float().cpu().numpy(), enc), _logprobs(loaded, enc, gen)


def _captum_ablation(loaded, enc, gen, baseline):
    from captum.attr import FeatureAblation, LLMAttribution

    inp = _token_input(loaded, enc, baseline)
    llm = LLMAttribution(FeatureAblation(loaded.model), loaded.tokenizer)
    with torch.no_grad():
        res = llm.attribute(inp, target=gen, forward_in_tokens=False)
    return _every_column(res.token_attr.float().cpu().numpy(), enc), _logprobs(loaded, enc, gen)


def _every_column(matrix: np.ndarray, enc) -> np.ndarray:
    """Captum's columns are the non-special prompt tokens only: put them back at their positions, with 0 for
    the special tokens (kept in the baseline, as in ours), so column j is prompt token j again."""
    keep = ~np.array(enc.special, dtype=bool)
    if keep.all():
        return matrix
    full = np.zeros((matrix.shape[0], len(enc.special)))
    full[:, keep] = matrix
    return full


def _token_input(loaded, enc, baseline):
    """A Captum TextTokenInput over exactly our (possibly truncated) prompt ids."""
    from captum.attr import TextTokenInput

    inp = TextTokenInput("x", loaded.tokenizer, baselines=textmod.baseline_token_id(loaded, baseline))
    ids = enc.input_ids.cpu()
    special = torch.tensor([enc.special])
    inp.inp_tensor = ids
    if special.any():
        inp.itp_mask = ~special
        inp.itp_tensor = ids[~special].unsqueeze(0)
    else:
        inp.itp_mask = None
        inp.itp_tensor = ids
    inp.values = list(np.array(enc.tokens)[~special[0].numpy()]) if special.any() else list(enc.tokens)
    inp.n_itp_features = len(inp.values)
    return inp


def _logprobs(loaded, enc, gen):
    seq = torch.cat([enc.input_ids[0], gen]).unsqueeze(0)
    p = enc.input_ids.shape[1]
    with torch.no_grad():
        logits = forward.lm_logits(loaded.model, input_ids=seq)[0].float()
    return torch.log_softmax(logits[p - 1:p - 1 + len(gen)], -1)[torch.arange(len(gen)), gen].cpu().numpy()
