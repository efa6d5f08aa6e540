"""A refused request: its status and one-line message, raised by every check of both APIs.

A refusal's status says whose rule it breaks. MALFORMED: JSON (in valid Unicode), or the request's
schema as /openapi.json states it. TOO_LARGE: a limit of this server on sizes JSON Schema cannot add
up (characters of all sentences, sentences x nbest, attention weights). CONFLICTING: a rule between
values, or between a value and the model, that JSON Schema cannot state (a prefix per sentence,
nbest <= beam_size, a prefix's words in the target vocabulary).
"""

from __future__ import annotations

MALFORMED, TOO_LARGE, CONFLICTING = 400, 413, 422


class RequestError(Exception):
    """A request refused with `status` (MALFORMED, TOO_LARGE or CONFLICTING) and a one-line `message`."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message
