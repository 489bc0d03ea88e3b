"""One capability spec: what a model can do is decided once, every feature asks the same check."""
import pytest

from llm_lab.access import LOCAL
from llm_lab import capabilities as caps
from llm_lab import registry
from llm_lab.bench.suite import TASK_TYPES
from llm_lab.compare import runs
from llm_lab.errors import ModelError
from llm_lab.explain import specs
from llm_lab.train import config as train_config


def entry(head: str, name: str = "m"):
    return registry.ModelEntry(name, "local", "-", head)


def test_one_rule_for_the_default_head():
    assert caps.default_head(entry("classifier")) == "classifier"
    assert caps.default_head(entry("causal-lm")) == "causal-lm"
    assert caps.default_head(entry("encoder")) == "encoder"
    assert caps.default_head(entry("unknown")) == "encoder"


def test_entry_fits_decides_every_picker():
    gen, cls, trained = caps.GENERATE, caps.CLASSIFY, caps.needs("x", caps.TRAINED_HEAD)
    assert [caps.entry_fits(gen, entry(h)) for h in ("classifier", "encoder", "causal-lm")] == [False, False, True]
    assert [caps.entry_fits(cls, entry(h)) for h in ("classifier", "encoder", "causal-lm")] == [True, True, False]
    assert [caps.entry_fits(trained, entry(h)) for h in ("classifier", "encoder", "causal-lm")] == [True, False, False]
    # attention views work with any model, opened with its default head
    assert all(caps.entry_fits(specs.ATTENTION_NEEDS, entry(h)) for h in ("classifier", "encoder", "causal-lm"))
    assert caps.head_for(specs.ATTENTION_NEEDS, entry("classifier")) == "classifier"
    assert caps.head_for(cls, entry("encoder")) == "classifier"


def test_loaded_capabilities_are_computed_once_at_load(tiny_bert, tiny_gpt2):
    bert = registry.load(LOCAL, str(tiny_bert))
    assert bert.head == "classifier" and bert.capabilities.has(caps.CLASSIFIER, caps.TRAINED_HEAD, caps.GRADIENTS)
    assert bert.labels == ["negative", "positive"] and not bert.head_is_new
    assert not bert.capabilities.has(caps.CAUSAL_LM) and not bert.attention
    gpt = registry.load(LOCAL, str(tiny_gpt2))
    assert gpt.head == "causal-lm" and gpt.capabilities.has(caps.CAUSAL_LM)
    assert gpt.capabilities.max_context == gpt.model.config.n_positions
    eager = registry.load(LOCAL, str(tiny_gpt2), attention=True)
    assert eager.capabilities.has(caps.ATTENTION)
    # an encoder given a new classifier head can be attributed but is not a trained classifier
    fresh = registry.load(LOCAL, str(tiny_bert), head="encoder")
    assert fresh.capabilities.provides >= {caps.ENCODER} and not fresh.capabilities.has(caps.CLASSIFIER)


def test_one_message_for_a_mismatch_everywhere(tiny_bert):
    bert = registry.load(LOCAL, str(tiny_bert))
    with pytest.raises(ModelError) as generation_error:
        caps.require(caps.GENERATE, bert)
    with pytest.raises(ModelError) as method_error:
        specs.require(bert, specs.get_method("gen_ig"))
    for exc, what in ((generation_error, "Text generation"), (method_error, specs.get_method("gen_ig").name)):
        text = str(exc.value)
        assert text.startswith(f"{what} does not apply to {tiny_bert.name} opened as classifier: it needs a causal language model")
    # before loading, the same wording
    with pytest.raises(ModelError, match="A generation task does not apply to m opened as encoder: it needs a causal"):
        caps.require_entry(TASK_TYPES["generation"].model_needs, entry("encoder"))
    with pytest.raises(ModelError, match="Fine-tuning a classifier does not apply to g opened as causal-lm: it needs a classifier head"):
        caps.require_entry(train_config.NEEDS["classify"], entry("causal-lm", "g"))


def test_every_feature_declares_its_needs():
    assert all(isinstance(t.model_needs, caps.Needs) for t in TASK_TYPES.values())
    assert set(runs.NEEDS) == set(runs.MODES)
    assert set(train_config.NEEDS) == set(train_config.TASKS)
    for method in {**specs.CLASSIFICATION_METHODS, **specs.GENERATION_METHODS}.values():
        assert method.requirements.caps == method.needs


def test_attention_page_and_cli_open_a_classifier_alike(tiny_bert, capsys):
    """They used to disagree: the page opened a classifier as `classifier`, the CLI as `encoder`."""
    from llm_lab.cli import main

    registry.forget()
    assert main(["explain", "attention", str(tiny_bert), "a short text"]) == 0
    opened = {key[2] for key in registry._cache}  # (source, location, head, ...)
    assert opened == {caps.head_for(specs.ATTENTION_NEEDS, registry.resolve(LOCAL, str(tiny_bert)))} == {"classifier"}
