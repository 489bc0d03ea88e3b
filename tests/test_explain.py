"""Attributions, generation attribution, faithfulness and the dataset job (tiny models, CPU)."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from llm_lab import capabilities, registry
from llm_lab.access import LOCAL
from llm_lab.errors import LabError, ModelError
from llm_lab.explain import attributions as A
from llm_lab.explain import batching, faithfulness, generation, html, specs
from llm_lab.explain import text as textmod

ALL = list(specs.CLASSIFICATION_METHODS)


# ---------------------------------------------------------------- a model whose output depends on one token
class Planted(torch.nn.Module):
    """logit(pos) = 4·Σ_t relu(e_t[0]) − 1: only the planted token has e[0] > 0."""

    def __init__(self, vocab: int, planted: int, dim: int = 8):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.emb = torch.nn.Embedding(vocab, dim)
        with torch.no_grad():
            self.emb.weight.copy_(torch.randn(vocab, dim, generator=g) * 0.1)
            self.emb.weight[:, 0] = -0.2
            self.emb.weight[planted, 0] = 1.0
        self.relu = torch.nn.ReLU()
        self.config = SimpleNamespace(id2label={0: "negative", 1: "positive"}, max_position_embeddings=128)

    def get_input_embeddings(self):
        return self.emb

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, **_):
        e = self.emb(input_ids) if inputs_embeds is None else inputs_embeds
        mask = torch.ones(e.shape[:2]) if attention_mask is None else attention_mask.float()
        s = (self.relu(e[..., 0]) * mask).sum(-1)
        return SimpleNamespace(logits=torch.stack([torch.zeros_like(s), 4 * s - 1], -1))


@pytest.fixture(scope="module")
def planted():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(registry.minilm_dir())
    pid = tok.convert_tokens_to_ids("banana")
    entry = registry.ModelEntry("planted", "local", "-", "classifier")
    model = Planted(tok.vocab_size, pid).eval()
    caps = capabilities.of_model(model, tok, "classifier", entry.head, head_is_new=False, attention=False)
    return registry.LoadedModel(entry, model, tok, "cpu", "float32", caps, 0.0)


@pytest.fixture(scope="module")
def bert(tiny_bert):
    return registry.load(LOCAL, str(tiny_bert), head="classifier")


@pytest.fixture(scope="module")
def gpt(tiny_gpt2):
    return registry.load(LOCAL, str(tiny_gpt2), head="causal-lm")


PLANTED_TEXT = "we walked along the river and saw a banana near the old stone bridge today"


@pytest.mark.parametrize("method", ALL)
def test_every_method_ranks_the_planted_token_first(planted, method):
    a = A.attribute(planted, PLANTED_TEXT, method, target=1, baseline="pad", n_samples=300)
    assert a.top(1)[0][1] == "banana", (method, a.top(3))
    assert a.target_label == "positive"


def _direct_prob(model, target, input_ids=None, inputs_embeds=None) -> float:
    """p(target) from one plain forward pass of the transformers model (no llm_lab code)."""
    with torch.no_grad():
        logits = model(input_ids=input_ids, inputs_embeds=inputs_embeds).logits
    return float(torch.softmax(logits.float(), -1)[0, target])


def test_ig_completeness_on_a_transformer(bert):
    import copy
    import dataclasses

    # the random tiny BERT barely reacts to its input (f(x) − f(b) ~ 1e-5): a copy with a 100× sharper
    # head moves p(target) by ~1e-3, so the sums below are checked far above float32 noise
    model = copy.deepcopy(bert.model)
    with torch.no_grad():
        model.classifier.weight.mul_(100)
    bert = dataclasses.replace(bert, model=model)
    text = "a remarkably good and moving film"
    tok = bert.tokenizer
    ids = torch.tensor([tok(text)["input_ids"]])
    special = torch.tensor([[i in tok.all_special_ids for i in ids[0].tolist()]])
    words = model.get_input_embeddings()
    for baseline in ("pad", "mask", "zero"):
        a = A.attribute(bert, text, "ig", baseline=baseline, n_steps=64)
        diff = a.f_input - a.f_baseline
        total = sum(a.scores)
        # completeness: sum = f(x) − f(b) within 5%, or the convergence delta accounts for the gap
        assert abs(total - diff) <= 0.05 * abs(diff) + 1e-6 or abs(abs(total - diff) - abs(a.delta)) < 1e-5
        assert abs(total - diff - a.delta) < 1e-5  # delta is exactly what is missing
        # f(x) and f(baseline) from independent forward passes: [CLS]/[SEP] kept, every other token
        # replaced by [PAD]/[MASK], or its word embedding set to zero
        f_x = _direct_prob(model, a.target, input_ids=ids)
        if baseline == "zero":
            with torch.no_grad():
                b_embeds = torch.where(special.unsqueeze(-1), words(ids), torch.zeros(()))
            f_b = _direct_prob(model, a.target, inputs_embeds=b_embeds)
        else:
            fill = tok.pad_token_id if baseline == "pad" else tok.mask_token_id
            f_b = _direct_prob(model, a.target, input_ids=torch.where(special, ids, torch.tensor(fill)))
        assert a.f_input == pytest.approx(f_x, abs=1e-5) and a.f_baseline == pytest.approx(f_b, abs=1e-5)
        assert abs(f_x - f_b) > 2e-4, (baseline, f_x, f_b)  # the checks below are not 0 ≈ 0
        # the attributions sum to the independently computed f(x) − f(b), off by at most the reported delta
        assert abs(total - (f_x - f_b)) <= abs(a.delta) + 1e-6, (baseline, total, f_x - f_b, a.delta)
        # and that delta is small: 64 steps integrate the path to within 5% of the change
        assert abs(a.delta) <= 0.05 * abs(f_x - f_b), (baseline, a.delta, f_x - f_b)


def _sharp(bert):
    """The tiny BERT with a 100× sharper head: p(target) moves by ~1e-3, far above float32 noise."""
    import copy
    import dataclasses

    model = copy.deepcopy(bert.model)
    with torch.no_grad():
        model.classifier.weight.mul_(100)
    return dataclasses.replace(bert, model=model)


@pytest.mark.parametrize("method", ["ig", "deeplift"])
def test_convergence_delta_against_independent_forward_passes(bert, method):
    """delta = sum of attributions − (f(x) − f(baseline)), with f(x) and f(baseline) from plain forward passes
    of the transformers model; f(baseline) is recorded for DeepLift too, and each result carries its advice."""
    bert = _sharp(bert)
    model, tok = bert.model, bert.tokenizer
    text = "a remarkably good and moving film"
    ids = torch.tensor([tok(text)["input_ids"]])
    special = torch.tensor([[i in tok.all_special_ids for i in ids[0].tolist()]])
    for baseline in ("mask", "zero"):  # (BERT's [PAD] embedding is zero: "pad" is "zero" here)
        a = A.attribute(bert, text, method, baseline=baseline, n_steps=32)
        f_x = _direct_prob(model, a.target, input_ids=ids)
        if baseline == "zero":
            with torch.no_grad():
                b_embeds = torch.where(special.unsqueeze(-1), model.get_input_embeddings()(ids), torch.zeros(()))
            f_b = _direct_prob(model, a.target, inputs_embeds=b_embeds)
        else:
            fill = tok.pad_token_id if baseline == "pad" else tok.mask_token_id
            f_b = _direct_prob(model, a.target, input_ids=torch.where(special, ids, torch.tensor(fill)))
        assert abs(f_x - f_b) > 1e-4, (method, baseline, f_x, f_b)  # not 0 ≈ 0
        assert a.f_input == pytest.approx(f_x, abs=1e-6) and a.f_baseline == pytest.approx(f_b, abs=1e-6)
        assert a.delta == pytest.approx(sum(a.scores) - (f_x - f_b), abs=1e-6), (method, baseline)
        advice = a.delta_advice()
        assert f"{a.delta:+.2e}" in advice.text and f"{f_x - f_b:+.4f}" in advice.text
        if method == "ig":  # 32 steps converge: within 5% of the change
            assert abs(a.delta) <= 0.05 * abs(f_x - f_b) and not advice.large
            assert a.settings == {"n_steps": 32}
        else:  # DeepLift's rules do not cover GELU, LayerNorm, attention: its sum misses by a share of the change
            assert abs(a.delta) > 0.2 * abs(f_x - f_b) and advice.large, (baseline, a.delta, f_x - f_b)
            assert a.settings == {}


def test_delta_advice_comes_from_each_method_declaration():
    ig, dl = specs.get_method("ig"), specs.get_method("deeplift")
    # IG: small delta → converged; large → raise the steps, naming how many were used
    small = ig.delta_advice(1e-4, 0.90, 0.40, n_steps=50)
    assert not small.large and "Small" in small.text and "raise" not in small.text
    assert "+0.5001" in small.text and "+0.5000" in small.text  # sum of attributions, then f(x) − f(baseline)
    large = ig.delta_advice(-0.1, 0.90, 0.40, n_steps=16)
    assert large.large and "16 steps has not converged" in large.text and "raise the IG steps" in large.text
    # DeepLift: no steps to raise; its rules are approximate in a transformer; IG for completeness
    dl_large = dl.delta_advice(-0.746, 0.999, 0.250)
    assert dl_large.large and "raise the IG steps" not in dl_large.text and "no steps to raise" in dl_large.verdict
    assert all(w in dl_large.text for w in ("GELU", "LayerNorm", "attention softmax", "Integrated Gradients"))
    assert "-0.7460" not in dl_large.text and "+0.0030" in dl_large.text and "+0.7490" in dl_large.text
    dl_small = dl.delta_advice(1e-6, 0.9, 0.5)
    assert not dl_small.large and "GELU" in dl_small.meaning and "Integrated Gradients when" not in dl_small.text
    # a tiny change measured in float32: the floor keeps noise from reading as "large"
    assert not ig.delta_advice(3e-6, 0.5000, 0.5000, n_steps=50).large
    # a result stored before f(baseline) was recorded, or with its settings missing, still gets advice
    assert ig.delta_advice(0.2, 0.9, None).large and "? steps" in ig.delta_advice(0.2, 0.9, 0.1).text
    # the methods that report no delta have no advice; the ones whose runner returns one declare it
    for key, spec in specs.CLASSIFICATION_METHODS.items():
        assert (spec.delta_advice(0.5, 0.9, 0.1) is not None) == (key in ("ig", "deeplift")), key
        assert spec.delta_advice(None) is None


def test_ig_completeness_exact_on_planted(planted):
    a = A.attribute(planted, PLANTED_TEXT, "ig", target=1, n_steps=100)
    p_x = torch.softmax(torch.tensor([0.0, 3.0]), 0)[1].item()     # s = 1 → logit 3
    p_b = torch.softmax(torch.tensor([0.0, -1.0]), 0)[1].item()    # s = 0 → logit −1
    assert a.f_input == pytest.approx(p_x, abs=1e-6) and a.f_baseline == pytest.approx(p_b, abs=1e-6)
    assert sum(a.scores) == pytest.approx(p_x - p_b, rel=0.01)


def test_target_defaults_to_predicted_and_can_be_chosen(bert):
    a = A.attribute(bert, "fine", "saliency")
    assert a.target == int(np.argmax(a.probs))
    b = A.attribute(bert, "fine", "input_x_gradient", target=1 - a.target)
    assert b.target == 1 - a.target and b.target_label == bert.labels[b.target]
    with pytest.raises(ModelError, match="does not exist"):
        A.attribute(bert, "fine", "saliency", target=7)


def test_bad_input(bert, gpt):
    with pytest.raises(LabError, match="empty"):
        A.attribute(bert, "   ", "ig")
    long = " ".join(["word"] * 400)
    a = A.attribute(bert, long, "saliency")
    assert len(a.tokens) == 128 and a.notes and "only the first 128" in a.notes[0]
    with pytest.raises(ModelError, match="classifier head"):
        A.attribute(gpt, "hello", "ig")
    with pytest.raises(ModelError, match="causal language model"):
        generation.attribute_generation(bert, "hello", 2, "gen_ig")
    with pytest.raises(ModelError, match="baseline"):
        A.attribute(bert, "hello", "ablation", baseline="zero")


def test_compatible_methods_follow_the_model(bert, gpt):
    assert {m.key for m in specs.compatible_methods(bert)} == set(specs.CLASSIFICATION_METHODS)
    assert {m.key for m in specs.compatible_methods(gpt)} == set(specs.GENERATION_METHODS)


def test_repeated_calls_do_not_grow_memory(bert):
    import psutil

    proc = psutil.Process()
    for _ in range(3):
        A.attribute(bert, "warm up the allocator with a sentence", "ig", n_steps=32)
    tensors_before = sum(1 for o in __import__("gc").get_objects() if torch.is_tensor(o))
    rss_before = proc.memory_info().rss
    for _ in range(8):
        A.attribute(bert, "warm up the allocator with a sentence", "ig", n_steps=32)
    tensors_after = sum(1 for o in __import__("gc").get_objects() if torch.is_tensor(o))
    assert tensors_after - tensors_before <= 2
    assert proc.memory_info().rss - rss_before < 30 * 2**20
    assert all(p.grad is None for p in bert.model.parameters())


def test_batched_ig_matches_a_plain_captum_loop(bert):
    texts = ["short one", "a somewhat longer sentence about a film", "ok", "the plot of this movie was " * 3]
    for strategy in ("loop", "bucket"):
        ours = batching.layer_ig_many(bert, texts, n_steps=20, strategy=strategy)
        ref = batching.captum_loop(bert, texts, ours.targets, n_steps=20)
        assert batching.max_relative_difference(ours.scores, ref) < 1e-3, strategy


# ---------------------------------------------------------------- faithfulness
def test_faithfulness_on_a_constructed_case():
    # p(target) = 0.1 + 0.8·[token 7 present]; token 7 is the only one that matters
    def predict(batch):
        p = np.array([0.1 + 0.8 * (7 in ids) for ids in batch])
        return np.stack([1 - p, p], 1)

    ids = [101, 5, 7, 9, 11, 13, 15, 17, 19, 21, 102]
    special = [True] + [False] * 9 + [True]
    good = [0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0]       # ranks 7 first
    bad = [0, 5, 0, 4, 3, 2, 1, 0.5, 0.4, 0.3, 0]  # ranks 7 last
    g = faithfulness.aopc(predict, ids, good, special, 1)
    b = faithfulness.aopc(predict, ids, bad, special, 1)
    assert g["comprehensiveness"] == pytest.approx(0.8)  # deleting the top-k always removes token 7
    assert g["sufficiency"] == pytest.approx(0.0)        # keeping the top-k always keeps it
    # bad ranking: 9 candidates, top-k for 10..50% = 1,2,3,4,5 tokens: never includes token 7
    assert b["comprehensiveness"] == pytest.approx(0.0)
    assert b["sufficiency"] == pytest.approx(0.8)
    rows = [{"method": "good", **g}, {"method": "bad", **b}]
    assert faithfulness.most_faithful(rows) == "good"


def _units(comp, suff):
    return {"comprehensiveness": np.asarray(comp, dtype=float), "sufficiency": np.asarray(suff, dtype=float)}


def test_faithfulness_ranking_names_a_winner_only_beyond_the_noise():
    rng = np.random.default_rng(0)
    n = 40  # examples
    clear = {"good": _units(0.5 + rng.normal(0, 0.05, n), 0.1 + rng.normal(0, 0.05, n)),
             "bad": _units(0.2 + rng.normal(0, 0.05, n), 0.3 + rng.normal(0, 0.05, n)),
             "random": _units(0.25 + rng.normal(0, 0.05, n), 0.25 + rng.normal(0, 0.05, n))}
    r = faithfulness.rank(clear, faithfulness.EXAMPLES)
    assert r["winner"] == "good" and r["runner_up"] == "random" and r["n"] == n
    lead = (clear["good"]["comprehensiveness"] - clear["good"]["sufficiency"]
            - clear["random"]["comprehensiveness"] + clear["random"]["sufficiency"])
    assert r["lead"] == pytest.approx(lead.mean()) and r["lead_low"] > 0
    assert r["verdict"].startswith("Most faithful (comprehensiveness − sufficiency): good, ahead of random")
    # identical methods: a lead of exactly zero, whatever the spread
    same = {"a": clear["good"], "b": clear["good"]}
    r = faithfulness.rank(same, faithfulness.EXAMPLES)
    assert r["winner"] is None and r["lead"] == 0 and r["lead_low"] <= 0 <= r["lead_high"]
    assert r["verdict"].startswith("The methods cannot be told apart on these examples")
    # the reported case: every method near 1e-4, differences of noise
    noise = {m: _units(1e-4 + rng.normal(0, 3e-5, 5), 1e-4 + rng.normal(0, 3e-5, 5)) for m in ("IG", "SHAP", "LIME")}
    r = faithfulness.rank(noise)
    assert r["winner"] is None and r["leader"] in noise and r["unit"] == faithfulness.STEPS
    assert r["verdict"].startswith("The methods cannot be told apart on this input")
    assert "e-0" in r["verdict"]  # shown with its digits, never as 0.000


def test_faithfulness_noise_names_a_winner_rarely():
    """Three methods of pure noise over 30 examples: a winner in at most 5% of 100 draws."""
    named = 0
    for seed in range(100):
        rng = np.random.default_rng(seed)
        units = {m: _units(1e-4 + rng.normal(0, 3e-5, 30), 1e-4 + rng.normal(0, 3e-5, 30)) for m in "abc"}
        named += faithfulness.rank(units, faithfulness.EXAMPLES)["winner"] is not None
    assert named <= 5


def test_faithfulness_intervals_against_scipy():
    from scipy.stats import bootstrap

    rng = np.random.default_rng(3)
    x = rng.gamma(2.0, 0.1, 60)
    point, low, high = faithfulness.mean_interval(x)
    ref = bootstrap((x,), np.mean, n_resamples=20000, method="BCa", random_state=1).confidence_interval
    assert point == pytest.approx(x.mean())
    assert low == pytest.approx(ref.low, abs=0.006) and high == pytest.approx(ref.high, abs=0.006)
    # the lead's interval is the paired one: the bootstrap of the per-unit differences
    units = {"a": _units(x + 0.05, np.zeros(60)), "b": _units(x, np.zeros(60))}
    r = faithfulness.rank(units, faithfulness.EXAMPLES)
    assert r["lead"] == pytest.approx(0.05) and r["lead_low"] == pytest.approx(0.05)  # every unit leads by 0.05
    row = next(row for row in r["rows"] if row["method"] == "b")
    assert (row["faithfulness"], row["faithfulness_low"], row["faithfulness_high"]) == pytest.approx((point, low, high))


def test_faithfulness_ranking_edge_cases():
    one = faithfulness.rank({"ig": _units([0.1, 0.2, 0.3], [0, 0, 0])})
    assert one["winner"] is None and "nothing to compare" in one["verdict"]
    few = faithfulness.rank({"a": _units([0.9, 0.9], [0, 0]), "b": _units([0, 0], [0, 0])}, faithfulness.EXAMPLES)
    assert few["winner"] is None and "too few" in few["verdict"]
    with pytest.raises(ValueError, match="same"):
        faithfulness.rank({"a": _units([1, 2, 3], [0, 0, 0]), "b": _units([1, 2], [0, 0])})
    assert faithfulness.most_faithful([{"method": "a", "comprehensiveness": 0.3, "sufficiency": 0.1}]) is None
    assert [faithfulness.number(x) for x in (0.1234, 1.2e-4, 0.0, -3e-5, None)] == \
        ["0.123", "1.20e-04", "0.000", "-3.00e-05", "—"]


def test_dataset_summary_pairs_the_examples():
    from llm_lab.explain.jobs import summarise

    rec = lambda i, m, c, s: {"id": str(i), "method": m, "comprehensiveness": c, "sufficiency": s, "predicted": "p",
                              "tokens": [], "scores": [], "special": []}
    records = [rec(i, "ig", 0.5 + 0.01 * i, 0.1) for i in range(8)] + [rec(i, "saliency", 0.1, 0.3) for i in range(7)]
    res = summarise(records, ["ig", "saliency"], model="m", n=8)
    rows = {r["method"]: r for r in res["faithfulness"]}
    assert rows["ig"]["n"] == rows["saliency"]["n"] == 7  # example 7 has no saliency: left out of both
    assert rows["ig"]["comprehensiveness"] == pytest.approx(np.mean([0.5 + 0.01 * i for i in range(7)]))
    assert res["most_faithful"] == res["ranking"]["winner"] == "ig" and res["ranking"]["n"] == 7


def test_faithfulness_for_planted_model(planted):
    ig = A.attribute(planted, PLANTED_TEXT, "ig", target=1)
    f = faithfulness.for_attribution(planted, ig)
    p_x = torch.softmax(torch.tensor([0.0, 3.0]), 0)[1].item()
    p_none = torch.softmax(torch.tensor([0.0, -1.0]), 0)[1].item()
    assert f["comprehensiveness"] == pytest.approx(p_x - p_none, abs=1e-5)
    assert f["sufficiency"] == pytest.approx(0.0, abs=1e-5)


# ---------------------------------------------------------------- generation
def test_generation_ours_matches_captum_llm_gradient_attribution(gpt):
    prompt = "The object is a list of"
    ours = generation.attribute_generation(gpt, prompt, 5, "gen_ig", n_steps=16, include_generated=False)
    ref = generation.attribute_generation(gpt, prompt, 5, "gen_captum_ig", n_steps=16)
    p = len(ours.prompt_tokens)
    a, b = ours.array()[:, :p], ref.array()[:, :p]
    assert ours.output_tokens == ref.output_tokens
    assert np.abs(a - b).max() <= 1e-3 * np.abs(b).max() + 1e-7


def test_generation_attributes_earlier_generated_tokens(gpt):
    g = generation.attribute_generation(gpt, "Return the value", 4, "gen_ig", n_steps=8)
    arr = g.array()
    p = len(g.prompt_tokens)
    assert arr.shape == (4, p + 4)
    assert np.isfinite(arr[3, :p + 3]).all() and np.isnan(arr[3, p + 3:]).all()
    assert np.isnan(arr[0, p:]).all()
    # completeness per output token: sum ≈ logp(x) − logp(baseline) (checked against a direct forward)
    seq = torch.tensor([textmod.encode(gpt, "Return the value").input_ids[0].tolist()])
    assert len(g.top_prompt_tokens(2)) == 4
    abl = generation.attribute_generation(gpt, "Return the value", 4, "gen_ablation")
    assert abl.array().shape == arr.shape and np.isfinite(abl.array()[:, :p]).all()


def test_generation_with_a_given_target(gpt):
    g = generation.attribute_generation(gpt, "def f(x):", 3, "gen_ig", target=" return x", n_steps=4)
    assert "".join(g.output_tokens).startswith(" return")


# ---------------------------------------------------------------- display and the job
def test_colored_html_is_self_contained_and_diverging():
    out = html.document([html.colored_tokens(["<b>", "good", "bad"], [0.0, 1.0, -0.5], "t")])
    assert "<script" not in out and "http" not in out and "&lt;b&gt;" in out
    assert "rgba(34,139,34,1.000)" in out and "rgba(220,20,60,0.500)" in out


def test_html_export_names_what_produced_it(planted):
    import dataclasses

    a = A.attribute(planted, PLANTED_TEXT, "ig", target=0, n_steps=20)
    evil = '<script>alert(1)</script><a href="http://x.example">m</a>'
    a = dataclasses.replace(a, model=evil, text=f"{PLANTED_TEXT} {evil}", labels=[evil, "positive"],
                            target_label=evil)
    out = html.attribution_document(a, {"comprehensiveness": 0.25, "sufficiency": 0.0625})
    assert "<script" not in out and "<a href" not in out and "&lt;script&gt;" in out
    esc = "&lt;script&gt;alert(1)&lt;/script&gt;"
    p_neg, p_pos = a.probs
    assert p_pos > p_neg  # the planted token makes the model predict positive; the target here is the other class
    assert "<th" in out and f"positive (p = {p_pos:.4f})" in out                      # predicted label, probability
    assert f"{esc}&lt;a href=&quot;http://x.example&quot;&gt;m&lt;/a&gt; (p = {p_neg:.4f})" in out  # target attributed
    assert "Head</th>" in out and ">classifier<" in out
    assert "Integrated Gradients (layer IG on embeddings) [ig]" in out and "n_steps = 20" in out
    assert "Baseline</th>" in out and f"pad (p(target) = {a.f_baseline:.4f})" in out
    assert f"{a.delta:+.3e}" in out and "Integrated Gradients is complete" in out
    assert "comprehensiveness 0.2500" in out and "sufficiency 0.0625" in out
    assert out.count(esc) >= 3  # model (title and row), target, text: each escaped
    assert "banana" in out  # the coloured tokens follow


def test_dataset_job_aggregates_per_class(tiny_bert, lab_home):
    from llm_lab import data, jobs, registry as reg

    rows = "text,label\n" + "\n".join(f"{'great' if i % 2 else 'awful'} film number {i},{'pos' if i % 2 else 'neg'}"
                                      for i in range(12))
    data.import_dataset(LOCAL, "tiny-reviews", "r.csv", rows.encode())
    reg.register(LOCAL, reg.ModelEntry("tb", "local", str(tiny_bert), "classifier"))
    job_id = jobs.submit(LOCAL, "llm_lab.explain.jobs:attribute_dataset",
                         {"model": "tb", "dataset": "tiny-reviews", "n": 6, "methods": ["ig", "ablation"],
                          "n_steps": 8}, "test")
    job = jobs.wait(LOCAL, job_id)
    assert job["status"] == "succeeded", job["error"]
    res = job["result"]
    assert {r["method"] for r in res["faithfulness"]} == {"ig", "ablation"}
    assert res["most_faithful"] in ("ig", "ablation", None)
    ranking = res["ranking"]
    assert ranking["unit"] == "examples" and ranking["n"] == 6 and ranking["verdict"]
    assert res["most_faithful"] == ranking["winner"]
    assert all(r["faithfulness_low"] <= r["faithfulness"] <= r["faithfulness_high"] for r in res["faithfulness"])
    for cls, toks in res["class_tokens"]["ig"].items():
        assert toks == sorted(toks, key=lambda r: -r["mean"])


def test_dataset_job_over_the_errors_of_a_benchmark_result(tiny_bert, lab_home):
    from llm_lab import data, jobs, registry as reg
    from llm_lab.bench import runner, suite as suites
    from llm_lab.explain.jobs import benchmark_errors

    rows = "text,label\n" + "\n".join(f"{'great' if i % 2 else 'awful'} film number {i},{'positive' if i % 2 else 'negative'}"
                                      for i in range(12))
    data.import_dataset(LOCAL, "err-reviews", "r.csv", rows.encode(), recipe=data.Recipe(train=1.0, validation=0.0))
    reg.register(LOCAL, reg.ModelEntry("tb-err", "local", str(tiny_bert), "classifier"))
    suite = suites.parse("name: e\ntasks:\n  - name: sent\n    type: classification\n    dataset: err-reviews\n", "t")
    (result,) = runner.run_suite(LOCAL, suite, ["tb-err"])
    assert result.status == "ok", result.error
    wrong = sorted(str(r["id"]) for r in result.per_example if not r["correct"])
    assert wrong, "the random head should get some of 12 examples wrong"
    assert sorted(benchmark_errors(LOCAL, result.key)["ids"]) == wrong
    job = jobs.wait(LOCAL, jobs.submit(LOCAL, "llm_lab.explain.jobs:attribute_dataset",
                                {"bench_result": result.key, "n": 50, "methods": ["saliency"]}, "errors"))
    assert job["status"] == "succeeded", job["error"]
    assert job["result"]["model"] == "tb-err" and job["result"]["n"] == len(wrong)
    assert job["result"]["source"] == "errors of e/sent"
    done = [l for l in (lab_home / "jobs" / job["id"] / "results.jsonl").read_text().splitlines() if l]
    assert sorted(__import__("json").loads(l)["id"] for l in done) == wrong
    with pytest.raises(Exception, match="No finished benchmark result"):
        benchmark_errors(LOCAL, "nope")


def test_cli_attribute_and_attention(tiny_bert, capsys):
    import json

    from llm_lab import cli

    assert cli.main(["explain", "attribute", str(tiny_bert), "a fine film", "--method", "saliency", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["method"] == "saliency" and len(out["scores"]) == len(out["tokens"]) == 5
    assert "comprehensiveness" in out["faithfulness"]
    assert cli.main(["explain", "attention", str(tiny_bert), "a fine film"]) == 0
    assert capsys.readouterr().out.count("bits") == 2 * 2
    assert cli.main(["explain", "attribute", str(tiny_bert), "  "]) == 1
