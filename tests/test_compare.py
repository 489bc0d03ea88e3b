"""Compare: word diff, comparison runs (generation / classification), metrics, saving, exports, the job."""
import html
import io
import json
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
import torch

from llm_lab.access import LOCAL
from llm_lab import generation as G
from llm_lab import jobs, inference, registry
from llm_lab.compare import diff, live, runs, saved, tables
from llm_lab.compare import jobs as compare_jobs
from llm_lab.errors import LabError
from llm_lab.explain.links import attribution_link

PROMPTS = ["def foo(x):", "The built-in function", "Return the value of the attribute named"]


def _perturbed(src, dst, head_cls):
    """A second model: the same architecture and tokenizer, different weights."""
    model = head_cls.from_pretrained(src)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    model.save_pretrained(dst)
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(src).save_pretrained(dst)
    return dst


@pytest.fixture(scope="module")
def gpt_b(tiny_gpt2, tmp_path_factory):
    from transformers import GPT2LMHeadModel

    return _perturbed(tiny_gpt2, tmp_path_factory.mktemp("m") / "gpt-b", GPT2LMHeadModel)


@pytest.fixture(scope="module")
def bert_b(tiny_bert, tmp_path_factory):
    from transformers import BertForSequenceClassification

    return _perturbed(tiny_bert, tmp_path_factory.mktemp("m") / "bert-b", BertForSequenceClassification)


# ---------------------------------------------------------------- diff
def test_word_diff_ops_and_html():
    ops = diff.word_ops("the cat sat on the mat", "the dog sat on the mat")
    assert [o for o in ops if o[0] != "equal"] == [("replace", "cat ", "dog ")]
    assert "".join(a for _, a, _ in ops) == "the cat sat on the mat"
    assert "".join(b for _, _, b in ops) == "the dog sat on the mat"
    ops = diff.word_ops("a b c", "a c d")
    assert ops == [("equal", "a ", "a "), ("delete", "b ", ""), ("equal", "c", "c "), ("insert", "", "d")]
    assert "".join(b for _, _, b in ops) == "a c d"
    left, right = diff.side_by_side_html("keep <b>old</b> x", "keep <i>new</i> x")
    assert "<del>&lt;b&gt;old&lt;/b&gt;</del>" in left and "<ins>&lt;i&gt;new&lt;/i&gt;</ins>" in right
    assert "<b>" not in left and "<i>" not in right  # escaped, never raw HTML from model outputs
    inline = diff.inline_html("one two three", "one 2 three")
    assert inline.count("<del>") == 1 and inline.count("<ins>") == 1 and inline.endswith(">one <del>two</del> <ins>2</ins> three</div>")
    assert diff.similarity("a b c d", "a b c d") == 1.0
    assert diff.similarity("a b c d", "a  b\nc d") == 1.0  # whitespace does not count
    assert diff.similarity("a b c d", "a b x y") == pytest.approx(0.5)  # 2*2 matches / 8 words
    assert diff.similarity("", "") == 1.0


# ---------------------------------------------------------------- the Comparison and its JSON
OLD_SAVED = {  # a classification comparison as saved (plain dict) before the Comparison class
    "kind": "classification", "models": ["a", "b"], "settings": {}, "source": {"type": "typed"},
    "created_at": 1700000000.0, "id": "old1", "title": "classification: a vs b on 2 typed inputs",
    "inputs": [{"id": "1", "text": "good", "label": "positive"}, {"id": "2", "text": "bad", "label": "negative"}],
    "outputs": {"a": {"error": None, "rows": [{"label": "positive", "prob": 0.9, "probs": {"negative": 0.1, "positive": 0.9}},
                                              {"label": "positive", "prob": 0.6, "probs": {"negative": 0.4, "positive": 0.6}}],
                      "wall_s": 0.5, "info": {"device": "cpu", "head_is_new": False}},
                "b": {"error": None, "rows": [{"label": "positive", "prob": 0.8, "probs": {"negative": 0.2, "positive": 0.8}},
                                              {"label": "negative", "prob": 0.7, "probs": {"negative": 0.7, "positive": 0.3}}],
                      "wall_s": 0.4, "info": {}}},
    "agreement": {"models": ["a", "b"], "rows": [True, False], "rate": 0.5, "pairwise": {"a | b": 0.5}},
    "summary": {"a": {"outputs": 2, "mean_prob": 0.75, "wall_s": 0.5, "head_is_new": False, "accuracy": 0.5},
                "b": {"outputs": 2, "mean_prob": 0.75, "wall_s": 0.4, "head_is_new": False, "accuracy": 1.0}},
}


