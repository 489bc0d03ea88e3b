"""Text generation's typed request and result: `GenerationSettings` (what to generate) and `GenerationResult`
(the text, the number of new tokens, latency, tokens/s, the mean log-probability of the output under the model,
whether the prompt was cut and why generation stopped), with the checks every caller makes on prompts.

The model runs in `llm_lab.inference.generate` (`generate` for a batch of prompts, `stream` for one), the one
place that runs models; an endpoint model hands its prompts to its server there too.
"""
from dataclasses import asdict, dataclass, field

from . import capabilities as caps
from .errors import LabError
from .generation_defaults import SUGGESTED


class GenerationError(LabError):
    pass


@dataclass
class GenerationSettings:
    do_sample: bool = False            # False: greedy
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0                     # 0: off
    max_new_tokens: int = 64
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0      # 0: off; n: no n-gram appears twice in prompt + output
    seed: int | None = 0
    stop: list[str] = field(default_factory=list)
    batch_size: int = 16
    chat: bool = True                  # apply the model's chat template when it has one; False: the raw prompt
    system: str = ""                   # the system turn a chat template gets ("" : the template's own default)

    def __post_init__(self):
        self.stop = [s for s in (self.stop or []) if s]
        if self.max_new_tokens < 1:
            raise GenerationError("max_new_tokens must be at least 1.")
        if self.do_sample and self.temperature <= 0:
            raise GenerationError("Temperature must be above 0 when sampling (use greedy for temperature 0).")
        if not 0 < self.top_p <= 1:
            raise GenerationError("top_p must be in (0, 1].")
        if self.repetition_penalty <= 0:
            raise GenerationError("repetition_penalty must be above 0 (1 means no penalty).")
        if self.no_repeat_ngram_size < 0:
            raise GenerationError("no_repeat_ngram_size must be 0 (off) or more.")

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict | None) -> "GenerationSettings":
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in (values or {}).items() if k in names})


def suggested(**overrides) -> "GenerationSettings":
    return GenerationSettings(**dict(SUGGESTED, **overrides))


@dataclass
class GenerationResult:
    prompt: str
    text: str
    new_tokens: int
    latency_s: float
    tokens_per_s: float
    mean_logprob: float | None
    truncated: bool = False
    stop_reason: str = "max_new_tokens"
    note: str = ""
    prompt_tokens: int = 0
    token_ids: list[int] = field(default_factory=list, repr=False)
    first_token_s: float | None = None     # time to the first streamed text (endpoint models)

    def as_dict(self) -> dict:
        out = asdict(self)
        out.pop("token_ids")
        return out


# ---------------------------------------------------------------- checks
def check_can_generate(loaded) -> None:
    caps.require(caps.GENERATE, loaded)


def check_prompts(prompts) -> list:
    """Prompts as a list: each a non-empty string, or a conversation (a list of {"role", "content"} turns
    ending with a user turn; see inference/chat.py)."""
    if isinstance(prompts, str):
        prompts = [prompts]
    prompts = list(prompts)
    if not prompts:
        raise GenerationError("No prompts given: type at least one prompt.")
    if prompts and isinstance(prompts[0], dict):  # one conversation given on its own
        prompts = [prompts]
    from .inference.chat import check_conversation, is_conversation

    prompts = [check_conversation(p, f"Conversation {i + 1}") if is_conversation(p) else p
               for i, p in enumerate(prompts)]
    empty = [i + 1 for i, p in enumerate(prompts) if not is_conversation(p) and (not isinstance(p, str) or not p.strip())]
    if empty:
        raise GenerationError(f"Prompt{'s' if len(empty) > 1 else ''} {', '.join(map(str, empty))} "
                              f"{'are' if len(empty) > 1 else 'is'} empty: type some text, or remove "
                              f"{'them' if len(empty) > 1 else 'it'}.")
    return prompts
