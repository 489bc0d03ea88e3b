"""chrF / chrF++ via sacrebleu (LLM Lab local evaluate module)."""
import datasets
import evaluate
from sacrebleu.metrics import CHRF

_KWARGS = """
predictions (list of str). references (list of list of str), the same number per prediction.
char_order (6), word_order (0; 2 gives chrF++), beta (2), lowercase (False), whitespace (False).
Returns {"chrf": 0-100}.
"""


class Chrf(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Character n-gram F-score as computed by sacrebleu (corpus level, 0-100).",
            citation="Popovic, 2015. chrF: character n-gram F-score for automatic MT evaluation.",
            inputs_description=_KWARGS,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Sequence(datasets.Value("string"))}
            ),
            reference_urls=["https://github.com/mjpost/sacrebleu"],
        )

    def _compute(self, predictions, references, char_order=6, word_order=0, beta=2, lowercase=False, whitespace=False):
        n_refs = {len(r) for r in references}
        if len(n_refs) > 1:
            raise ValueError("chrF needs the same number of references for every prediction.")
        streams = [list(refs) for refs in zip(*references)]
        scorer = CHRF(char_order=char_order, word_order=word_order, beta=beta, lowercase=lowercase, whitespace=whitespace)
        result = scorer.corpus_score(predictions, streams)
        return {"chrf": float(result.score), "char_order": char_order, "word_order": word_order, "beta": beta}
