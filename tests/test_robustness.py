"""CheckList-style robustness: perturbations deterministic under a seed, invariance flip rates and directional
failure rates checked against a direct forward pass and statsmodels' Wilson interval, suite validation."""
import re

import numpy as np
import pytest
import torch
from statsmodels.stats.proportion import proportion_confint

from llm_lab.access import LOCAL
from llm_lab.bench import perturb, runner, suite as suites
from tests.test_bench import REVIEWS, _direct_probs, binary_reviews  # noqa: F401 (a fixture)

TEXT = "Anna bought 3 big mugs from the shop, and they arrived quickly"


def _suite(body: str):
    return suites.parse("name: t\ntasks:\n" + body, "test")


# ---------------------------------------------------------------- perturbations
def test_each_perturbation_is_deterministic_under_a_seed_and_varies_with_it():
    for kind in perturb.KINDS:
        first = [perturb.apply(TEXT, kind, perturb.rng_for(0, i, kind)) for i in range(20)]
        again = [perturb.apply(TEXT, kind, perturb.rng_for(0, i, kind)) for i in range(20)]
        other = [perturb.apply(TEXT, kind, perturb.rng_for(1, i, kind)) for i in range(20)]
        assert first == again, kind
        assert all(t is not None and t != TEXT for t in first), kind
        if kind != "punctuation":  # one thing to do when there is no final punctuation: add one of two marks
            assert first != other, kind
    # the generator of one (seed, id, kind) does not depend on which kinds run beside it
    alone = perturb.perturbations(TEXT, 7, 0, ["number"], [])
    together = perturb.perturbations(TEXT, 7, 0, list(perturb.KINDS), [])
    assert dict(together)["number"] == dict(alone)["number"]


def test_what_each_perturbation_does():
    rng = lambda kind: perturb.rng_for(3, 1, kind)  # noqa: E731
    typo = perturb.apply(TEXT, "typo", rng("typo"))
    assert len(typo) in (len(TEXT), len(TEXT) - 1)
    diff = [i for i, (a, b) in enumerate(zip(typo, TEXT)) if a != b]
    assert diff  # a swap changes two neighbours, a drop shifts the rest
    if len(typo) == len(TEXT):
        assert len(diff) == 2 and diff[1] == diff[0] + 1 and typo[diff[0]] == TEXT[diff[1]]
    assert perturb.apply(TEXT, "casing", rng("casing")).lower() == TEXT.lower()
    assert perturb.apply("Fine.", "punctuation", rng("p")) == "Fine"
    assert perturb.apply("Fine", "punctuation", rng("p")) in ("Fine.", "Fine!")
    syn = perturb.apply(TEXT, "synonym", rng("synonym"))
    changed = [w for w, v in zip(TEXT.split(), syn.split()) if w != v]
    assert len(changed) == 1 and perturb.SYNONYMS[changed[0].strip(",").lower()] in syn
    name = perturb.apply(TEXT, "name", rng("name"))
    assert not name.startswith("Anna ") and name.split()[0] in perturb.NAMES
    number = perturb.apply(TEXT, "number", rng("number"))
    assert number.split()[2].isdigit() and number.split()[2] != "3"
    added = perturb.apply(TEXT, "irrelevant", rng("irrelevant"))
    assert TEXT in added and any(s in added for s in perturb.IRRELEVANT)
    for kind in ("name", "number", "synonym"):  # nothing to swap: does not apply
        assert perturb.apply("it was okay i guess", kind, rng(kind)) is None
    assert perturb.apply("", "irrelevant", rng("x")) is None and perturb.apply("!!", "typo", rng("x")) is None


