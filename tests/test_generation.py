"""llm_lab.generation: batched = single-prompt under greedy, log-probabilities, stop strings, truncation."""
import pytest
import torch

from llm_lab import inference
from llm_lab.access import LOCAL
from llm_lab import generation as G
from llm_lab import registry
from llm_lab.batching import context_length
from llm_lab.errors import LabError, ModelError

PROMPTS = ["def foo(x):", "The built-in function", "a", "Return the value of the attribute named by the string",
           "class", "If the object is a module, the"]


@pytest.fixture
def lm(tiny_gpt2):
    return registry.load(LOCAL, str(tiny_gpt2), head="causal-lm")


def test_greedy_batched_equals_single(lm):
    settings = G.GenerationSettings(max_new_tokens=12, batch_size=4)
    batched = inference.generate(lm, PROMPTS, settings)
    assert [r.prompt for r in batched] == PROMPTS  # prompt order kept despite length bucketing
    for prompt, res in zip(PROMPTS, batched):
        single = inference.generate(lm, [prompt], settings)[0]
        assert res.token_ids == single.token_ids
        assert res.text == single.text
        assert res.mean_logprob == pytest.approx(single.mean_logprob, abs=1e-4)
        assert res.new_tokens == 12 and res.stop_reason == "max_new_tokens"
        assert res.latency_s > 0 and res.tokens_per_s == pytest.approx(res.new_tokens / res.latency_s)


def test_padding_side_restored(lm):
    lm.tokenizer.padding_side = "right"
    inference.generate(lm, PROMPTS[:2], G.GenerationSettings(max_new_tokens=2))
    assert lm.tokenizer.padding_side == "right"


def test_mean_logprob_matches_forward_pass(lm):
    res = inference.generate(lm, PROMPTS[:3], G.GenerationSettings(max_new_tokens=8))
    for r in res:
        prompt_ids = lm.tokenizer(r.prompt)["input_ids"]
        ids = torch.tensor([prompt_ids + r.token_ids])
        with torch.no_grad():
            logp = torch.log_softmax(lm.model(ids).logits.float(), -1)[0]
        n = len(prompt_ids)
        direct = [logp[n - 1 + j, t].item() for j, t in enumerate(r.token_ids)]
        assert r.mean_logprob == pytest.approx(sum(direct) / len(direct), abs=1e-4)
        assert r.mean_logprob < 0


def test_logprob_ignores_temperature(lm):
    """Sampling at a low temperature is (almost) greedy; the log-probability is the model's, not the tempered one."""
    greedy = inference.generate(lm, PROMPTS[:1], G.GenerationSettings(max_new_tokens=6))[0]
    cold = inference.generate(lm, PROMPTS[:1], G.GenerationSettings(max_new_tokens=6, do_sample=True, temperature=1e-4))[0]
    assert cold.token_ids == greedy.token_ids
    assert cold.mean_logprob == pytest.approx(greedy.mean_logprob, abs=1e-4)


def test_sampling_seed_reproducible(lm):
    s = G.GenerationSettings(max_new_tokens=10, do_sample=True, temperature=1.5, top_k=50, top_p=0.95, seed=7)
    a = inference.generate(lm, PROMPTS[:3], s)
    b = inference.generate(lm, PROMPTS[:3], s)
    assert [r.token_ids for r in a] == [r.token_ids for r in b]
    c = inference.generate(lm, PROMPTS[:3], G.GenerationSettings(**{**s.as_dict(), "seed": 8}))
    assert [r.token_ids for r in a] != [r.token_ids for r in c]


def test_stop_strings(lm):
    plain = inference.generate(lm, PROMPTS, G.GenerationSettings(max_new_tokens=16))
    # a stop string taken from the middle of one output: that output ends right before it
    target = next(r for r in plain if len(r.text.strip()) > 6)
    stop = target.text[4:7]
    assert stop and stop in target.text
    stopped = inference.generate(lm, PROMPTS, G.GenerationSettings(max_new_tokens=16, stop=[stop]))
    for before, after in zip(plain, stopped):
        if stop in before.text:
            assert after.text == before.text[:before.text.index(stop)]
            assert after.stop_reason == "stop_string"
            assert after.new_tokens <= before.new_tokens
            assert after.token_ids == before.token_ids[:after.new_tokens]
        else:
            assert after.text == before.text and after.stop_reason == before.stop_reason
    # streaming stops at the same place
    pieces = list(inference.stream(lm, target.prompt, G.GenerationSettings(max_new_tokens=16, stop=[stop])))
    final = pieces[-1]
    assert "".join(pieces[:-1]) == final.text == target.text[:target.text.index(stop)]


