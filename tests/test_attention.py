"""Attention weights, rollout, head summaries, capping for the browser, and the Attention page."""
import json

import numpy as np
import pytest
import torch

from tests.conftest import app_test, no_exceptions
from llm_lab import registry
from llm_lab.access import LOCAL
from llm_lab.errors import ModelError
from llm_lab.explain import attention as att
from llm_lab.explain import attention_plots as figs


@pytest.mark.parametrize("fixture,head", [("tiny_bert", "classifier"), ("tiny_gpt2", "causal-lm")])
def test_attention_matches_the_raw_model(request, fixture, head):
    from transformers import AutoModel

    folder = request.getfixturevalue(fixture)
    loaded = registry.load(LOCAL, str(folder), head=head, attention=True)
    res = att.compute(loaded, "the cat sat on the mat because it was warm")
    assert np.allclose(res.attentions.sum(-1), 1.0, atol=1e-5)
    raw = AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    ids = loaded.tokenizer("the cat sat on the mat because it was warm", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        ref = torch.stack([a[0] for a in raw(input_ids=ids, output_attentions=True).attentions]).numpy()
    assert res.attentions.shape == ref.shape
    assert np.abs(res.attentions - ref).max() < 1e-5
    if head == "causal-lm":
        assert res.causal and np.allclose(np.triu(res.attentions[0, 0], 1), 0)


def test_model_without_attention_weights_says_so(tiny_bert):
    loaded = registry.load(LOCAL, str(tiny_bert), head="classifier")  # SDPA: no weights
    with pytest.raises(ModelError, match="eager attention"):
        att.compute(loaded, "hello there")


def test_empty_and_too_long_text(tiny_bert):
    loaded = registry.load(LOCAL, str(tiny_bert), head="encoder", attention=True)
    with pytest.raises(Exception, match="empty"):
        att.compute(loaded, "  ")
    res = att.compute(loaded, "word " * 300)
    assert res.attentions.shape[-1] == 128 and "only the first 128" in res.notes[0]


def test_rollout_against_a_direct_computation():
    rng = np.random.default_rng(0)
    a = rng.random((3, 2, 5, 5)).astype(np.float32)
    a /= a.sum(-1, keepdims=True)
    expected = np.eye(5)
    for layer in a:
        m = 0.5 * layer.mean(0) + 0.5 * np.eye(5)
        expected = (m / m.sum(-1, keepdims=True)) @ expected
    got = att.rollout(a)
    assert np.allclose(got, expected, atol=1e-6) and np.allclose(got.sum(-1), 1, atol=1e-5)
    # identity attention: rollout is the identity
    assert np.allclose(att.rollout(np.broadcast_to(np.eye(4), (2, 3, 4, 4))), np.eye(4))


def test_head_summary_spots_head_types():
    t = 6
    first = np.zeros((t, t)); first[:, 0] = 1
    prev = np.eye(t, k=-1); prev[0, 0] = 1
    self_ = np.eye(t)
    uniform = np.full((t, t), 1 / t)
    a = np.stack([np.stack([first, prev, self_, uniform])])  # 1 layer, 4 heads
    s = att.head_summary(a)
    assert s["first"][0, 0] == pytest.approx(1) and s["previous"][0, 1] == pytest.approx(1)  # rows that have a previous token
    assert s["self"][0, 2] == pytest.approx(1) and s["entropy"][0, 3] == pytest.approx(np.log2(t), rel=1e-5)
    types = [r["type"] for r in att.head_types(s)]
    assert types == ["attends to first token ([CLS]/BOS)", "previous token", "itself", "broad / mixed"]


def test_cap_keeps_rows_stochastic_and_bounds_the_browser_payload():
    rng = np.random.default_rng(1)
    a = rng.random((512, 512)); a /= a.sum(-1, keepdims=True)
    tokens = [f"t{i}" for i in range(512)]
    m, labels, note = att.cap(a, tokens)
    assert m.shape == (128, 128) and len(labels) == 128 and "4 consecutive" in note
    assert np.allclose(m.sum(-1), 1)
    assert m[0, 0] == pytest.approx(a[:4, :4].sum(-1).mean())
    fig, note = figs.head_heatmap(a, tokens)
    assert np.asarray(fig.data[0].z).shape == (128, 128) and note
    fig, note = figs.lines_view(a, tokens)
    assert len(fig.data) <= 7  # five weight bands + two label columns, whatever the length
    big = np.broadcast_to(a, (6, 12, 512, 512))
    fig, _ = figs.model_view(big, tokens)
    assert np.asarray(fig.data[0].z).size <= 6 * 17 * 12 * 17
    assert len(fig.to_json()) < 2_000_000


def test_attention_page_default_and_long_input():
    at = app_test("views/attention.py").run()
    no_exceptions(at)
    charts = at.get("plotly_chart")
    assert len(charts) >= 4
    at.text_area(key="att_text").set_value("token " * 600).run()
    no_exceptions(at)
    assert any("only the first 512" in w.value for w in at.warning)
    assert any("pools 4 consecutive" in i.value for i in at.info)
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        for trace in spec["data"]:
            if trace.get("type") == "heatmap" and trace.get("x"):
                assert len(trace["x"]) <= 128
    at.selectbox(key="att_layer").set_value(5).run()
    at.radio(key="att_draw").set_value("Both").run()
    no_exceptions(at)
