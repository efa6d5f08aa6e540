"""The /translate request and answer: validation with one-line messages, and hypotheses as JSON records."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nmt.config import ServeConfig


class TranslateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    text: str | list[str] = Field(description="a sentence, or a list of sentences answered in the same order")
    beam_size: int | None = Field(None, ge=1, description="beam size, 1 = greedy "
                                  "(default: the model's decode.beam_size, raised to nbest)")
    nbest: int = Field(1, ge=1, description="hypotheses per sentence, best first (needs beam_size >= nbest)")
    length_penalty: float | None = Field(None, ge=0, description="GNMT length penalty alpha, 0 = none "
                                         "(default: the model's decode.length_penalty)")
    attention: bool = Field(False, description="include the attention weights of each hypothesis")


class Hypothesis(BaseModel):
    text: str = Field(description="detokenized translation")
    score: float = Field(description="sum of token log-probabilities (beam: divided by the length penalty)")
    finished: bool = Field(description="ended with </s> (false: stopped at the length cap)")
    tokens: list[str] = Field(description="target pieces, </s> excluded")
    attention: list[list[float]] | None = Field(
        None, description="with attention: one row per target piece (and one for </s> when finished), "
                          "one column per source piece")


class Translation(Hypothesis):
    source_tokens: list[str] = Field(description="source pieces the model read, </s> included (columns of attention)")
    nbest: list[Hypothesis] | None = Field(None, description="with nbest > 1: every hypothesis, best first")


class TranslateResponse(BaseModel):
    translations: list[Translation]


class RequestError(Exception):
    """A request refused with `status` (400: malformed, 413: too large) and a one-line `message`."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Settings:
    """Decode settings of one request; requests with equal settings may share a decoding batch."""

    beam_size: int
    nbest: int
    length_penalty: float | None
    attention: bool


def _describe(value) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def validation_message(err: ValidationError) -> str:
    """The first problem of a request, in one line naming the setting."""
    first = err.errors()[0]
    name = str(first["loc"][0]) if first["loc"] else "body"
    if first["type"] == "extra_forbidden":
        known = list(TranslateRequest.model_fields)
        close = difflib.get_close_matches(name, known, n=1)
        shown = name if name.isidentifier() else _describe(name)  # a key may hold a newline; the message may not
        return f"{shown}: unknown setting; " + (f"did you mean {close[0]}?" if close else f"known: {', '.join(known)}")
    if first["type"] == "missing":
        return f"{name}: required, e.g. {{\"text\": \"Ein Hund läuft.\"}}"
    if name == "text":  # one error per member of str | list[str]; an item's error has its index
        item = next((e for e in err.errors() if e["loc"][0] == "text" and isinstance(e["loc"][-1], int)), None)
        if item:
            return f"text[{item['loc'][-1]}]: expected a string, got {_describe(item['input'])}"
        return f"text: expected a string or a list of strings, got {_describe(first['input'])}"
    message = first["msg"][0].lower() + first["msg"][1:]
    return f"{name}: {message}, got {_describe(first['input'])}"


def parse_request(body: bytes, limits: ServeConfig, default_beam: int) -> tuple[list[str], Settings]:
    """The sentences and decode settings of a /translate body, or RequestError."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
        reason = "nested too deeply" if isinstance(err, RecursionError) else str(err)
        raise RequestError(400, f"malformed JSON: {reason}") from None
    if not isinstance(data, dict):
        raise RequestError(400, f"expected a JSON object such as {{\"text\": \"...\"}}, got {_describe(data)}")
    try:
        request = TranslateRequest.model_validate(data)
    except ValidationError as err:
        raise RequestError(400, validation_message(err)) from None
    lines = [request.text] if isinstance(request.text, str) else request.text
    if len(lines) > limits.max_sentences:
        raise RequestError(413, f"{len(lines)} sentences; this server takes at most {limits.max_sentences} per request")
    chars = sum(len(line) for line in lines)
    if chars > limits.max_chars:
        raise RequestError(413, f"{chars} characters; this server takes at most {limits.max_chars} per request")
    beam = request.beam_size or max(request.nbest, default_beam)
    if beam > limits.max_beam_size:
        name = "beam_size" if request.beam_size else "nbest"
        raise RequestError(400, f"{name}: at most {limits.max_beam_size} on this server, got {beam}")
    if request.nbest > beam:
        raise RequestError(400, f"nbest: {request.nbest} needs beam_size of at least {request.nbest}, got {beam}")
    return lines, Settings(beam, request.nbest, request.length_penalty, request.attention)


def translate_records(translator, batch_size: int, lines: list[str], settings: Settings) -> list[dict]:
    """One `Translation` record per line (plain dicts: the answer is built off the event loop)."""
    found = translator.translate_hyps(lines, nbest=settings.nbest, return_attention=settings.attention,
                                      beam_size=settings.beam_size, length_penalty=settings.length_penalty,
                                      batch_size=batch_size)
    texts = iter(translator.tokenizer.decode([h.tokens for hyps in found for h in hyps]))
    records = []
    for line, hyps in zip(lines, found):
        source = translator.source_pieces(line)
        items = []
        for hyp in hyps:
            item = {"text": next(texts), "score": round(hyp.score, 4), "finished": hyp.finished,
                    "tokens": translator.tokenizer.tgt_pieces(hyp.tokens)}
            if settings.attention:
                # Columns past the source are its batch's padding: the answer must not depend on the batch.
                item["attention"] = [] if hyp.attention is None else hyp.attention[:, :len(source)].tolist()
            items.append(item)
        record = {**items[0], "source_tokens": source}
        if settings.nbest > 1:
            record["nbest"] = items
        records.append(record)
    return records