def test_stream_equals_batched(lm):
    settings = G.GenerationSettings(max_new_tokens=10)
    pieces = list(inference.stream(lm, PROMPTS[1], settings))
    final = pieces[-1]
    assert isinstance(final, G.GenerationResult) and all(isinstance(p, str) for p in pieces[:-1])
    assert len(pieces) > 2  # it really streamed in pieces
    batched = inference.generate(lm, PROMPTS[:2], settings)[1]
    assert "".join(pieces[:-1]) == final.text == batched.text
    assert final.mean_logprob == pytest.approx(batched.mean_logprob, abs=1e-4)


def test_long_prompt_truncated_from_left(lm):
    context = context_length(lm.model, lm.tokenizer)
    assert context == 128
    long_prompt = " ".join(f"word{i}" for i in range(400))
    res = inference.generate(lm, [long_prompt, "short"], G.GenerationSettings(max_new_tokens=8))
    assert res[0].truncated and "cut from the left" in res[0].note
    assert res[0].prompt_tokens == context - 8
    assert not res[1].truncated and res[1].note == ""
    # what was kept is the end of the prompt: same output as generating from the kept tail
    tail_ids = lm.tokenizer(long_prompt)["input_ids"][-(context - 8):]
    tail = lm.tokenizer.decode(tail_ids)
    assert lm.tokenizer(tail)["input_ids"] == tail_ids
    assert inference.generate(lm, [tail], G.GenerationSettings(max_new_tokens=8))[0].token_ids == res[0].token_ids


def test_bad_input(lm, tiny_bert):
    with pytest.raises(LabError, match="empty"):
        inference.generate(lm, ["fine", "   "], G.GenerationSettings(max_new_tokens=2))
    with pytest.raises(LabError, match="No prompts"):
        inference.generate(lm, [], G.GenerationSettings())
    clf = registry.load(LOCAL, str(tiny_bert), head="classifier")
    with pytest.raises(ModelError, match="cannot generate"):
        inference.generate(clf, ["hello"], G.GenerationSettings())
    bert_as_lm = registry.load(LOCAL, str(tiny_bert), head="causal-lm")  # loads (BertLMHeadModel) but never learnt to generate
    with pytest.raises(ModelError, match="not a language model"):
        inference.generate(bert_as_lm, ["hello"], G.GenerationSettings())
    with pytest.raises(LabError):
        G.GenerationSettings(max_new_tokens=0)
    with pytest.raises(LabError):
        G.GenerationSettings(do_sample=True, temperature=0)


def test_an_empty_continuation_is_explained(lm):
    """A model whose first new token is end-of-sequence gets an empty text and a note saying why."""
    import dataclasses
    import copy

    first = inference.generate(lm, ["The list type"], G.GenerationSettings(max_new_tokens=1))[0].token_ids[0]
    model = copy.deepcopy(lm.model)
    model.generation_config.eos_token_id = first  # the token greedy picks first now ends the text
    ends_at_once = dataclasses.replace(lm, model=model)
    out = inference.generate(ends_at_once, ["The list type"], G.GenerationSettings(max_new_tokens=8))[0]
    assert out.text == "" and out.stop_reason == "eos" and out.new_tokens == 1
    assert "ended the text at once" in out.note
    normal = inference.generate(lm, ["The list type"], G.GenerationSettings(max_new_tokens=8))[0]
    assert "ended the text at once" not in normal.note


def test_no_repeat_ngram_size_keeps_every_trigram_unique(lm):
    """With no_repeat_ngram_size=3 no token trigram of prompt + output appears twice (checked on the ids)."""
    s = G.GenerationSettings(max_new_tokens=40, no_repeat_ngram_size=3)
    out = inference.generate(lm, ["the the the"], s)[0]
    ids = lm.tokenizer("the the the")["input_ids"] + out.token_ids
    grams = [tuple(ids[i:i + 3]) for i in range(len(ids) - 2)]
    assert len(out.token_ids) > 10 and len(set(grams)) == len(grams)
    assert G.suggested().no_repeat_ngram_size == 3 and G.suggested().repetition_penalty > 1
