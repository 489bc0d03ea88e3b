"""Classifier logits that compute only the [CLS] row in the last encoder layer, and only real tokens.

A BERT sequence classifier reads one position of the last layer: the pooler takes row 0. Every other
row of that layer's query projection, attention output and feed-forward block is computed and thrown
away, which is about one layer in `num_hidden_layers` of all the work (1/6 for MiniLM-L6). Here the
last layer runs its keys and values over all tokens, as it must, but its queries and feed-forward
over row 0 only.

A padded batch (right padding: every row starts with a real token) also skips the padding: the
projections and the feed-forward block, most of the work, act on each position alone, so they run on
the real tokens packed into one (tokens, hidden) matrix; only attention lays them out padded again,
with the model's own mask. A batch of mixed lengths then costs about what its rows cost one at a
time (the padding of a benchmark's length buckets was a third of its work). No padding position is
ever read by a real one, so the result is the same.

Same weights, same result (float rounding aside: tests compare logits and gradients with the model's
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
    if _packable(attention_mask, mask):
        return _packed_logits(model, layers, last, hidden, attention_mask, mask)
    for layer in layers:
        hidden = layer(hidden, mask)
    first = _last_layer_first_row(last, hidden, mask)
    return model.classifier(model.dropout(bert.pooler(first)))


def _packable(attention_mask, mask) -> bool:
    """Padded rows whose first position is a real token (right padding): only their real tokens need the
    position-wise work (projections, feed-forward); the padding positions are never read."""
    return (mask is not None and attention_mask is not None and attention_mask.dim() == 2
            and not torch.is_floating_point(attention_mask) and bool(attention_mask[:, 0].all()))


def _packed_logits(model, layers, last, hidden, attention_mask, mask):
    """The same layers on the real tokens only: the rows of a batch are packed into one (tokens, hidden)
    matrix for every position-wise step and laid out padded only inside attention, where each row's keys
    need their positions (the mask hides the padding there, as in the model's own forward)."""
    batch, length, width = hidden.shape
    real = attention_mask.reshape(-1).nonzero().squeeze(1)  # positions of the real tokens in (batch * length)
    x = hidden.reshape(batch * length, width).index_select(0, real)
    for layer in layers:
        x = _packed_layer(layer, x, real, batch, length, mask)
    counts = attention_mask.sum(1)
    first_rows = counts.cumsum(0) - counts  # where each sequence's first token (a real one) sits in x
    first = _packed_last_layer_first_row(last, x, real, first_rows, batch, length, mask)
    return model.classifier(model.dropout(model.bert.pooler(first)))


def _padded_heads(t: torch.Tensor, real: torch.Tensor, batch: int, length: int, size: int) -> torch.Tensor:
    """(tokens, heads * size) packed rows -> (batch, heads, length, size), zeros at the padding."""
    out = t.new_zeros(batch * length, t.shape[-1]).index_copy_(0, real, t)
    return out.view(batch, length, -1, size).transpose(1, 2)


def _packed_layer(layer, x: torch.Tensor, real: torch.Tensor, batch: int, length: int, mask) -> torch.Tensor:
    attn = layer.attention.self
    size = attn.attention_head_size
    query, key, value = (_padded_heads(proj(x), real, batch, length, size) for proj in (attn.query, attn.key, attn.value))
    context = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=attn.scaling)
    context = context.transpose(1, 2).reshape(batch * length, -1).index_select(0, real)
    attended = layer.attention.output(context, x)
    return layer.output(layer.intermediate(attended), attended)


def _packed_last_layer_first_row(layer, x: torch.Tensor, real: torch.Tensor, first_rows: torch.Tensor, batch: int,
                                  length: int, mask):
    attn = layer.attention.self
    size = attn.attention_head_size
    first = x.index_select(0, first_rows).unsqueeze(1)  # (batch, 1, hidden)
    query = attn.query(first).view(batch, 1, -1, size).transpose(1, 2)
    key = _padded_heads(attn.key(x), real, batch, length, size)
    value = _padded_heads(attn.value(x), real, batch, length, size)
    row_mask = mask[..., :1, :]
    context = F.scaled_dot_product_attention(query, key, value, attn_mask=row_mask, scale=attn.scaling)
    context = context.transpose(1, 2).reshape(batch, 1, -1)
    attended = layer.attention.output(context, first)
    return layer.output(layer.intermediate(attended), attended)


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