def test_user_templates():
    find = perturb.Template.from_spec({"find": "good", "replace": "great"})
    assert find.apply("good, goodbye Good") == "great, goodbye Good"  # whole words, case as written
    assert find.apply("fine") is None and find.name == "replace 'good'"
    literal = perturb.Template.from_spec({"find": "a", "replace": r"\1"})
    assert literal.apply("a b") == r"\1 b"  # a find's replacement is plain text
    regex = perturb.Template.from_spec({"regex": r"(\d+) stars", "replace": r"\1 points", "name": "stars"})
    assert regex.apply("5 stars, 4 stars") == "5 points, 4 points" and regex.name == "stars"
    assert perturb.Template.from_spec({"append": " Really."}).apply("ok") == "ok Really."
    assert perturb.Template.from_spec({"prepend": "Well, "}).apply("ok") == "Well, ok"
    for bad, message in [({"find": "x"}, "needs a `replace`"), ({"regex": "(", "replace": ""}, "not a valid regular"),
                         ({"regex": "(a)", "replace": r"\3"}, "not a valid regular"),
                         ({"find": "a", "regex": "b", "replace": ""}, "exactly one"),
                         ({"append": "x", "replace": "y"}, "goes with `find`"), ({"find": 3, "replace": "x"}, "text"),
                         ({"find": "a", "replace": "b", "with": 1}, "unknown key")]:
        with pytest.raises(perturb.PerturbError, match=message):
            perturb.check_spec(bad)


# ---------------------------------------------------------------- suite fields
@pytest.mark.parametrize("body, expected", [
    ("  - {name: a, type: invariance, dataset: d, perturbations: [tpyo]}\n",
     "field `tasks.0.perturbations.0`: unknown perturbation 'tpyo'"),
    ("  - {name: a, type: invariance, dataset: d, perturbations: [{find: x}]}\n",
     "field `tasks.0.perturbations.0`: `find` needs a `replace`"),
    ("  - {name: a, type: invariance, dataset: d, perturbations: []}\n", "field `tasks.0.perturbations`"),
    ("  - {name: a, type: classification, dataset: d, perturbations: [typo]}\n",
     "field `tasks.0.perturbations`: `perturbations` belongs to an invariance task, not a classification task"),
    ("  - {name: a, type: directional, dataset: d}\n", "field `tasks.0.directional`: a directional task needs"),
    ("  - {name: a, type: directional, dataset: d, directional: [{append: x}]}\n",
     "field `tasks.0.directional.0`: each directional template needs `expect`"),
    ("  - {name: a, type: invariance, dataset: d, metrics: [accuracy]}\n",
     "metric 'accuracy' does not apply to an invariance task; choose from none (an invariance task reports flip_rate"),
    ("  - {name: a, type: classification, dataset: d, contamination_threshold: 1.5}\n",
     "field `tasks.0.contamination_threshold`"),
    ("  - {name: a, type: classification, dataset: d, contamination_n: 0}\n", "field `tasks.0.contamination_n`"),
    ("  - {name: a, type: classification, dataset: d, contamination_split: train}\n",
     "`contamination_split` goes with `contamination: DATASET`"),
])
def test_robustness_fields_are_validated_naming_the_field(body, expected):
    with pytest.raises(suites.SuiteError) as exc:
        _suite(body)
    assert expected in str(exc.value)


def test_new_fields_at_their_defaults_keep_old_definition_hashes():
    builtin = suites.parse((suites.BUILTIN_DIR / "demo-classifier.yaml").read_text())
    # the hashes the suite had before these fields existed (results stored then keep their cache keys)
    assert [t.definition_hash() for t in builtin.tasks] == ["f9179f7cfd8233a1", "ab511711538d7df0"]
    with_slices = suites.parse((suites.BUILTIN_DIR / "demo-classifier.yaml").read_text().replace(
        "    max_length: 128\n", "    max_length: 128\n    slices: [{column: label}]\n", 1))
    assert with_slices.tasks[0].definition_hash() != builtin.tasks[0].definition_hash()


def test_builtin_robustness_suite_parses():
    s = suites.parse((suites.BUILTIN_DIR / "robustness.yaml").read_text())
    assert {t.type for t in s.tasks} == {"invariance", "directional"}


