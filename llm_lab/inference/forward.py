"""The only place a model's forward pass or `generate` is called.

The four batched calls (classify, embed, loglikelihood, generate) and the methods that need the model itself
(gradients for attributions, masked heads for importance, attention weights) go through these functions, so
what is run, on which device and with which inputs is decided in one package (`llm_lab.inference`).
`tests/test_inference.py` fails when a module outside it calls a model directly.
"""
from __future__ import annotations

from .cls_forward import classifier_logits  # noqa: F401  (the [CLS]-only classifier forward, re-exported)


def outputs(model, **inputs):
    """The model's own output object for `inputs` (logits, last_hidden_state, hidden states, attentions as asked)."""
    return model(**inputs)


def lm_logits(model, input_ids=None, attention_mask=None, inputs_embeds=None, logits_to_keep: int | None = None):
    """A causal LM's next-token logits at every position (or the last `logits_to_keep`)."""
    given = {"input_ids": input_ids, "attention_mask": attention_mask, "inputs_embeds": inputs_embeds}
    kwargs = {k: v for k, v in given.items() if v is not None}
    if logits_to_keep:
        kwargs["logits_to_keep"] = logits_to_keep
    return model(**kwargs).logits


def last_hidden(model, input_ids, attention_mask=None, **extra):
    """The encoder's last hidden states (the base model's, for a model with a head)."""
    base = getattr(model, "base_model", model)
    kwargs = {"input_ids": input_ids, **extra}
    if attention_mask is not None:
        kwargs["attention_mask"] = attention_mask
    return base(**kwargs).last_hidden_state


def hidden_states(model, input_ids, attention_mask=None):
    """Every layer's hidden states (embeddings first) of the base model: a tuple of (batch, tokens, width)."""
    base = getattr(model, "base_model", model)
    kwargs = {"input_ids": input_ids, "output_hidden_states": True}
    if attention_mask is not None:
        kwargs["attention_mask"] = attention_mask
    return base(**kwargs).hidden_states


def generate_ids(model, **kwargs):
    """`model.generate(**kwargs)`: token ids (or the dict transformers returns when asked for one)."""
    return model.generate(**kwargs)
