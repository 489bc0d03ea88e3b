"""Links to the Attributions page (`views/attributions.py` reads model, text, dataset, example)."""
from __future__ import annotations

import numbers
from urllib.parse import urlencode

ATTRIBUTIONS_PAGE = "/attributions"


def attribution_link(model: str, text: str | None = None, dataset: str | None = None, example=None) -> str:
    """`/attributions?model=…[&text=…][&dataset=…&example=…]`, every value URL-encoded.

    `text` is the input to explain; `dataset` and `example` (the row id) name a dataset row and go
    together: both or neither. An integer row id is written as an integer (numpy ints included).
    """
    params = {"model": model}
    if text is not None:
        params["text"] = text
    if dataset and example is not None:
        params["dataset"] = dataset
        params["example"] = int(example) if isinstance(example, numbers.Integral) else str(example)
    return ATTRIBUTIONS_PAGE + "?" + urlencode(params)
