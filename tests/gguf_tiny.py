"""Write a tiny random llama model as a GGUF file, the way llama.cpp's converter lays one out.

Tests use it to load GGUF checkpoints offline in well under a second:

    info = write_tiny_llama(tmp_path / "tiny.gguf", quant="Q8_0")
    model = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="tiny.gguf", dtype=torch.float32)
    for name, value in info["expected"].items():
        torch.testing.assert_close(model.state_dict()[name], value)

The file holds a byte-level BPE tokenizer (the 256 GPT-2 byte tokens, a few merges and the ChatML
special tokens), a ChatML chat template, and the weights in F32, F16 or Q8_0. The returned dict
carries the weights in transformers' names and layout, so a test can check what a loader reads
against numbers computed here, without going through any loader.
"""
from pathlib import Path

import numpy as np

# SmolLM2-Instruct's template: one `<|im_start|>role\ncontent<|im_end|>\n` block per message.
CHATML = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Words that get whole-word merges, so tokenizing them exercises the BPE merges, not only bytes.
DEFAULT_WORDS = ("Hello", " world", " hi", "hi", "user", "assistant", " the")

# Like SmolLM2: the special tokens come first, so their ids are 0, 1 and 2.
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

SHAPE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-5, rope_theta=10000.0)

QUANTS = ("F32", "F16", "Q8_0")


