"""Corpus BLEU via sacrebleu (LLM Lab local evaluate module)."""
import datasets
import evaluate
import sacrebleu

_KWARGS = """
predictions (list of str). references (list of list of str): one or more references per prediction
(the same number for every prediction). tokenize ("13a" default), lowercase (bool), smooth_method ("exp").
Returns {"bleu": 0-100, "precisions", "brevity_penalty", "sys_len", "ref_len"}.
"""


class Bleu(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="BLEU as computed by sacrebleu (corpus level, 0-100).",
            citation="Post, 2018. A Call for Clarity in Reporting BLEU Scores.",
            inputs_description=_KWARGS,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Sequence(datasets.Value("string"))}
            ),
            reference_urls=["https://github.com/mjpost/sacrebleu"],
        )

    def _compute(self, predictions, references, tokenize="13a", lowercase=False, smooth_method="exp", smooth_value=None):
        n_refs = {len(r) for r in references}
        if len(n_refs) > 1:
            raise ValueError("BLEU needs the same number of references for every prediction.")
        streams = [list(refs) for refs in zip(*references)]
        result = sacrebleu.corpus_bleu(
            predictions, streams, tokenize=tokenize, lowercase=lowercase, smooth_method=smooth_method, smooth_value=smooth_value
        )
        return {
            "bleu": float(result.score),
            "precisions": [float(p) for p in result.precisions],
            "brevity_penalty": float(result.bp),
            "sys_len": int(result.sys_len),
            "ref_len": int(result.ref_len),
        }
