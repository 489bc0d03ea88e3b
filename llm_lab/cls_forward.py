"""Classifier logits that compute only the [CLS] row in the last encoder layer.

A BERT sequence classifier reads one position of the last layer: the pooler takes row 0. Every other
row of that layer's query projection, attention output and feed-forward block is computed and thrown
away, which is about one layer in `num_hidden_layers` of all the work (1/6 for MiniLM-L6). Here the
last layer runs its keys and values over all tokens, as it must, but its queries and feed-forward
over row 0 only. Same weights, same result (float rounding aside: tests compare it with the model's
own forward). Models of any other architecture take their ordinary forward.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def supported(model) -> bool:
    config = model.config
    return (type(model).__name__ == "BertForSequenceClassification" and not config.is_decoder
            and not getattr(config, "add_cross_attention", False) and getattr(model.bert, "pooler", None) is not None
            and not getattr(config, "chunk_size_feed_forward", 0)
            and getattr(config, "_attn_implementation", "eager") in ("eager", "sdpa"))


def classifier_logits(model, input_ids=None, attention_mask=None, token_type_ids=None, inputs_embeds=None, **extra):
    """model(...).logits, computed with the [CLS]-only last layer when the architecture allows."""
    if extra or not supported(model):
        return _full(model, input_ids, attention_mask, token_type_ids, inputs_embeds, **extra)
    from transformers.masking_utils import create_bidirectional_mask

    bert = model.bert
    hidden = bert.embeddings(input_ids=input_ids, token_type_ids=token_type_ids, inputs_embeds=inputs_embeds)
    mask = create_bidirectional_mask(config=bert.config, inputs_embeds=hidden, attention_mask=attention_mask)
    if mask is not None and not isinstance(mask, torch.Tensor):  # e.g. a flex-attention block mask
        return _full(model, input_ids, attention_mask, token_type_ids, inputs_embeds)
    *layers, last = bert.encoder.layer
    for layer in layers:
        hidden = layer(hidden, mask)
    first = _last_layer_first_row(last, hidden, mask)
    return model.classifier(model.dropout(bert.pooler(first)))


def _full(model, input_ids, attention_mask, token_type_ids, inputs_embeds, **extra):
    given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids,
             "inputs_embeds": inputs_embeds}
    return model(**{k: v for k, v in given.items() if v is not None}, **extra).logits


def _last_layer_first_row(layer, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    attn = layer.attention.self
    batch, length, _ = hidden.shape
    size = attn.attention_head_size
    query = attn.query(hidden[:, :1]).view(batch, 1, -1, size).transpose(1, 2)
    key = attn.key(hidden).view(batch, length, -1, size).transpose(1, 2)
    value = attn.value(hidden).view(batch, length, -1, size).transpose(1, 2)
    row_mask = None if mask is None else mask[..., :1, :]
    context = F.scaled_dot_product_attention(query, key, value, attn_mask=row_mask, scale=attn.scaling)
    context = context.transpose(1, 2).reshape(batch, 1, -1)
    attended = layer.attention.output(context, hidden[:, :1])
    return layer.output(layer.intermediate(attended), attended)
