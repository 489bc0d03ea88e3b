"""Each project metric against scikit-learn / sacrebleu / rouge-score on the same inputs."""
import math
import re

import numpy as np
import pytest
import sacrebleu
from rouge_score import rouge_scorer
from sklearn import metrics as skm

from llm_lab import metrics
from llm_lab.errors import LabError

rng = np.random.default_rng(7)
N, K = 300, 4
REFS = rng.integers(0, K, N)
PREDS = np.where(rng.random(N) < 0.6, REFS, rng.integers(0, K, N))
PROBS = rng.dirichlet(np.ones(K), N)
PROBS[np.arange(N), REFS] += 0.3
PROBS /= PROBS.sum(axis=1, keepdims=True)

HYPS = ["the cat sat on the mat", "a quick brown fox jumps", "hello world", "it is raining again today",
        "completely different words here", ""]
GOLD = ["the cat is on the mat", "the quick brown fox jumped", "hello there world", "it rains again today",
        "nothing matches at all", "empty hypothesis"]


def test_accuracy_matches_sklearn():
    assert metrics.compute("accuracy", PREDS, REFS)["accuracy"] == pytest.approx(skm.accuracy_score(REFS, PREDS))


@pytest.mark.parametrize("average", ["macro", "micro", "weighted"])
def test_precision_recall_f1_match_sklearn(average):
    p, r, f, _ = skm.precision_recall_fscore_support(REFS, PREDS, average=average, zero_division=0)
    assert metrics.compute("precision", PREDS, REFS, average=average)["precision"] == pytest.approx(p)
    assert metrics.compute("recall", PREDS, REFS, average=average)["recall"] == pytest.approx(r)
    assert metrics.compute("f1", PREDS, REFS, average=average)["f1"] == pytest.approx(f)


def test_per_class_f1_and_binary_match_sklearn():
    out = metrics.compute("f1", PREDS, REFS)
    np.testing.assert_allclose(out["f1_per_class"], skm.f1_score(REFS, PREDS, average=None))
    assert out["labels"] == list(range(K))
    binary_p, binary_r = (PREDS > 1).astype(int), (REFS > 1).astype(int)
    assert metrics.compute("f1", binary_p, binary_r, average="binary")["f1"] == pytest.approx(skm.f1_score(binary_r, binary_p))


def test_string_labels_are_mapped():
    names = np.array(["neg", "neu", "pos", "mixed"])
    out = metrics.compute("f1", names[PREDS].tolist(), names[REFS].tolist())
    assert out["f1"] == pytest.approx(skm.f1_score(REFS, PREDS, average="macro"))
    assert out["labels"] == sorted(names.tolist())
    cm = metrics.compute("confusion_matrix", ["a", "b", "b"], ["a", "a", "b"], labels=["b", "a"])
    assert cm["labels"] == ["b", "a"] and cm["confusion_matrix"] == [[1, 0], [1, 1]]


def test_confusion_matrix_matches_sklearn():
    out = metrics.compute("confusion_matrix", PREDS, REFS)
    np.testing.assert_array_equal(out["confusion_matrix"], skm.confusion_matrix(REFS, PREDS))


def test_roc_auc_matches_sklearn():
    multi = metrics.compute("roc_auc", PROBS.tolist(), REFS)["roc_auc"]
    assert multi == pytest.approx(skm.roc_auc_score(REFS, PROBS, multi_class="ovr", average="macro"))
    y = (REFS == 0).astype(int)
    two_col = np.stack([1 - PROBS[:, 0], PROBS[:, 0]], axis=1)
    assert metrics.compute("roc_auc", two_col.tolist(), y)["roc_auc"] == pytest.approx(skm.roc_auc_score(y, PROBS[:, 0]))
    assert metrics.compute("roc_auc", PROBS[:, 0].tolist(), y)["roc_auc"] == pytest.approx(skm.roc_auc_score(y, PROBS[:, 0]))
    assert metrics.compute("roc_auc", [[0.2, 0.8]] * 3, [1, 1, 1])["roc_auc"] is None