def write_tiny_llama(path, *, seed: int = 0, quant: str = "F32", chat_template: str | None = CHATML,
                     vocab=DEFAULT_WORDS) -> dict:
    """Write a 2-layer random llama GGUF to `path` and return what a loader should read from it.

    `quant` is the storage type of the 2-D weights (norms stay F32, as llama.cpp keeps them).
    `chat_template=None` leaves `tokenizer.chat_template` out. `vocab` lists words that get
    merges making each one a single token (when no earlier merge splits it differently).

    Returns a dict with:
      path           the file written (a Path)
      quant          the storage type
      config         transformers config values the file encodes (hidden_size, ..., vocab_size),
                     floats as the float32 the file holds; transformers 5 keeps `rope_theta`
                     in `config.rope_parameters["rope_theta"]`, the rest are LlamaConfig attributes
      weights        {transformers name: float32 torch tensor} as drawn, before storage
      expected       the same after the storage round trip: what loading must give -- equal to
                     `weights` for F32, F16-rounded for F16, Q8_0 dequantized for Q8_0
      tokens         the vocabulary, in id order
      special_ids    {"endoftext", "im_start", "im_end", "bos", "eos", "pad"} -> token id
      chat_template  the template written (or None)
    """
    import gguf

    if quant not in QUANTS:
        raise ValueError(f"quant={quant!r} is not supported here; pick one of {QUANTS}.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokens, types, merges = byte_level_vocab(vocab)
    config = dict(SHAPE, vocab_size=len(tokens), head_dim=SHAPE["hidden_size"] // SHAPE["num_attention_heads"])
    # GGUF stores floats as float32, so that is the value a loader reads back.
    config.update({key: float(np.float32(SHAPE[key])) for key in ("rms_norm_eps", "rope_theta")})
    weights = random_llama_weights(config, seed)
    special_ids = {"endoftext": 0, "im_start": 1, "im_end": 2, "bos": 1, "eos": 2, "pad": 0}

    writer = gguf.GGUFWriter(str(path), "llama")
    add_metadata(writer, config, quant)
    add_tokenizer(writer, tokens, types, merges, special_ids, chat_template)
    expected = {}
    for hf_name, gguf_name in tensor_names(config["num_hidden_layers"]).items():
        expected[hf_name] = add_weight(writer, gguf_name, hf_name, weights[hf_name], config, quant)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return dict(path=path, quant=quant, config=config, weights=to_torch(weights), expected=to_torch(expected),
                tokens=tokens, special_ids=special_ids, chat_template=chat_template)


def byte_level_vocab(words) -> tuple[list[str], list[int], list[str]]:
    """Tokens, token types and merges: special tokens, the 256 GPT-2 byte tokens, then merged words.

    Each word is merged left to right ("H e", "He l", ...), which adds one token per merge.
    """
    import gguf
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    spelling = bytes_to_unicode()
    tokens = list(SPECIAL_TOKENS) + [spelling[b] for b in range(256)]
    types = [gguf.TokenType.CONTROL] * len(SPECIAL_TOKENS) + [gguf.TokenType.NORMAL] * 256
    merges, known = [], set(tokens)
    for word in words:
        pieces = [spelling[b] for b in word.encode("utf-8")]
        while len(pieces) > 1:
            merge, joined = f"{pieces[0]} {pieces[1]}", pieces[0] + pieces[1]
            if merge not in merges:
                merges.append(merge)
            if joined not in known:
                known.add(joined)
                tokens.append(joined)
                types.append(gguf.TokenType.NORMAL)
            pieces = [joined] + pieces[2:]
    return tokens, [int(t) for t in types], merges


def random_llama_weights(config: dict, seed: int) -> dict[str, np.ndarray]:
    """Random float32 weights in transformers' names and (out_features, in_features) layout.

    Norm weights are near 1 but not 1, so a loader that skipped them would be caught.
    """
    rng = np.random.default_rng(seed)
    hidden, inter, head_dim = config["hidden_size"], config["intermediate_size"], config["head_dim"]
    q_rows, kv_rows = config["num_attention_heads"] * head_dim, config["num_key_value_heads"] * head_dim
    shapes = {"model.embed_tokens.weight": (config["vocab_size"], hidden), "model.norm.weight": (hidden,),
              "lm_head.weight": (config["vocab_size"], hidden)}
    for i in range(config["num_hidden_layers"]):
        layer = f"model.layers.{i}."
        shapes.update({
            layer + "input_layernorm.weight": (hidden,),
            layer + "post_attention_layernorm.weight": (hidden,),
            layer + "self_attn.q_proj.weight": (q_rows, hidden),
            layer + "self_attn.k_proj.weight": (kv_rows, hidden),
            layer + "self_attn.v_proj.weight": (kv_rows, hidden),
            layer + "self_attn.o_proj.weight": (hidden, q_rows),
            layer + "mlp.gate_proj.weight": (inter, hidden),
            layer + "mlp.up_proj.weight": (inter, hidden),
            layer + "mlp.down_proj.weight": (hidden, inter),
        })
    weights = {}
    for name, shape in shapes.items():
        if len(shape) == 1:
            weights[name] = (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        else:
            weights[name] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
    return weights


def tensor_names(num_layers: int) -> dict[str, str]:
    """transformers name -> llama.cpp name."""
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    leaves = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
              "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
              "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
              "mlp.down_proj": "ffn_down"}
    for i in range(num_layers):
        for hf_leaf, gguf_leaf in leaves.items():
            names[f"model.layers.{i}.{hf_leaf}.weight"] = f"blk.{i}.{gguf_leaf}.weight"
    return names


def add_metadata(writer, config: dict, quant: str) -> None:
    import gguf

    file_types = {"F32": gguf.LlamaFileType.ALL_F32, "F16": gguf.LlamaFileType.MOSTLY_F16,
                  "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}
    writer.add_name("tiny-llama-test")
    writer.add_license("apache-2.0")
    writer.add_file_type(file_types[quant])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config["num_key_value_heads"])
    writer.add_rope_dimension_count(config["head_dim"])
    writer.add_rope_freq_base(config["rope_theta"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_vocab_size(config["vocab_size"])


def add_tokenizer(writer, tokens, types, merges, special_ids: dict, chat_template: str | None) -> None:
    writer.add_tokenizer_model("gpt2")
    # llama.cpp's name for GPT-2's own split regex; transformers then keeps GPT-2's ByteLevel split.
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(special_ids["bos"])
    writer.add_eos_token_id(special_ids["eos"])
    writer.add_pad_token_id(special_ids["pad"])
    # Like SmolLM2: the chat template writes <|im_start|> itself, so plain text gets no BOS.
    writer.add_add_bos_token(False)
    if chat_template is not None:
        writer.add_chat_template(chat_template)


def add_weight(writer, gguf_name: str, hf_name: str, weight: np.ndarray, config: dict, quant: str) -> np.ndarray:
    """Store one weight as llama.cpp would and return the value a loader should get back for it."""
    import gguf

    if weight.ndim == 1:  # llama.cpp keeps norms in F32 whatever the file type
        writer.add_tensor(gguf_name, weight)
        return weight
    stored = rope_permute(weight, hf_name, config)
    if quant == "F32":
        writer.add_tensor(gguf_name, stored)
        return weight
    if quant == "F16":
        writer.add_tensor(gguf_name, stored.astype(np.float16))
        return weight.astype(np.float16).astype(np.float32)
    qtype = gguf.GGMLQuantizationType.Q8_0
    writer.add_tensor(gguf_name, gguf.quants.quantize(stored, qtype), raw_dtype=qtype)
    # Q8_0 blocks run along a row, so quantizing commutes with the rope row permutation: the
    # round trip of the unpermuted weight is what the loader must produce after un-permuting.
    return gguf.quants.dequantize(gguf.quants.quantize(weight, qtype), qtype)


def rope_permute(weight: np.ndarray, hf_name: str, config: dict) -> np.ndarray:
    """llama.cpp's `LlamaModel.permute` for q/k: each head's rotary halves become interleaved pairs."""
    if "q_proj" in hf_name:
        heads = config["num_attention_heads"]
    elif "k_proj" in hf_name:
        heads = config["num_key_value_heads"]
    else:
        return weight
    rows, cols = weight.shape
    return weight.reshape(heads, 2, rows // heads // 2, cols).swapaxes(1, 2).reshape(rows, cols)


def to_torch(arrays: dict[str, np.ndarray]) -> dict:
    import torch

    return {name: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for name, a in arrays.items()}
