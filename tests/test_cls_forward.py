"""The [CLS]-only last layer gives the model's own logits and gradients."""
import pytest
import torch

from llm_lab.access import LOCAL
from llm_lab import registry
from llm_lab.cls_forward import classifier_logits, supported

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


def test_other_architectures_take_their_own_forward(tiny_gpt2):
    loaded = registry.load(LOCAL, str(tiny_gpt2), head="classifier", dtype="float32")
    assert not supported(loaded.model)
    ids = loaded.tokenizer("def f(x):", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        torch.testing.assert_close(classifier_logits(loaded.model, input_ids=ids), loaded.model(input_ids=ids).logits)
