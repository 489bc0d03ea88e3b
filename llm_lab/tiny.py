"""Small random-init models for tests, benchmarks and demos, built offline in a second.

The BERT uses MiniLM's WordPiece tokenizer; the GPT-2 gets a byte-level BPE trained
with `tokenizers` on the Python documentation that CPython ships (pydoc_data).
"""
from pathlib import Path

from .corpora import pydoc_corpus



def train_bpe_tokenizer(texts: list[str], vocab_size: int = 512, model_max_length: int = 128):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, special_tokens=["<|endoftext|>"])
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   unk_token="<|endoftext|>", pad_token="<|endoftext|>",
                                   model_max_length=model_max_length)


def make_tiny_bert(folder: Path, labels=("negative", "positive"), hidden: int = 32, layers: int = 2,
                   heads: int = 2, seed: int = 0) -> Path:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from .registry import minilm_dir

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=hidden * 2, max_position_embeddings=128,
                        id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})
    folder = Path(folder)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_tiny_gpt2(folder: Path, vocab_size: int = 512, n_embd: int = 32, n_layer: int = 2, n_head: int = 2,
                   n_positions: int = 128, seed: int = 0) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    tokenizer = train_bpe_tokenizer(pydoc_corpus()[:2000], vocab_size, n_positions)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=n_embd, n_layer=n_layer, n_head=n_head,
                        n_positions=n_positions, bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    folder = Path(folder)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