def test_perplexity_from_log_likelihoods():
    texts = [rng.normal(-2.0, 0.5, size=n).tolist() for n in (5, 17, 1, 30)]
    out = metrics.compute("perplexity", texts, num_bytes=[20, 60, 3, 100])
    flat = np.concatenate(texts)
    assert out["perplexity"] == pytest.approx(math.exp(-flat.mean()))
    assert out["tokens"] == len(flat)
    assert out["perplexities"][1] == pytest.approx(math.exp(-np.mean(texts[1])))
    assert out["bits_per_byte"] == pytest.approx(-flat.sum() / math.log(2) / 183)


def test_exact_match():
    out = metrics.compute("exact_match", ["Paris", " paris ", "Rome!"], ["Paris", "Paris", "rome"])
    assert out["exact_match"] == pytest.approx(1 / 3) and out["matches"] == [1, 0, 0]
    loose = metrics.compute("exact_match", ["Paris", " paris ", "Rome!"], ["Paris", "Paris", "rome"],
                            ignore_case=True, ignore_punctuation=True)
    assert loose["exact_match"] == 1.0


def test_bleu_and_chrf_match_sacrebleu():
    bleu = metrics.compute("bleu", HYPS, GOLD)
    assert bleu["bleu"] == pytest.approx(sacrebleu.corpus_bleu(HYPS, [GOLD]).score)
    two_refs = [[g, g.upper()] for g in GOLD]
    assert metrics.compute("bleu", HYPS, two_refs)["bleu"] == pytest.approx(
        sacrebleu.corpus_bleu(HYPS, [GOLD, [g.upper() for g in GOLD]]).score)
    assert metrics.compute("chrf", HYPS, GOLD)["chrf"] == pytest.approx(sacrebleu.corpus_chrf(HYPS, [GOLD]).score)
    plus = metrics.compute("chrf++", HYPS, GOLD, word_order=2)["chrf"]
    assert plus == pytest.approx(sacrebleu.corpus_chrf(HYPS, [GOLD], word_order=2).score)


def test_rouge_matches_rouge_score():
    out = metrics.compute("rouge", HYPS, GOLD)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"])
    for kind in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
        expected = np.mean([scorer.score(g, h)[kind].fmeasure for h, g in zip(HYPS, GOLD)])
        assert out[kind] == pytest.approx(expected)


def test_modules_are_local_evaluate_modules_without_downloads():
    import evaluate

    for name in metrics.METRICS:
        source = (metrics.MODULES_DIR / name / f"{name}.py").read_text()
        assert not re.search(r"#\s*From:", source), name
        module = metrics.load(name)
        assert isinstance(module, evaluate.EvaluationModule)
        assert module.name == name


def test_bad_input_messages():
    with pytest.raises(LabError, match="Unknown metric"):
        metrics.compute("meteor", [1], [1])
    with pytest.raises(LabError, match="must match"):
        metrics.compute("accuracy", [1, 0], [1])


# ---- bootstrap intervals --------------------------------------------------------------------------

def _naive_bootstrap(fn, n, n_resamples, seed):
    """The same resamples as the vectorised version, scored one by one with scikit-learn."""
    rng_ = np.random.default_rng(seed)
    values = []
    for _ in range(n_resamples):
        idx = rng_.integers(0, n, size=(1, n))[0]
        values.append(fn(idx))
    return np.array(values)


def test_bootstrap_f1_over_given_labels_counts_other_predictions_like_sklearn():
    """labels=[0, 1] with predictions of a class 2 the references lack (a 3-label model on 2-label data): the
    average takes classes 0 and 1, and the predictions of 2 still count against their recall (it raised KeyError)."""
    rng_ = np.random.default_rng(5)
    refs = rng_.integers(0, 2, 80)
    preds = np.where(rng_.random(80) < 0.6, refs, rng_.integers(0, 3, 80))
    assert 2 in preds
    ci = metrics.bootstrap_ci("f1", preds, refs, n_resamples=200, seed=3, labels=[0, 1])
    assert ci["value"] == pytest.approx(skm.f1_score(refs, preds, labels=[0, 1], average="macro"))
    idx = np.random.default_rng(3).integers(0, 80, size=(200, 80))
    loop = np.array([skm.f1_score(refs[i], preds[i], labels=[0, 1], average="macro", zero_division=0) for i in idx])
    assert (ci["low"], ci["high"]) == pytest.approx(tuple(np.quantile(loop, [0.025, 0.975])))


