"""Knowledge distillation: a student with fewer of the teacher's layers, trained on its soft labels and the gold ones.

    student = student_from_teacher(teacher, 3)           # 6 layers → 3: teacher layers 0, 3, 5, embeddings, head
    trainer = DistillTrainer(model=student, teacher=teacher, temperature=2.0, alpha=0.5, args=…)

The student has the teacher's config with `num_hidden_layers` (GPT-2: `n_layer`) lowered, and starts as a copy of
the teacher: embeddings, the kept layers, the final norm, pooler and head. "spread" keeps the first and the last
layer and the rest evenly between (6 → 3: 0, 3, 5; 12 → 6: 0, 2, 4, 7, 9, 11); "every" keeps every (L/n)-th from
the first, as DistilBERT does (6 → 3: 0, 2, 4). See `pick_layers` for why "spread" is the default.

The loss (Hinton et al. 2015) per example, or per predicted token of a causal LM:

    loss = alpha · T² · KL(softmax(teacher / T) ‖ softmax(student / T)) + (1 − alpha) · CE(student, gold)

For a causal LM both terms are over the next-token distributions at the positions the ordinary loss counts
(labels ≠ −100 after the one-token shift: padding and, in prompt-completion data, the prompt are left out). The
teacher runs in eval mode under `torch.no_grad`, on the student's device. The two terms are logged as `kd_loss`
and `ce_loss` beside the training loss, so the live curves show them.

As a training run, distillation is `TrainConfig.distill` on a classify or causal-lm recipe: `model` is the
teacher, `student_layers`, `temperature` and `alpha` the rest (`runner.prepare` and `runner.train` call here).
"""
import functools
import json
import re
from pathlib import Path

from ..access import Actor
from ..errors import ModelError

LAYER_LISTS = ("layer", "layers", "h", "block", "blocks")  # the last name of a model's list of transformer layers