def test_comparison_json_round_trip_and_old_saved_files_load():
    from llm_lab import paths, store

    comp = runs.Comparison.from_dict(OLD_SAVED)
    assert comp.to_dict() == OLD_SAVED  # the saved format is unchanged
    assert comp.mode == "classification"  # the old "kind" key is read as the mode
    assert comp.agreement.rate == 0.5 and comp.outputs["b"].rows[1]["label"] == "negative" and comp.ok_models() == ["a", "b"]
    assert runs.Comparison.from_dict(json.loads(json.dumps(comp.to_dict()))) == comp
    gen = runs.assemble("generation", ["x", "y"], runs.make_inputs(["hi"]),
                        {"x": runs.ModelOutput("failed", [], 0.0, {}), "y": runs.ModelOutput("also failed", [], 0.0, {})})
    back = runs.Comparison.from_dict(json.loads(json.dumps(gen.to_dict())))
    assert back == gen and back.agreement is None and "agreement" not in gen.to_dict() and back.ok_models() == []
    assert gen.to_dict()["mode"] == "generation" and "kind" not in gen.to_dict()  # new files say "mode"
    # a file saved the old way (the dict itself) reopens by id, and saving it again keeps its format
    path = paths.subdir("comparisons") / "old1.json"
    path.write_text(json.dumps(OLD_SAVED))
    store.execute("INSERT INTO comparisons (id, created_at, kind, title, models, n_inputs, source, job_id, path) "
                  "VALUES (?,?,?,?,?,?,?,?,?)",
                  ("old1", 1700000000.0, "classification", OLD_SAVED["title"], store.to_json(["a", "b"]), 2,
                   store.to_json({"type": "typed"}), None, str(path)))
    old = saved.get(LOCAL, "old1")
    assert old == comp and old.title == OLD_SAVED["title"]
    assert list(tables.table(old)["agree"]) == [True, False]
    assert saved.save(LOCAL, old) == "old1" and json.loads(path.read_text()) == OLD_SAVED
    assert [(r["id"], r["mode"]) for r in saved.list_saved(LOCAL)] == [("old1", "classification")]


# ---------------------------------------------------------------- generation comparisons
def test_generation_comparison_and_metrics(tiny_gpt2, gpt_b):
    import sacrebleu
    from rouge_score import rouge_scorer

    settings = G.GenerationSettings(max_new_tokens=8)
    a_single = [inference.generate(registry.load(LOCAL, str(tiny_gpt2), head="causal-lm"), [p], settings)[0] for p in PROMPTS]
    # the first reference is model A's own output (exact match 1), the others are unrelated
    refs = [a_single[0].text, "the answer is forty two", "Paris"]
    inputs = runs.make_inputs(PROMPTS, references=refs)
    comp = runs.run(LOCAL, "generation", [str(tiny_gpt2), str(gpt_b), "no-such-model-xyz"], inputs, settings)
    a, b, bad = (comp.outputs[m] for m in comp.models)
    assert bad.error and not bad.rows and "no-such-model-xyz" in bad.error
    assert a.error is None and b.error is None
    assert [r["text"] for r in a.rows] == [r.text for r in a_single]  # batched run = single prompts
    assert [r["text"] for r in a.rows] != [r["text"] for r in b.rows]
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"])
    for out in (a, b):
        for row, ref in zip(out.rows, refs):
            assert row["exact_match"] == float(row["text"].strip() == ref.strip())
            assert row["bleu"] == pytest.approx(sacrebleu.corpus_bleu([row["text"]], [[ref]]).score, abs=1e-6)
            assert row["rougeL"] == pytest.approx(scorer.score(ref, row["text"])["rougeL"].fmeasure, abs=1e-6)
        assert out.corpus["exact_match"] == pytest.approx(np.mean([r["exact_match"] for r in out.rows]))
    assert a.rows[0]["exact_match"] == 1.0
    s = comp.summary[str(tiny_gpt2)]
    assert s["new_tokens"] == sum(r["new_tokens"] for r in a.rows) and s["tokens_per_s"] > 0
    assert "error" in comp.summary["no-such-model-xyz"]
    frame = tables.table(comp, details=True)
    assert list(frame["input"]) == PROMPTS and list(frame["reference"]) == refs
    assert frame["no-such-model-xyz"].str.startswith("⚠ error").all()
    assert f"{tiny_gpt2} · bleu" in frame.columns


def test_streamed_collect_equals_batched(tiny_gpt2, gpt_b):
    settings = G.GenerationSettings(max_new_tokens=6)
    models = [str(tiny_gpt2), str(gpt_b)]
    inputs = runs.make_inputs(PROMPTS[:2])
    loader = lambda name, head: registry.load(LOCAL, name, head=head)
    results, errors = {m: [] for m in models}, {}
    for row in inputs:
        for m in models:
            sink = {}
            text = "".join(live.pieces(loader, m, row["text"], settings, sink))
            assert text == sink["result"].text
            results[m].append(sink["result"])
    streamed = live.collect(models, inputs, results, errors, settings)
    batched = runs.run(LOCAL, "generation", models, inputs, settings)
    for m in models:
        assert [r["text"] for r in streamed.outputs[m].rows] == [r["text"] for r in batched.outputs[m].rows]
    assert "tok/s" in live.stats_line(results[models[0]][0])


def test_bad_inputs(tiny_gpt2, tiny_bert):
    with pytest.raises(LabError, match="two to 4"):
        runs.check_models([str(tiny_gpt2)])
    with pytest.raises(LabError, match="two to 4"):
        runs.check_models(["a", "b", "c", "d", "e"])
    with pytest.raises(LabError, match="empty"):
        runs.make_inputs(["ok", "  "])
    # a classifier chosen for generation: its column says so, the other model still answers
    comp = runs.run(LOCAL, "generation", [str(tiny_gpt2), str(tiny_bert)], runs.make_inputs(["hello"]),
                    G.GenerationSettings(max_new_tokens=3))
    assert comp.outputs[str(tiny_gpt2)].error is None
    assert "not a language model" in comp.outputs[str(tiny_bert)].error
    assert comp.outputs[str(tiny_gpt2)].rows[0]["new_tokens"] == 3


# ---------------------------------------------------------------- classification comparisons
def test_classification_comparison(tiny_bert, bert_b):
    texts = ["great product", "terrible", "it is fine I guess", "would buy again", "broke after a day", "meh"]
    gold = ["positive", "negative", "positive", "positive", "negative", "negative"]
    models = [str(tiny_bert), str(bert_b)]
    comp = runs.run(LOCAL, "classification", models, runs.make_inputs(texts, labels=gold))
    direct = {m: inference.classify(registry.load(LOCAL, m, head="classifier"), texts).probs for m in models}
    names = registry.load(LOCAL, models[0], head="classifier").labels
    for m in models:
        rows = comp.outputs[m].rows
        assert [r["label"] for r in rows] == [names[k] for k in direct[m].argmax(1)]
        assert [r["prob"] for r in rows] == pytest.approx(direct[m].max(1).tolist(), abs=1e-6)
        assert sum(rows[0]["probs"].values()) == pytest.approx(1.0, abs=1e-5)
        acc = np.mean([names[k] == g for k, g in zip(direct[m].argmax(1), gold)])
        assert comp.summary[m]["accuracy"] == pytest.approx(acc)
    agree = [names[i] == names[j] for i, j in zip(direct[models[0]].argmax(1), direct[models[1]].argmax(1))]
    assert comp.agreement.rows == agree
    assert comp.agreement.rate == pytest.approx(np.mean(agree))
    table = runs.confusion_between(comp, *models)
    assert table.values.sum() == len(texts)
    assert np.trace(table.reindex(index=names, columns=names, fill_value=0).values) == sum(agree)
    frame = tables.table(comp)
    assert list(frame["agree"]) == agree
    only = tables.filter_rows(frame, disagreements_only=True)
    assert len(only) == len(texts) - sum(agree)
    assert list(tables.filter_rows(frame, search="BROKE")["input"]) == ["broke after a day"]
    link = attribution_link(models[0], "great product & more")
    assert link.startswith("/attributions?") and "text=great+product+%26+more" in link


# ---------------------------------------------------------------- saving, exports, the job
def test_save_reopen_and_exports(tiny_bert, bert_b):
    comp = runs.run(LOCAL, "classification", [str(tiny_bert), str(bert_b)],
                    runs.make_inputs(["<script>alert(1)</script> nice", "bad"], labels=["positive", "negative"]))
    cid = saved.save(LOCAL, comp)
    again = saved.get(LOCAL, cid)
    assert again.id == cid and again.inputs == comp.inputs
    assert again.outputs[str(tiny_bert)].rows == comp.outputs[str(tiny_bert)].rows
    assert [r["id"] for r in saved.list_saved(LOCAL)] == [cid]
    with pytest.raises(LabError, match="No saved comparison"):
        saved.get(LOCAL, "nope")
    frame = tables.table(again)
    back = pd.read_csv(io.BytesIO(tables.to_csv(frame)))
    assert list(back["input"]) == list(frame["input"]) and list(back[str(tiny_bert)]) == list(frame[str(tiny_bert)])
    assert json.loads(tables.to_json(again))["id"] == cid
    page = tables.to_html(again).decode()
    assert "&lt;script&gt;" in page and "<script>alert" not in page


def test_html_export_has_diffs(tiny_gpt2, gpt_b):
    comp = runs.run(LOCAL, "generation", [str(tiny_gpt2), str(gpt_b)], runs.make_inputs(PROMPTS[:2]),
                    G.GenerationSettings(max_new_tokens=5))
    page = tables.to_html(comp).decode()
    assert page.count('class="llm-diff"') == 2


class _Tables(HTMLParser):
    """The tables of an HTML page: [table][row][cell] -> the cell's text, entities resolved."""

    def __init__(self, page: str):
        super().__init__(convert_charrefs=True)
        self.tables, self.cell = [], None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append(self.cell)
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def test_html_export_is_a_readable_page(tiny_gpt2, gpt_b):
    """The HTML export was the JSON with 16-digit floats: now a page with the models and their numbers, the
    settings, and inputs x models, numbers rounded, every user or model text escaped."""
    evil = '<img src=x onerror=alert(1)> & "def foo(x):"'
    models = [str(tiny_gpt2), str(gpt_b)]
    settings = G.GenerationSettings(max_new_tokens=6, stop=["<END>"])
    comp = runs.run(LOCAL, "generation", models, runs.make_inputs([evil, PROMPTS[1]], references=["<b>ref</b>", None]),
                    settings)
    saved.save(LOCAL, comp, title="<script>x</script> run")
    page = tables.to_html(comp).decode()
    assert "<img" not in page and "<b>ref" not in page and "<script>" not in page  # escaped, never markup
    assert html.escape(evil) in page and "&lt;b&gt;ref&lt;/b&gt;" in page and "&lt;script&gt;x" in page
    assert not re.search(r"\d\.\d{7,}", page)  # no float with more than 6 decimals anywhere
    found = _Tables(page).tables
    model_table, settings_table, outputs = found[0], found[1], found[-1]
    assert found[2][0][:2] == ["A", "B"]  # the paired comparison (exact match on the referenced input)
    assert [row[0] for row in model_table[1:]] == models  # the model names, as they are
    heads = model_table[0]
    for m, row in zip(models, model_table[1:]):
        cells = dict(zip(heads, row))
        s = comp.summary[m]
        # 4 significant digits; thousands with a separator (a fast machine passes 1,000 tokens/s)
        assert cells["tokens / s"] == tables.number(s["tokens_per_s"])
        # a score is "value [95% interval] n=inputs": BLEU over the one input with a reference
        assert cells["BLEU"].startswith(f"{s['bleu']:.3f} [") and cells["BLEU"].endswith(" n=1")
        assert float(cells["tokens / s"].replace(",", "")) == pytest.approx(s["tokens_per_s"], rel=1e-3)
        assert float(cells["mean log-prob"].split()[0]) == pytest.approx(s["mean_logprob"], abs=6e-4)
        assert cells["mean log-prob"].endswith(" n=2")
        assert cells["new tokens"] == str(s["new_tokens"]) and cells["device"] == "cpu"
    assert dict(settings_table)["max new tokens"] == "6" and dict(settings_table)["decoding"] == "greedy"
    assert dict(settings_table)["stop strings"] == "'<END>'"
    assert outputs[0] == ["#", "input", "reference", *models]
    first = outputs[1]
    assert first[1] == evil and first[2] == "<b>ref</b>"  # the user's text, shown as text
    for k, m in enumerate(models):
        row = comp.outputs[m].rows[0]
        assert first[3 + k].startswith(row["text"] or "(empty)") and f"{row['new_tokens']} tokens" in first[3 + k]
    assert len(outputs) == 1 + 2 * 2  # two inputs, each followed by the word diff of the two models


def test_dataset_job(tiny_gpt2, gpt_b):
    job_id = compare_jobs.submit(LOCAL, "generation", [str(tiny_gpt2), str(gpt_b)], "demo-prompts", None, limit=5,
                                 settings={"max_new_tokens": 4})
    job = jobs.get(LOCAL, job_id)
    assert job["status"] == "succeeded", job["error"]
    comp = saved.get(LOCAL, job["result"]["comparison_id"])
    assert len(comp.inputs) == 5 and all("reference" in r for r in comp.inputs)
    assert comp.settings["max_new_tokens"] == 4
    assert all(len(o.rows) == 5 and o.rows[0]["new_tokens"] <= 4 for o in comp.outputs.values())
    assert job["done"] == job["total"] and job["params"]["mode"] == "generation"
    # a job queued before "kind" became "mode" (its params say "kind") still runs
    old = jobs.submit(LOCAL, compare_jobs.JOB_FN, {"kind": "generation", "models": [str(tiny_gpt2), str(gpt_b)],
                                                   "dataset": "demo-prompts", "split": None, "limit": 2,
                                                   "settings": {"max_new_tokens": 2}}, "old params")
    old_job = jobs.get(LOCAL, old)
    assert old_job["status"] == "succeeded", old_job["error"]
    assert saved.get(LOCAL, old_job["result"]["comparison_id"]).mode == "generation"
    # the sample is reproducible: same seed, same rows
    again = compare_jobs.sample_inputs(LOCAL, "demo-prompts", "generation", None, 5, 0)
    assert [r["id"] for r in again] == [r["id"] for r in comp.inputs]
    with pytest.raises(LabError):
        compare_jobs.submit(LOCAL, "generation", [str(tiny_gpt2), str(gpt_b)], "no-such-dataset", None, 5)


# ---------------------------------------------------------------- intervals and the paired claim
def _classified(labels_per_model: dict, gold=None, prob=0.8) -> runs.Comparison:
    n = len(next(iter(labels_per_model.values())))
    inputs = runs.make_inputs([f"text {i}" for i in range(n)], labels=gold)
    outputs = {m: runs.ModelOutput(rows=[{"label": lab, "prob": prob, "probs": {lab: prob}} for lab in labels])
               for m, labels in labels_per_model.items()}
    return runs.assemble("classification", list(labels_per_model), inputs, outputs)


def test_every_compare_number_has_an_honest_interval_and_its_n():
    from scipy.stats import binomtest
    from statsmodels.stats.proportion import proportion_confint

    from llm_lab.compare import statistics
    from llm_lab import snapshots

    gold = ["pos"] * 10
    b = ["pos"] * 6 + ["neg"] * 4
    comp = _classified({"A": ["pos"] * 10, "B": b, "C": ["pos"] * 9 + ["neg"]}, gold)
    found = statistics.model_intervals(comp)
    assert found["A"]["accuracy"].text() == "1.000 [0.722, 1.000] n=10"
    for m, k in (("A", 10), ("B", 6), ("C", 9)):
        low, high = proportion_confint(k, 10, method="wilson")
        assert (found[m]["accuracy"].low, found[m]["accuracy"].high) == (pytest.approx(low), pytest.approx(high))
    assert found["B"]["mean_prob"].value == pytest.approx(0.8) and found["B"]["mean_prob"].n == 10
    agree = statistics.agreement_intervals(comp)
    assert agree["all"].value == pytest.approx(0.6) and agree["A | C"].value == pytest.approx(0.9)
    assert agree["all"].low == pytest.approx(proportion_confint(6, 10, method="wilson")[0])
    pairs = statistics.paired_comparisons(comp, margin=0.05)
    assert [(p.model_a, p.model_b) for p in pairs] == [("A", "B"), ("A", "C"), ("B", "C")]
    ab = pairs[0]
    assert (ab.a_right_b_wrong, ab.a_wrong_b_right) == (4, 0)
    assert ab.p_value == pytest.approx(binomtest(0, 4, 0.5).pvalue)
    bc = pairs[2]  # B wrong on 6..9, C wrong on 9: B right→C wrong 0, B wrong→C right 3
    assert (bc.a_right_b_wrong, bc.a_wrong_b_right) == (0, 3)
    assert bc.p_value == pytest.approx(binomtest(0, 3, 0.5).pvalue)
    assert all(p.adjustment == "holm" and p.p_adjusted >= p.p_value for p in pairs)
    rows = statistics.pair_rows(pairs)
    assert rows[0]["B − A (points)"] == -40.0 and "Not enough examples" in rows[0]["verdict"]
    page = tables.to_html(comp, margin=0.05).decode()
    assert "1.000 [0.722, 1.000] n=10" in page and "Which model is better?" in page
    assert html.escape(rows[0]["verdict"]) in page
    numbers = pd.read_csv(io.BytesIO(tables.to_csv(tables.numbers_frame(comp))))
    assert "1.000 [0.722, 1.000] n=10" in set(numbers["shown"])
    assert len(tables.pairs_frame(comp)) == 3
    stats = json.loads(tables.to_json(comp))["statistics"]
    assert len(stats["paired"]) == 3 and stats["paired"][0]["a_right_b_wrong"] == 4
    snap = snapshots.comparison(comp)
    assert any("1.000 [0.722, 1.000] n=10" in str(row) for t in snap["tables"] for row in t["rows"])
    assert not any("±" in line for line in snap["text"])


def test_without_gold_labels_the_claim_is_agreement_only():
    from llm_lab.compare import statistics

    comp = _classified({"A": ["pos", "neg", "pos", "pos"], "B": ["pos", "pos", "pos", "neg"]})
    assert statistics.paired_comparisons(comp) == []
    reason = statistics.no_paired_reason(comp)
    assert "No gold labels" in reason and "agree" in reason
    assert "accuracy" not in statistics.model_intervals(comp)["A"]
    assert statistics.agreement_intervals(comp)["all"].text() == "0.500 [0.150, 0.850] n=4"
    assert reason in tables.to_html(comp).decode().replace("&#x27;", "'")


def test_generation_scores_have_intervals_and_exact_match_is_paired():
    from llm_lab import metrics
    from llm_lab.compare import statistics

    texts = ["a b c d e", "one two three four", "x y z", "hello there world", "red green blue"]
    refs = ["a b c d e", "one two three five", "x y z", "hello world", "red green blue"]
    outputs = {}
    for m, preds in (("A", texts), ("B", refs)):
        rows = [{"text": p, "new_tokens": 3, "latency_s": 0.1, "tokens_per_s": 30.0, "mean_logprob": -1.0 - i / 10,
                 "truncated": False, "stop_reason": "eos", "note": ""} for i, p in enumerate(preds)]
        outputs[m] = runs.ModelOutput(rows=rows, wall_s=1.0)
    comp = runs.assemble("generation", ["A", "B"], runs.make_inputs(texts, references=refs), outputs)
    found = statistics.model_intervals(comp)
    assert found["A"]["bleu"].value == pytest.approx(metrics.compute("bleu", texts, refs)["bleu"])
    assert found["A"]["exact_match"].value == pytest.approx(0.6) and found["B"]["exact_match"].text().startswith("1.000 [0.566")
    assert found["A"]["rougeL"].low <= found["A"]["rougeL"].value <= found["A"]["rougeL"].high
    assert found["A"]["mean_logprob"].value == pytest.approx(-1.2)
    pair = statistics.paired_comparisons(comp)[0]
    assert pair.metric == "exact_match" and (pair.a_right_b_wrong, pair.a_wrong_b_right) == (0, 2)
