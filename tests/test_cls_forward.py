"""The [CLS]-only last layer gives the model's own logits and gradients."""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from llm_lab.access import LOCAL
from llm_lab import registry
from llm_lab.inference.cls_forward import classifier_logits, supported

TEXTS = ["a fine film", "an awful, overlong and badly acted film with a script nobody checked", "ok"]


@pytest.mark.parametrize("name", ["tiny_bert", "minilm"])
@pytest.mark.parametrize("attention", [False, True])  # sdpa, eager
def test_logits_match_the_full_forward(request, name, attention):
    source = str(request.getfixturevalue("tiny_bert")) if name == "tiny_bert" else "minilm"
    loaded = registry.load(LOCAL, source, head="classifier", attention=attention, dtype="float32")
    assert supported(loaded.model)
    enc = loaded.tokenizer(TEXTS, padding=True, return_tensors="pt")  # padded rows, token types
    with torch.inference_mode():
        full = loaded.model(**enc).logits
        ours = classifier_logits(loaded.model, **enc)
        unpadded = classifier_logits(loaded.model, input_ids=enc["input_ids"][1:2])
    torch.testing.assert_close(ours, full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(unpadded, full[1:2], rtol=1e-5, atol=1e-5)


def test_input_gradients_match(tiny_bert):
    loaded = registry.load(LOCAL, str(tiny_bert), head="classifier", dtype="float32")
    ids = loaded.tokenizer(TEXTS[1], return_tensors="pt")["input_ids"]
    embeds = loaded.model.get_input_embeddings()(ids).detach()
    grads = []
    for fn in (lambda x: loaded.model(inputs_embeds=x).logits, lambda x: classifier_logits(loaded.model, inputs_embeds=x)):
        x = embeds.clone().requires_grad_()
        torch.softmax(fn(x), -1)[0, 1].backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-7)


def test_padded_batch_gradients_match(tiny_bert):
    """Gradients through the packed path (a padded batch) are the model's own, for every row."""
    loaded = registry.load(LOCAL, str(tiny_bert), head="classifier", dtype="float32")
    enc = loaded.tokenizer(TEXTS, padding=True, return_tensors="pt")
    assert not bool(enc["attention_mask"].all())  # padded rows
    embeds = loaded.model.get_input_embeddings()(enc["input_ids"]).detach()
    grads = []
    for fn in (loaded.model, lambda **kw: classifier_logits(loaded.model, **kw)):
        x = embeds.clone().requires_grad_()
        out = fn(inputs_embeds=x, attention_mask=enc["attention_mask"])
        torch.softmax(getattr(out, "logits", out), -1)[:, 1].sum().backward()
        grads.append(x.grad * enc["attention_mask"][..., None])  # the real tokens' gradients
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-7)


def _linear_flops(fn) -> int:
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        fn()
    return sum(n for op, n in counter.get_flop_counts()["Global"].items() if str(op) in ("aten.addmm", "aten.mm"))


def test_a_padded_batch_does_the_linear_work_of_its_real_tokens_only():
    """Projections and feed-forward (nearly all of the work) run on the real tokens: a padded batch of
    mixed lengths costs exactly what its rows cost one at a time, not rows x the longest length."""
    loaded = registry.load(LOCAL, "minilm", head="classifier", dtype="float32")
    enc = loaded.tokenizer(TEXTS, padding=True, return_tensors="pt")
    lengths = enc["attention_mask"].sum(1).tolist()
    assert len(set(lengths)) == 3  # 5, 16 and 3 tokens, padded to 16
    batch = _linear_flops(lambda: classifier_logits(loaded.model, **enc))
    alone = sum(_linear_flops(lambda: classifier_logits(loaded.model, input_ids=enc["input_ids"][i:i + 1, :n]))
                for i, n in enumerate(lengths))
    padded = _linear_flops(lambda: loaded.model(**enc))  # the model's own forward: every padded position
    assert batch == alone
    assert padded > 1.9 * alone  # 48 padded positions for 24 real tokens


def test_other_architectures_take_their_own_forward(tiny_gpt2):
    loaded = registry.load(LOCAL, str(tiny_gpt2), head="classifier", dtype="float32")
    assert not supported(loaded.model)
    ids = loaded.tokenizer("def f(x):", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        torch.testing.assert_close(classifier_logits(loaded.model, input_ids=ids), loaded.model(input_ids=ids).logits)