# ---------------------------------------------------------------- the student
def pick_layers(n_teacher: int, n_student: int, pick="spread") -> list[int]:
    """The teacher layers a student of `n_student` layers starts from: "spread" (the first, the last and the rest
    evenly between, rounded half up: 6 → 3 keeps 0, 3, 5; one layer: the last), "every" (every (L/n)-th from the
    first, DistilBERT's every other layer: 6 → 3 keeps 0, 2, 4), "first" (the bottom n), "last" (the top n), or a
    list of indices. "spread" is the default because the teacher's head was trained on its last layer's output:
    measured on minilm-sentiment, a 3-layer student made of layers 0, 3, 5 agrees with the teacher on 21 of the 29
    held-out reviews before any training, one made of 0, 2, 4 on 8."""
    if not 1 <= n_student < n_teacher:
        raise ModelError(f"A student needs fewer layers than its teacher and at least one: the teacher has "
                         f"{n_teacher}, the student was asked for {n_student}.")
    if isinstance(pick, (list, tuple)):
        chosen = [int(i) for i in pick]
        if len(chosen) != n_student or len(set(chosen)) != n_student or not all(0 <= i < n_teacher for i in chosen):
            raise ModelError(f"Pick {n_student} different teacher layers among 0…{n_teacher - 1}, not {chosen}.")
        return sorted(chosen)
    if pick == "spread":
        if n_student == 1:
            return [n_teacher - 1]
        return [int(i * (n_teacher - 1) / (n_student - 1) + 0.5) for i in range(n_student)]
    if pick == "every":
        return [i * n_teacher // n_student for i in range(n_student)]
    if pick == "first":
        return list(range(n_student))
    if pick == "last":
        return list(range(n_teacher - n_student, n_teacher))
    raise ModelError(f"Unknown layer pick {pick!r}: spread, every, first, last or a list of indices.")


def num_layers(config) -> int:
    n = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    if not n:
        raise ModelError(f"Cannot tell how many layers a {config.model_type} model has: no num_hidden_layers.")
    return int(n)


def layer_list_name(model, n_layers: int) -> str:
    """The dotted name of the model's list of its `n_layers` transformer layers (bert.encoder.layer, transformer.h)."""
    import torch

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n_layers and name.rsplit(".", 1)[-1] in LAYER_LISTS:
            return name
    raise ModelError(f"Cannot find the list of {n_layers} layers in {type(model).__name__}: distillation supports "
                     "BERT-family encoders and GPT-2-style decoders.")


def student_from_teacher(teacher_model, n_layers: int, pick="spread"):
    """A new model of the teacher's class and config with `n_layers` layers, initialised from the teacher: every
    weight outside the layer list copied, layer i from teacher layer picked[i]. Its own tensors (a plain, full
    model: a merged adapter's teacher gives a merged copy), in float32, on the CPU, in train mode."""
    import copy

    import torch

    n_teacher = num_layers(teacher_model.config)
    picked = pick_layers(n_teacher, n_layers, pick)
    prefix = layer_list_name(teacher_model, n_teacher) + "."
    config = copy.deepcopy(teacher_model.config)
    config.num_hidden_layers = n_layers  # GPT-2's attribute_map turns it into n_layer
    if isinstance(getattr(config, "layer_types", None), list) and len(config.layer_types) == n_teacher:
        config.layer_types = [config.layer_types[i] for i in picked]
    config.dtype = "float32"
    with torch.device("cpu"):
        student = type(teacher_model)(config)
    teacher_state = teacher_model.state_dict()
    state = {}
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.(.*)")
    for key in student.state_dict():
        m = pattern.fullmatch(key)
        source = f"{prefix}{picked[int(m.group(1))]}.{m.group(2)}" if m else key
        if source not in teacher_state:
            raise ModelError(f"The teacher has no weight {source} for the student's {key}.")
        state[key] = teacher_state[source].detach().to("cpu", torch.float32)
    student.load_state_dict(state, strict=True)  # copies into the student's own tensors
    if hasattr(student, "tie_weights"):
        student.tie_weights()
    return student.train()


# ---------------------------------------------------------------- a transfer set
MASK_P, WINDOW_P = 0.15, 0.25


def augment_rows(rows: list[dict], copies: int, tokenizer, seed: int = 0) -> list[dict]:
    """`copies` variants of each tokenized classification row, for the teacher to label (labels −100: no gold
    label, the soft-label term only), as Tang et al. (2019) do for small task data: each token masked with
    probability 0.15 (dropped when the tokenizer has no mask token), and with probability 0.25 only a random window
    of at least half of it kept. Special tokens stay where they are. Deterministic for a seed."""
    import random

    rng = random.Random(seed)
    special = set(tokenizer.all_special_ids)
    mask_id = tokenizer.mask_token_id
    out = []
    for row in rows:
        ids = list(row["input_ids"])
        inner = [i for i, t in enumerate(ids) if t not in special]
        for _ in range(copies):
            keep = inner
            if len(inner) >= 4 and rng.random() < WINDOW_P:
                width = rng.randint((len(inner) + 1) // 2, len(inner))
                start = rng.randint(0, len(inner) - width)
                keep = inner[start:start + width]
            kept, new = set(keep), []
            for i, token in enumerate(ids):
                if i in kept and rng.random() < MASK_P:
                    if mask_id is not None:
                        new.append(mask_id)
                elif token in special or i in kept:
                    new.append(token)
            out.append({"input_ids": new, "attention_mask": [1] * len(new), "labels": -100})
    return out


# ---------------------------------------------------------------- the loss
def losses(student_logits, teacher_logits, labels, temperature: float, causal: bool):
    """(kd, ce): the soft-label term T²·KL(teacher_T ‖ student_T) and the gold cross-entropy, each a mean over the
    examples (a classifier) or the predicted tokens (a causal LM: logits at t against labels at t+1, −100 left out)."""
    import torch.nn.functional as F

    s, t = student_logits.float(), teacher_logits.float()
    if causal:  # the soft term where the gold one is: padding (and a prompt) left out
        s, t, labels = s[:, :-1], t[:, :-1], labels[:, 1:]
        keep = labels != -100
        s, t, labels = s[keep], t[keep], labels[keep]
    zero = s.sum() * 0.0
    if not len(s):
        return zero, zero
    log_s = F.log_softmax(s / temperature, dim=-1)
    log_t = F.log_softmax(t / temperature, dim=-1)
    kd = (log_t.exp() * (log_t - log_s)).sum(-1).mean() * temperature ** 2
    gold = labels != -100  # a classifier's augmented rows have the teacher's labels only
    ce = F.cross_entropy(s[gold], labels[gold]) if gold.any() else zero
    return kd, ce


@functools.lru_cache(maxsize=None)
def _trainer_class():
    import torch
    from transformers import Trainer

    from ..inference import forward

    class DistillTrainer(Trainer):
        """Trainer whose loss is alpha·T²·KL(teacher‖student at T) + (1 − alpha)·CE(student, gold); the teacher is
        frozen (eval mode, no_grad). `kd_loss` and `ce_loss`, averaged since the last log, go beside `loss`.
        Evaluation's loss is the gold cross-entropy alone, so eval_loss and perplexity mean what they mean for
        any fine-tune."""

        loss_is_scaled_for_ga = False  # a per-batch mean: Trainer divides it by the accumulation steps

        def __init__(self, *args, teacher, temperature: float = 2.0, alpha: float = 0.5, causal: bool = False,
                     **kwargs):
            super().__init__(*args, **kwargs)
            if temperature <= 0 or not 0 <= alpha <= 1:
                raise ValueError("temperature must be positive and alpha in [0, 1]")
            self.teacher = teacher.eval()  # its parameters' flags are left alone: it may be the registry's shared copy
            self.temperature, self.alpha, self.causal = float(temperature), float(alpha), causal
            self._parts = None  # running sums of (kd, ce, batches) since the last log
            self._evaluating = False

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs["labels"]
            features = {k: v for k, v in inputs.items() if k != "labels"}
            outputs = model(**features)
            device = outputs.logits.device
            if next(self.teacher.parameters()).device != device:
                self.teacher.to(device)
            with torch.no_grad():
                teacher_logits = forward.outputs(self.teacher, **{k: v.to(device) for k, v in features.items()}).logits
            kd, ce = losses(outputs.logits, teacher_logits, labels.to(device), self.temperature, self.causal)
            if self._evaluating:  # eval_loss (and perplexity) on the gold labels: comparable with any fine-tune's
                return (ce, outputs) if return_outputs else ce
            loss = self.alpha * kd + (1 - self.alpha) * ce
            if model.training:
                parts = torch.stack([kd.detach(), ce.detach(), torch.ones((), device=device)])
                self._parts = parts if self._parts is None else self._parts + parts
            return (loss, outputs) if return_outputs else loss

        def prediction_step(self, *args, **kwargs):
            self._evaluating = True
            try:
                return super().prediction_step(*args, **kwargs)
            finally:
                self._evaluating = False

        def log(self, logs, *args, **kwargs):
            if "loss" in logs and self._parts is not None:
                kd, ce, n = self._parts.tolist()
                logs = {**logs, "kd_loss": round(kd / n, 4), "ce_loss": round(ce / n, 4)}
                self._parts = None
            return super().log(logs, *args, **kwargs)

    return DistillTrainer


def __getattr__(name):  # DistillTrainer without importing transformers when this module is imported
    if name == "DistillTrainer":
        return _trainer_class()
    raise AttributeError(name)


# ---------------------------------------------------------------- as a training run
def teacher_folder_layers(actor: Actor, name: str) -> int | None:
    """The teacher's layer count from its config.json (no transformers import; None for a Hub model)."""
    from .. import registry

    entry = registry.resolve(actor, name)
    path = Path(entry.location) / "config.json"
    if entry.source == "hub" or not path.is_file():
        return None
    config = json.loads(path.read_text())
    n = config.get("num_hidden_layers") or config.get("n_layer")
    return int(n) if n else None


def plan_text(actor: Actor, teacher: str, n_layers: int, task: str = "classify") -> str:
    """One line for the form: which of the teacher's layers the student keeps, or why it cannot."""
    from .. import registry
    from ..errors import LabError

    try:
        head = registry.resolve(actor, teacher).head
        if task == "classify" and head != "classifier":
            return _not_a_classifier(teacher, head)
        n_teacher = teacher_folder_layers(actor, teacher)
        if n_teacher is None:
            return f"The student keeps {n_layers} of {teacher}'s layers, spread evenly from the first."
        kept = ", ".join(map(str, pick_layers(n_teacher, n_layers)))
    except LabError as exc:
        return str(exc)
    return (f"The student keeps {teacher}'s layers {kept} (of {n_teacher}), its embeddings and its "
            "head, and is trained in full.")


def _not_a_classifier(name: str, head: str) -> str:
    return (f"{name} was made as {'an' if head[:1] in ('a', 'e', 'i', 'o', 'u') else 'a'} {head}, not a classifier: "
            "its classification head would be new, random, and its soft labels teach nothing. Distil a fine-tuned "
            "classifier such as minilm-sentiment.")


def check(actor: Actor, cfg) -> None:
    """Before a distillation is queued, from the files alone: the student is smaller than the teacher, a classifier
    teacher was made as a classifier, and the dataset is labelled like it (the run checks all again)."""
    from .. import data, registry
    from .data_prep import check_teacher_labels

    entry = registry.resolve(actor, cfg.model)
    n_teacher = teacher_folder_layers(actor, cfg.model)
    if n_teacher:
        pick_layers(n_teacher, cfg.student_layers)
    if cfg.task != "classify":
        return
    if entry.head != "classifier":
        raise ModelError(_not_a_classifier(cfg.model, entry.head))
    folder = Path(entry.location)
    teacher_labels = entry.labels or (registry._builtin_labels(folder) if (folder / "config.json").is_file() else None)
    names = data.get(actor, cfg.dataset).label_names
    if teacher_labels and names:
        check_teacher_labels(cfg, names, teacher_labels)


def load_teacher(actor: Actor, cfg):
    """The teacher as the registry opens it (an adapter-only model merged over its base), float32 on the CPU,
    with the head the recipe trains; a classifier must have a trained head (its soft labels are the lesson)."""
    from .. import capabilities, registry
    from .config import NEEDS
    from .export import TASK_HEAD

    head = TASK_HEAD[cfg.task]
    loaded = registry.load(actor, cfg.model, head=head, device="cpu", dtype="float32")
    capabilities.require(NEEDS[cfg.task], loaded)
    if head == "classifier" and loaded.head_is_new:
        raise ModelError(f"{cfg.model} has no trained classification head (it would be new, random): its soft labels "
                         "teach nothing. Distil a fine-tuned classifier such as minilm-sentiment, or fine-tune "
                         f"{cfg.model} first.")
    return loaded


def teacher_for_training(loaded, device):
    """The teacher on the training device: the shared CPU copy itself (it is only read), else a copy moved there."""
    import copy

    if str(device) == "cpu":
        return loaded.model
    return copy.deepcopy(loaded.model).to(device)


def prepare(actor: Actor, cfg):
    """`runner.prepare` for a distillation: the teacher's tokenizer, the data (a classifier's labels are the
    teacher's) and the student factory. The student's size is checked before the data is read."""
    from . import data_prep, modeling

    loaded = load_teacher(actor, cfg)
    pick_layers(num_layers(loaded.model.config), cfg.student_layers)
    tokenizer = modeling.tokenizer_for(actor, cfg.model)
    if cfg.task == "classify":
        prepared = data_prep.classification(actor, cfg, tokenizer, labels=loaded.labels)
        if cfg.augment:
            prepared.train.rows = prepared.train.rows + augment_rows(prepared.train.rows, cfg.augment, tokenizer,
                                                                     cfg.seed)
            prepared.info["augmented_rows"] = len(prepared.train.rows) - prepared.info["train_rows"]
    else:
        prepared = data_prep.causal(actor, cfg, tokenizer)
    return tokenizer, prepared, lambda: student_from_teacher(loaded.model, cfg.student_layers)


def trainer_builder(actor: Actor, cfg):
    """What `runner.train` calls in place of `Trainer(...)`: a DistillTrainer with the teacher on the training
    device (a copy per attempt when that is not the CPU: an out-of-memory retry frees it with the trainer)."""
    loaded = load_teacher(actor, cfg)
    trainer_class = _trainer_class()

    def build(**kwargs):
        teacher = teacher_for_training(loaded, kwargs["args"].device)
        return trainer_class(teacher=teacher, temperature=cfg.temperature, alpha=cfg.alpha,
                             causal=cfg.task != "classify", **kwargs)

    return build


def record(actor: Actor, cfg) -> dict:
    """What the registry's meta and the model card say about the distillation."""
    teacher = load_teacher(actor, cfg).model
    n_teacher = num_layers(teacher.config)
    return {"teacher": cfg.model, "teacher_layers": n_teacher, "student_layers": cfg.student_layers,
            "layers_kept": pick_layers(n_teacher, cfg.student_layers), "temperature": cfg.temperature,
            "alpha": cfg.alpha, "teacher_parameters": sum(p.numel() for p in teacher.parameters())}


def describe(record: dict) -> str:
    kept = ", ".join(map(str, record["layers_kept"]))
    return (f"Distilling {record['teacher']} ({record['teacher_layers']} layers, "
            f"{record['teacher_parameters']:,} parameters) into {record['student_layers']} layers, initialised from "
            f"its layers {kept}; loss {record['alpha']:g} × T² × KL(teacher ‖ student at T={record['temperature']:g}) "
            f"+ {1 - record['alpha']:g} × cross-entropy on the gold labels")
