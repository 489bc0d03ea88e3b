"""What a training run is: one `TrainConfig`, stored as the job's params.

The same config drives the dashboard, the CLI (`python -m llm_lab train …`) and
`accelerate launch -m llm_lab.train …`, and it is written into the model card
with the command that reproduces the run (`to_cli`).
"""
import re
import shlex
import time
from dataclasses import asdict, dataclass, field, fields

from .. import capabilities as caps
from ..errors import LabError

TASKS = {
    "classify": "Text classifier (fine-tune an encoder)",
    "causal-lm": "Causal LM fine-tuning (full or LoRA)",
    "pretrain": "Pretrain a small GPT-2 from scratch",
}

# What each training recipe needs from its base model (pretraining starts from nothing).
NEEDS = {
    "classify": caps.needs("Fine-tuning a classifier", caps.CLASSIFIER, hint="Pick an encoder such as minilm."),
    "causal-lm": caps.needs("Causal-LM fine-tuning", caps.CAUSAL_LM, hint="Pick a causal LM such as tiny-gpt, or pretrain one."),
    "pretrain": caps.needs("Pretraining"),
}

# GPT-2 sizes for pretraining. Parameters ≈ vocab·d + positions·d + 12·layers·d².
PRESETS = {
    "1M": dict(vocab_size=2048, n_embd=128, n_layer=3, n_head=4, n_positions=256),
    "3M": dict(vocab_size=4096, n_embd=192, n_layer=4, n_head=6, n_positions=256),
    "10M": dict(vocab_size=8192, n_embd=320, n_layer=6, n_head=8, n_positions=256),
    "30M": dict(vocab_size=16384, n_embd=512, n_layer=8, n_head=8, n_positions=512),
}
# The built-in tiny-gpt recipe: the 3M preset, trained for ~10 minutes on a 2-core CPU.
TINY_GPT = dict(preset="3M", epochs=8.0, batch_size=16, learning_rate=2e-3, warmup=0.05,
                weight_decay=0.1, scheduler="cosine", seed=0, eval_fraction=0.05)

# Distillation's starting points, measured (see task_defaults).
DISTILL_DEFAULTS = {
    "classify": dict(model="minilm-sentiment", epochs=3.0, batch_size=8, learning_rate=1e-4, max_length=128,
                     warmup=0.1, augment=4),
    "causal-lm": dict(model="small-gpt", epochs=3.0, batch_size=8, learning_rate=3e-4, max_length=256, warmup=0.05),
}

# Causal-LM fine-tunes of the built-in chat model (registry.CHAT_MODEL, SmolLM2-135M-Instruct), measured on the demo
# instructions (see task_defaults). 128 tokens hold every templated demo example (the longest is 86).
CHAT_DEFAULTS = {
    "lora": dict(epochs=2.0, batch_size=8, learning_rate=1e-3, max_length=128, warmup=0.05),
    "full": dict(epochs=2.0, batch_size=8, learning_rate=5e-5, max_length=128, warmup=0.05),
}


class ConfigError(LabError):
    pass


