"""Small inference helpers the Models page and CLI use: classify and embed."""
import numpy as np
import torch

from .cls_forward import classifier_logits
from .registry import LoadedModel


def _batches(items, size):
    for start in range(0, len(items), size):
        yield items[start:start + size]


@torch.inference_mode()
def classify(loaded: LoadedModel, texts: list[str], batch_size: int = 32, max_length: int = 256) -> np.ndarray:
    """Class probabilities, shape (len(texts), num_labels)."""
    out = []
    with loaded.lock:
        for batch in _batches(list(texts), batch_size):
            enc = loaded.tokenizer(batch, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            logits = classifier_logits(loaded.model, **enc.to(loaded.device))
            out.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(loaded.labels)))


@torch.inference_mode()
def embed(loaded: LoadedModel, texts: list[str], batch_size: int = 32, max_length: int = 256) -> np.ndarray:
    """Mean-pooled, L2-normalised sentence embeddings (as sentence-transformers does for MiniLM)."""
    base = getattr(loaded.model, "base_model", loaded.model)
    out = []
    with loaded.lock:
        for batch in _batches(list(texts), batch_size):
            enc = loaded.tokenizer(batch, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            enc = enc.to(loaded.device)
            hidden = base(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state.float()
            mask = enc["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