# ---------------------------------------------------------------- running them
def test_invariance_flip_rate_matches_a_direct_forward_pass(tiny_bert, binary_reviews):
    torch.manual_seed(0)
    s = _suite(f"  - name: inv\n    type: invariance\n    dataset: {binary_reviews}\n    seed: 5\n"
               "    perturbations: [typo, casing, punctuation, irrelevant, {find: it, replace: this}]\n"
               "    slices: [{column: label}]\n")
    (res,) = runner.run_suite(LOCAL, s, [str(tiny_bert)], use_cache=False)
    assert res.status == "ok", res.error
    rows = res.per_example
    originals = {r["id"]: r["text"] for r in rows}
    assert {r["kind"] for r in rows} == {"typo", "casing", "punctuation", "irrelevant", "replace 'it'"}
    direct_before = _direct_probs(tiny_bert, [r["text"] for r in rows])
    direct_after = _direct_probs(tiny_bert, [r["perturbed"] for r in rows])
    labels = ["negative", "positive"]
    flipped = direct_before.argmax(1) != direct_after.argmax(1)
    assert [r["flipped"] for r in rows] == flipped.tolist()
    assert [r["perturbed_prediction"] for r in rows] == [labels[i] for i in direct_after.argmax(1)]
    assert res.metrics["flip_rate"] == pytest.approx(flipped.mean())
    h = res.headline
    assert h.name == "flip_rate" and not h.higher_is_better and h.low <= h.value <= h.high and h.n == len(rows)
    for kind, got in res.details["by_kind"].items():
        mine = np.array([r["flipped"] for r in rows if r["kind"] == kind])
        low, high = proportion_confint(mine.sum(), len(mine), method="wilson")
        assert (got["hits"], got["n"]) == (mine.sum(), len(mine))
        assert (got["low"], got["high"]) == pytest.approx((low, high), abs=1e-9)
    assert len(originals) == len(REVIEWS) and all(r["slice"]["label"] == r["label"] for r in rows)
    (again,) = runner.run_suite(LOCAL, s, [str(tiny_bert)], use_cache=False)
    assert [r["perturbed"] for r in again.per_example] == [r["perturbed"] for r in rows]  # deterministic


def test_directional_failure_rate_matches_a_direct_forward_pass(tiny_bert, binary_reviews):
    s = _suite(f"  - name: dir\n    type: directional\n    dataset: {binary_reviews}\n    directional:\n"
               "      - {append: ' Terrible, awful, broken.', expect: negative}\n"
               "      - {find: it, replace: 'this wonderful thing', expect: positive, name: praise}\n")
    (res,) = runner.run_suite(LOCAL, s, [str(tiny_bert)], use_cache=False)
    assert res.status == "ok", res.error
    rows = res.per_example
    before = _direct_probs(tiny_bert, [r["text"] for r in rows])
    after = _direct_probs(tiny_bert, [r["perturbed"] for r in rows])
    target = np.array([["negative", "positive"].index(r["expect"]) for r in rows])
    idx = np.arange(len(rows))
    failed = after[idx, target] <= before[idx, target]
    assert [r["failed"] for r in rows] == failed.tolist()
    assert res.metrics["failure_rate"] == pytest.approx(failed.mean())
    assert sum(r["kind"] == "praise" for r in rows) == sum(bool(re.search(r"(?<!\w)it(?!\w)", t)) for t, _ in REVIEWS)
    assert set(res.details["by_template"]) == {"append ' Terrible, awful, broken.'", "praise"}
    assert not res.headline.higher_is_better and res.headline.low <= res.headline.value <= res.headline.high


def test_directional_label_the_model_does_not_have(tiny_bert, binary_reviews):
    s = _suite(f"  - name: dir\n    type: directional\n    dataset: {binary_reviews}\n"
               "    directional: [{append: ' x', expect: furious}]\n")
    (res,) = runner.run_suite(LOCAL, s, [str(tiny_bert)], use_cache=False)
    assert res.status == "error" and "furious" in res.error


def test_flip_rate_intervals_stay_honest():
    from llm_lab.bench.tasks.invariance import clustered_rate

    one_each = clustered_rate(np.arange(10), np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 0]))
    assert (one_each.low, one_each.high) == pytest.approx(proportion_confint(1, 10, method="wilson"), abs=1e-9)
    # 3 cases for each of 14 examples, no flip: the examples are the trials, the interval does not collapse
    none = clustered_rate(np.repeat(np.arange(14), 3), np.zeros(42))
    assert none.value == 0 and none.n == 42
    assert (none.low, none.high) == pytest.approx(proportion_confint(0, 14, method="wilson"), abs=1e-9)
    mixed = clustered_rate(np.repeat(np.arange(30), 2), np.random.default_rng(0).random(60) < 0.3)
    assert mixed.method.startswith("BCa") and mixed.low < mixed.value < mixed.high