@dataclass
class TrainConfig:
    task: str = "classify"
    name: str = ""                    # registry name of the result ("" → made up from base and time)
    model: str = "minilm"             # base model (classify, causal-lm); ignored by pretrain
    dataset: str = ""                 # dataset name; for pretrain "" means the built-in `corpus`
    corpus: str = "pydoc"             # pretrain without a dataset: a corpus from `llm_lab.corpora`
    text_col: str = "text"            # role to read text from (text | prompt …)
    label_col: str = "label"
    pair_col: str = ""                # optional text_pair role for classification
    lm_format: str = "auto"           # causal-lm: auto | text | prompt-completion
    chat_template: bool = True        # prompt-completion: through the base model's chat template when it has one
    # hyperparameters
    epochs: float = 3.0
    max_steps: int = -1
    batch_size: int = 16
    grad_accum: int = 1
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup: float = 0.1               # fraction of steps (<1) or a step count (≥1)
    scheduler: str = "linear"
    max_length: int = 128
    eval_fraction: float = 0.1        # held out from train when the dataset has no validation split
    early_stopping: int = 0           # patience in evaluations; 0 = off
    save_steps: int = 0               # checkpoint every N steps; 0 = twice an epoch
    logging_steps: int = 0            # 0 = about 50 points per run
    seed: int = 0
    precision: str = "auto"           # auto (bf16 on CUDA) | bf16 | fp16 | fp32
    device: str = "auto"              # auto | cpu | cuda
    # LoRA (causal-lm)
    lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: list = field(default_factory=list)   # [] → the architecture's default
    adapter_only: bool = False        # LoRA: save the adapter (and a new head) over the base, not a merged copy
    # distillation (classify, causal-lm): `model` is the teacher; a student with `student_layers` of its layers
    # learns from its soft labels at `temperature` (weight alpha) and the gold labels (1 - alpha); see train/distill.py
    distill: bool = False
    student_layers: int = 3
    temperature: float = 2.0
    alpha: float = 0.5
    augment: int = 0                  # classify: masked copies of each training text, labelled by the teacher only
    # pretraining
    preset: str = "3M"
    arch: dict = field(default_factory=dict)           # overrides of the preset
    # output
    out: str = ""                     # write the model here instead of registering it (built-ins)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ConfigError(f"Unknown training setting(s): {', '.join(sorted(unknown))}.")
        return cls(**values)

    def to_params(self) -> dict:
        """The job's params (what `submit` stores and the worker passes back to `run`)."""
        return self.as_dict()

    @classmethod
    def from_params(cls, params: dict | None) -> "TrainConfig":
        """The config of a stored training job. Lenient, unlike `from_dict`: settings this version does not
        know are dropped and missing ones take their defaults, so jobs stored by older versions still read."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (params or {}).items() if k in known})

    def architecture(self) -> dict:
        """The GPT-2 shape for pretraining: the preset with the user's edits."""
        if self.preset not in PRESETS:
            raise ConfigError(f"Unknown size preset {self.preset!r}; choose one of {', '.join(PRESETS)}.")
        arch = dict(PRESETS[self.preset], **(self.arch or {}))
        if arch["n_embd"] % arch["n_head"]:
            raise ConfigError(f"n_embd ({arch['n_embd']}) must be divisible by n_head ({arch['n_head']}).")
        return arch

    def validate(self) -> "TrainConfig":
        if self.task not in TASKS:
            raise ConfigError(f"Unknown task {self.task!r}; choose one of {', '.join(TASKS)}.")
        if self.task != "pretrain" and not self.dataset:
            raise ConfigError("Pick a dataset to train on (import one on the Datasets page).")
        checks = [(self.batch_size >= 1, "batch size must be at least 1"),
                  (self.grad_accum >= 1, "gradient accumulation must be at least 1"),
                  (self.learning_rate > 0, "the learning rate must be positive"),
                  (self.epochs > 0 or self.max_steps > 0, "train for more than 0 epochs or steps"),
                  (0 <= self.eval_fraction < 0.9, "the held-out fraction must be in [0, 0.9)"),
                  (self.max_length >= 8, "the maximum length must be at least 8 tokens"),
                  (self.scheduler in ("linear", "cosine", "constant", "constant_with_warmup"),
                   "scheduler must be linear, cosine, constant or constant_with_warmup"),
                  (self.precision in ("auto", "bf16", "fp16", "fp32"), "precision must be auto, bf16, fp16 or fp32"),
                  (self.lm_format in ("auto", "text", "prompt-completion"),
                   "the causal-LM format must be auto, text or prompt-completion"),
                  (not self.lora or self.lora_r >= 1, "LoRA rank must be at least 1"),
                  (not self.lora or self.task != "pretrain", "LoRA needs a base model: it does not apply to pretraining"),
                  (not self.adapter_only or self.lora, "saving the adapter only needs LoRA on"),
                  (not self.distill or self.task != "pretrain", "distillation needs a teacher: it does not apply to "
                   "pretraining"),
                  (not (self.distill and self.lora), "a distilled student is trained in full: turn LoRA off"),
                  (not self.distill or self.student_layers >= 1, "the student needs at least one layer"),
                  (not self.distill or self.temperature > 0, "the distillation temperature must be positive"),
                  (not self.distill or 0 <= self.alpha <= 1, "alpha (the soft labels' weight) must be in [0, 1]"),
                  (self.augment == 0 or self.distill and self.task == "classify" and self.augment <= 32,
                   "augmented copies (0 to 32) are for distilling a classifier: the teacher labels them")]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message[0].upper() + message[1:] + ".")
        self._check_limits()
        if self.task == "pretrain":
            self.architecture()
            from ..corpora import CORPORA

            if not self.dataset and self.corpus not in CORPORA:
                raise ConfigError(f"Unknown corpus {self.corpus!r}; choose one of {', '.join(CORPORA)}, or a dataset.")
        if self.name and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", self.name):
            raise ConfigError(f"Model name {self.name!r}: use letters, digits, '.', '_' or '-'.")
        return self

    def _check_limits(self) -> None:
        """This server's caps on a run's length (settings max_epochs, max_steps). The steps a run works out
        from its epochs are checked against max_steps before it starts (`resources.check`)."""
        from .. import settings

        max_epochs, max_steps = settings.get("max_epochs"), int(settings.get("max_steps"))
        if self.epochs > max_epochs:
            raise ConfigError(f"{self.epochs:g} epochs is more than a run may take here: at most {max_epochs:g} "
                              "(setting max_epochs). Train for fewer epochs, or ask an admin to raise max_epochs.")
        if self.max_steps > max_steps:
            raise ConfigError(f"{self.max_steps:,} steps is more than a run may take here: at most {max_steps:,} "
                              "(setting max_steps). Set fewer steps, or ask an admin to raise max_steps.")

    def default_name(self) -> str:
        base = "gpt-" + self.preset if self.task == "pretrain" else re.sub(r"[^A-Za-z0-9._-]", "-", self.model)[-40:]
        what = f"student{self.student_layers}" if self.distill else self.task
        return f"{base}-{what}-{time.strftime('%m%d-%H%M%S')}"

    def relevant(self) -> dict:
        """The settings that matter for this task (what the model card lists)."""
        skip = {"name", "out"}
        if self.task != "classify":
            skip |= {"label_col", "pair_col"}
        if self.task != "causal-lm":
            skip |= {"lm_format", "chat_template"}
        if not self.distill:
            skip |= {"distill", "student_layers", "temperature", "alpha", "augment"}
        if self.task == "pretrain":
            skip |= {"lora", "lora_r", "lora_alpha", "lora_dropout", "lora_targets", "adapter_only"}
        elif not self.lora:
            skip |= {"lora_r", "lora_alpha", "lora_dropout", "lora_targets", "adapter_only"}
        if self.task == "pretrain":
            skip |= {"model", "max_length"} | ({"text_col"} if not self.dataset else {"corpus"})
        else:
            skip |= {"preset", "arch", "corpus"}
        return {k: v for k, v in self.as_dict().items() if k not in skip}

    def title(self) -> str:
        what = {"classify": "LoRA classifier" if self.lora else "classifier", "causal-lm": "LoRA LM" if self.lora else "LM", "pretrain": "pretrain"}[self.task]
        source = self.dataset or self.corpus
        base = f"GPT-2 {self.preset}" if self.task == "pretrain" else self.model
        if self.distill:
            return f"Distil {what}: {base} → {self.student_layers} layers on {source} → {self.name or '(auto name)'}"
        return f"Train {what}: {base} on {source} → {self.name or '(auto name)'}"

    def to_cli(self) -> str:
        """The command line that runs this config again."""
        default = TrainConfig(task=self.task, **task_defaults(self.task, self.lora, self.distill))
        words = ["python", "-m", "llm_lab", "train", self.task]
        distilling = ("model", "distill", "student_layers", "temperature", "alpha", "augment") if self.distill else ()
        if self.distill:  # spelt out, defaults too: the student's recipe reads in one place
            words += ["--distill-from", self.model, "--student-layers", str(self.student_layers),
                      "--temperature", f"{self.temperature:g}", "--alpha", f"{self.alpha:g}"]
            words += ["--augment", str(self.augment)] if self.task == "classify" else []
        for f in fields(self):
            value, base = getattr(self, f.name), getattr(default, f.name)
            if f.name == "task" or value == base or (f.name == "name" and not value) or f.name in distilling:
                continue
            flag = "--data" if f.name == "dataset" else "--" + f.name.replace("_", "-")
            if isinstance(value, bool):
                words.append(flag if value else "--no-" + f.name.replace("_", "-"))
            elif isinstance(value, list):
                words += [flag, ",".join(map(str, value))]
            elif isinstance(value, dict):
                words += [flag, ",".join(f"{k}={v}" for k, v in value.items())]
            elif f.name == "out":
                words += [flag, _short_path(value)]
            else:
                words += [flag, str(value)]
        return " ".join(shlex.quote(w) for w in words)


