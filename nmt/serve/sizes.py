"""A request's size against this server's limits (413), the same rule for both APIs: our /translate
and LibreTranslate's (nmt/serve/libre.py), which counts the sentences it splits a text into."""

from __future__ import annotations

from nmt.serve.config import ServeConfig
from nmt.serve.refusal import TOO_LARGE, RequestError


def check_sizes(sentences: int, chars: int, nbest: int, limits: ServeConfig) -> None:
    """RequestError TOO_LARGE for more sentences, characters or sentences x nbest than `limits` allow."""
    if sentences > limits.max_sentences:
        raise RequestError(TOO_LARGE, f"{sentences} sentences; this server takes at most {limits.max_sentences} "
                                      "per request")
    if chars > limits.max_chars:
        raise RequestError(TOO_LARGE, f"{chars} characters; this server takes at most {limits.max_chars} "
                                      "per request")
    if sentences * nbest > limits.max_hypotheses:
        raise RequestError(TOO_LARGE, f"{sentences} sentences x nbest {nbest} = {sentences * nbest} hypotheses; "
                                      f"this server answers at most {limits.max_hypotheses} per request")