def test_bootstrap_f1_equals_a_loop_over_sklearn():
    ci = metrics.bootstrap_ci("f1", PREDS, REFS, n_resamples=200, seed=3)
    assert ci["value"] == pytest.approx(skm.f1_score(REFS, PREDS, average="macro"))
    # the vectorised draw uses rng.integers(size=(chunk, n)); with one chunk the rows are the same draws
    rng_ = np.random.default_rng(3)
    idx = rng_.integers(0, N, size=(200, N))
    loop = np.array([skm.f1_score(REFS[i], PREDS[i], average="macro", labels=range(K), zero_division=0) for i in idx])
    low, high = np.quantile(loop, [0.025, 0.975])
    assert ci["low"] == pytest.approx(low) and ci["high"] == pytest.approx(high)
    assert ci["low"] < ci["value"] < ci["high"]


def test_bootstrap_exact_match_uses_the_module_normalisation():
    preds = ["Paris", " paris ", "Rome!", "Oslo", "bern"] * 6
    refs = ["Paris", "Paris", "rome", "Oslo", "Berne"] * 6
    opts = {"ignore_case": True, "ignore_punctuation": True}
    ci = metrics.bootstrap_ci("exact_match", preds, refs, n_resamples=300, seed=1, **opts)
    hits = np.array([p.strip().lower().strip("!") == r.lower() for p, r in zip(preds, refs)], dtype=float)
    assert ci["value"] == pytest.approx(hits.mean()) == pytest.approx(metrics.compute("exact_match", preds, refs, **opts)["exact_match"])
    idx = np.random.default_rng(1).integers(0, len(preds), size=(300, len(preds)))
    low, high = np.quantile(hits[idx].mean(axis=1), [0.025, 0.975])
    assert ci["low"] == pytest.approx(low) and ci["high"] == pytest.approx(high) and low < high


def test_bootstrap_accuracy_perplexity_bleu():
    acc = metrics.bootstrap_ci("accuracy", PREDS, REFS, n_resamples=2000)
    p = skm.accuracy_score(REFS, PREDS)
    se = math.sqrt(p * (1 - p) / N)
    assert acc["high"] - acc["low"] == pytest.approx(2 * 1.96 * se, rel=0.15)
    texts = [rng.normal(-2.0, 0.5, size=n).tolist() for n in (5, 17, 3, 30, 8)]
    ppl = metrics.bootstrap_ci("perplexity", texts)
    assert ppl["value"] == pytest.approx(metrics.compute("perplexity", texts)["perplexity"])
    bleu = metrics.bootstrap_ci("bleu", HYPS * 5, GOLD * 5, n_resamples=300)
    assert bleu["value"] == pytest.approx(sacrebleu.corpus_bleu(HYPS * 5, [GOLD * 5]).score)
    rng_ = np.random.default_rng(0)
    idx = rng_.integers(0, 30, size=(300, 30))
    h, g = np.array(HYPS * 5), np.array(GOLD * 5)
    loop = [sacrebleu.corpus_bleu(h[i].tolist(), [g[i].tolist()]).score for i in idx[:40]]
    vec = metrics.bootstrap.resampled_sums(metrics.bootstrap._bleu_stats(HYPS * 5, GOLD * 5), 300, 0)
    np.testing.assert_allclose(metrics.bootstrap._bleu_value(vec)[:40], loop, rtol=1e-9, atol=1e-9)
    assert metrics.bootstrap_ci("chrf", HYPS, GOLD) is None


def test_modules_load_without_evaluate_and_leave_no_stand_ins_behind():
    """The GPU image has no evaluate/datasets: the same module code runs on stand-ins that do not linger."""
    import sys

    before = {name: sys.modules.get(name) for name in ("evaluate", "datasets")}
    f1 = metrics._load_without_evaluate("f1")
    assert {name: sys.modules.get(name) for name in ("evaluate", "datasets")} == before
    out = f1.compute(predictions=PREDS.tolist(), references=REFS.tolist(), average="macro")
    assert out["f1"] == pytest.approx(skm.f1_score(REFS, PREDS, average="macro"))
