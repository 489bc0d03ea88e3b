"""Build the model to train: a registry model with the task's head, LoRA-wrapped, or a fresh GPT-2.

Models are loaded fresh (not from the registry's shared cache): training changes weights.
"""
from pathlib import Path

from .. import capabilities, registry
from ..errors import ModelError
from ..access import Actor
from .config import NEEDS, TrainConfig

ENCODER_ONLY = {"bert", "roberta", "distilbert", "electra", "deberta", "deberta-v2", "albert", "xlm-roberta",
                "mpnet", "camembert", "modernbert"}
LORA_FALLBACK = ["q_proj", "v_proj", "c_attn", "query", "value", "query_key_value", "Wqkv"]


def model_source(actor: Actor, name: str) -> tuple[registry.ModelEntry, str, dict]:
    """The registry entry, the folder to load from (a Hub model: its local snapshot) and the
    `from_pretrained` keyword arguments."""
    entry = registry.resolve(actor, name)
    kwargs = {"local_files_only": True} if entry.source != "hub" else {}
    if entry.source == "hub":
        kwargs = {}
        source = registry.hub_source(entry.location, {})
    else:
        registry.check_folder(Path(entry.location))
        source = entry.location
    return entry, source, kwargs


def tokenizer_for(actor: Actor, name: str):
    from transformers import AutoTokenizer

    _, source, kwargs = model_source(actor, name)
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def classifier(actor: Actor, cfg: TrainConfig, labels: list[str]):
    import transformers
    from transformers import AutoConfig, AutoModelForSequenceClassification

    entry, source, kwargs = model_source(actor, cfg.model)
    capabilities.require_entry(NEEDS[cfg.task], entry)
    config = AutoConfig.from_pretrained(source, **kwargs)
    if type(config) not in AutoModelForSequenceClassification._model_mapping:
        raise ModelError(f"{cfg.model} ({config.model_type}) has no sequence-classification head in transformers; "
                         "pick an encoder such as minilm.")
    transformers.logging.set_verbosity_error()
    model = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={l: i for i, l in enumerate(labels)}, ignore_mismatched_sizes=True, **kwargs)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = getattr(model.config, "eos_token_id", None) or 0
    if cfg.lora:  # the new classification head is trained in full beside the adapter (peft's modules_to_save)
        model = wrap_lora(model, cfg)
    return model


def causal_lm(actor: Actor, cfg: TrainConfig):
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM

    entry, source, kwargs = model_source(actor, cfg.model)
    config = AutoConfig.from_pretrained(source, **kwargs)
    if config.model_type in ENCODER_ONLY or type(config) not in AutoModelForCausalLM._model_mapping:
        raise ModelError(f"{cfg.model} is an encoder ({config.model_type}) without a causal language-model head: "
                         "it cannot continue text. Pick a causal LM such as tiny-gpt, or pretrain one.")
    capabilities.require_entry(NEEDS[cfg.task], entry)
    transformers.logging.set_verbosity_error()
    model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    if cfg.lora:
        model = wrap_lora(model, cfg)
    return model


def lora_targets(model, cfg: TrainConfig) -> list[str]:
    """The user's target modules, else peft's default for the architecture, else common names present."""
    if cfg.lora_targets:
        return list(cfg.lora_targets)
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS

    targets = DEFAULTS.get(model.config.model_type)
    if targets:
        return list(targets)
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    found = [t for t in LORA_FALLBACK if t in names]
    if not found:
        raise ModelError(f"No default LoRA target modules for {model.config.model_type}; name them "
                         "(Advanced → LoRA target modules), e.g. the attention projections.")
    return found


def wrap_lora(model, cfg: TrainConfig):
    from peft import LoraConfig, TaskType, get_peft_model

    targets = lora_targets(model, cfg)
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    missing = [t for t in targets if t not in names]
    if missing:
        raise ModelError(f"LoRA target module(s) {', '.join(missing)} do not exist in {cfg.model}. "
                         f"Linear layers there include: {', '.join(sorted(_linear_names(model))[:12])}.")
    task_type = TaskType.SEQ_CLS if cfg.task == "classify" else TaskType.CAUSAL_LM
    config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                        target_modules=targets, task_type=task_type,
                        fan_in_fan_out=model.config.model_type == "gpt2")
    return get_peft_model(model, config)


def _linear_names(model) -> set[str]:
    import torch

    return {n.rsplit(".", 1)[-1] for n, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) or type(m).__name__ == "Conv1D"}


def gpt2_from_scratch(cfg: TrainConfig, tokenizer):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    arch = cfg.architecture()
    torch.manual_seed(cfg.seed)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=arch["n_embd"], n_layer=arch["n_layer"],
                        n_head=arch["n_head"], n_positions=arch["n_positions"], bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return GPT2LMHeadModel(config)


def count_parameters(model) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable
