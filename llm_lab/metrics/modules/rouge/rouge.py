"""ROUGE via Google's rouge_score (LLM Lab local evaluate module)."""
import datasets
import evaluate
import numpy as np
from rouge_score import rouge_scorer

_KWARGS = """
predictions (list of str), references (list of str).
rouge_types (default ["rouge1", "rouge2", "rougeL", "rougeLsum"]), use_stemmer (bool, default False).
Returns the mean F-measure of each type over examples, plus per-example values under "<type>_per_example".
"""


class Rouge(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="ROUGE F-measures (mean over examples, no bootstrap aggregation).",
            citation="Lin, 2004. ROUGE: A Package for Automatic Evaluation of Summaries.",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
            reference_urls=["https://github.com/google-research/google-research/tree/master/rouge"],
        )

    def _compute(self, predictions, references, rouge_types=None, use_stemmer=False):
        rouge_types = list(rouge_types or ["rouge1", "rouge2", "rougeL", "rougeLsum"])
        scorer = rouge_scorer.RougeScorer(rouge_types, use_stemmer=use_stemmer)
        per = {t: [] for t in rouge_types}
        for pred, ref in zip(predictions, references):
            scores = scorer.score(ref, pred)
            for t in rouge_types:
                per[t].append(scores[t].fmeasure)
        out = {t: float(np.mean(v)) if v else None for t, v in per.items()}
        out.update({f"{t}_per_example": [float(x) for x in v] for t, v in per.items()})
        return out
