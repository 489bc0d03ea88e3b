"""The inference layer: the only place a loaded model runs for a feature.

Four batched calls, each taking a loaded model (`registry.LoadedModel`) and a list, in the shape of
lm-evaluation-harness's `LM` and LIT's `predict_minibatch`:

| call | answers | used by |
|---|---|---|
| `classify(loaded, texts, pairs=None)` | class probabilities (`Classified`) | Models "Try it", Compare, the classification task, `serve /v1/classify`, attributions' prediction, compress measurements |
| `embed(loaded, texts, all_layers=False)` | mean-pooled embeddings (`Embedded`) | Models "Try it", `serve /v1/embeddings`, compress measurements |
| `loglikelihood(loaded, pairs)` / `loglikelihood_rolling(loaded, texts)` | log-probabilities (`Loglikelihood`, `Rolling`) | the multiple-choice and language-modelling tasks, model cards' perplexity, training's evaluation |
| `generate(loaded, prompts, settings)` / `stream(loaded, prompt, settings)` | text (`generation.GenerationResult`) | Compare, Arena, the generation task, `serve`, model cards |

What every call decides once: inputs are cut at the model's context length (`inputs.limit`: the one decided
at load, `Capabilities.max_context`) unless the caller asks for fewer tokens, and the result says what was cut
(`Tokens.note`); texts of similar length are batched together; padding is on the right for reading and on the
left for generation; a batch halves on out-of-memory; the model's lock is held; inputs go to the model's device.
Methods that need the model itself (gradients, masked heads, attention weights) call `forward`, the one module
where a model's forward pass or `generate` is called. An ONNX variant answers classify and embed like any model;
an endpoint model answers generate, and the others refuse it with the one capability message.
"""
from .classify import Classified, classify
from .embed import Embedded, cosine, embed
from .generate import generate, generate_group, stream
from .inputs import Tokens, limit, tokenize, wrap
from .loglikelihood import (  # an endpoint's text-level scoring (echo + logprobs)
                            Loglikelihood,
                            Rolling,
                            Scores,
                            TokenScores,
                            encode_pair,
                            loglikelihood,
                            loglikelihood_rolling,
                            pair_requests,
                            perplexity,
                            rolling_windows,
                            score_texts,
                            score_tokens,
                            start_token,
                            text_requests,
)
from .logprobs import PromptLogprobs, StepLogprobs, prompt_logprobs
from .own_head import infer

__all__ = ["Classified", "Embedded", "Loglikelihood", "Rolling", "Scores", "TokenScores", "Tokens", "classify", "cosine",
           "embed", "encode_pair", "generate", "generate_group", "infer", "limit", "loglikelihood", "loglikelihood_rolling",
           "pair_requests", "perplexity", "rolling_windows", "score_tokens", "start_token", "stream", "tokenize", "wrap"]
__all__ += ["PromptLogprobs", "StepLogprobs", "prompt_logprobs"]
__all__ += ["score_texts", "text_requests"]