def _short_path(path: str) -> str:
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    try:
        return str(Path(path).resolve().relative_to(repo))
    except ValueError:
        return path


def task_defaults(task: str, lora: bool = False, distill: bool = False, model: str | None = None) -> dict:
    """Hyperparameters that work for each task on the demo data (the page and CLI start from these).

    Measured on the demo reviews / docs (see the issue-12 note): MiniLM needs ~100 optimizer steps at 1e-4 to
    learn three classes from 114 rows (3 epochs of 16 at 5e-5 stayed at chance); LoRA needs a learning rate
    ten times a full fine-tune's, or the adapter barely moves and the model equals its parent.
    DISTILL_DEFAULTS: a 3-layer student of minilm-sentiment on the demo reviews, 3 epochs with 4 augmented copies
    of each review, scores 11 of the 14 test reviews like its teacher (README, "Distillation"); T and alpha
    (2, 0.5 against 4, 0.9) made no difference there, 5 epochs or lr 2e-4 none either.
    CHAT_DEFAULTS (`model` = the chat model; the page passes it): LoRA r=8 on q/v, batch 8, on the 130 training pairs
    of demo-instructions: 2 epochs (34 steps) at 1e-3 train in about 4 minutes on a 2-core CPU and 14 of the 15 test
    answers start "In short:" (none before), chrF 38.7 → 60.1; 7e-4 gives 12 of 15 (chrF 54.4); 1 epoch at 5e-4 none
    (the answers change, not their style). A full fine-tune, 2 epochs at 5e-5: 15 of 15, chrF 71.2, in about 1.6 times
    LoRA's time and ~2 GB more memory (AdamW's state for all 135M weights)."""
    if distill and task in DISTILL_DEFAULTS:
        return dict(DISTILL_DEFAULTS[task])
    if task == "classify":
        return dict(epochs=8.0, batch_size=8, learning_rate=1e-3 if lora else 1e-4, max_length=128, warmup=0.1)
    if task == "causal-lm":
        from ..registry import CHAT_MODEL

        if model == CHAT_MODEL:  # the page's starting point once the chat model is picked ("model" is not set here:
            return dict(CHAT_DEFAULTS["lora" if lora else "full"])  # to_cli spells out what differs from tiny-gpt's)
        return dict(model="tiny-gpt", epochs=3.0, batch_size=8, learning_rate=2e-3 if lora else 3e-4,
                    max_length=256, warmup=0.05)
    return dict(TINY_GPT, max_length=256)
