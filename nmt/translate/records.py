"""A hypothesis as JSON fields: what nmt-translate's JSON lines and nmt-serve's answers say of it."""

from __future__ import annotations

import math

from nmt.search import Hypothesis
from nmt.translate.alignment import hard_alignment, pharaoh, word_indices


def hypothesis_record(tokenizer, hyp: Hypothesis, text: str, columns: int | None = None,
                      source_words: list[int] | None = None) -> dict:
    """A hypothesis as JSON fields, the same in nmt-translate's JSON lines and nmt-serve's answers:
    text, score (null where not finite: strict JSON has no -Infinity), finished, target pieces and,
    with `columns` (the source pieces the model read), its attention rows cut to them: columns
    past them are the batch's padding, and a record must not depend on the batch. With
    `source_words` (`Translator.source_words` of its line), its word alignment in Pharaoh format
    (nmt/translate/alignment.py), over the words of `text`."""
    record = {"text": text, "score": round(hyp.score, 4) if math.isfinite(hyp.score) else None,
              "finished": hyp.finished, "tokens": tokenizer.tgt_pieces(hyp.tokens)}
    if columns is not None:
        record["attention"] = [] if hyp.attention is None else hyp.attention[:, :columns].tolist()
    if source_words is not None:
        written = tokenizer.tgt.decode_spans([hyp.tokens])[0]  # `text` and where each piece is in it
        target_words = word_indices(written.text, written.spans)
        record["alignment"] = pharaoh(hard_alignment(hyp.attention, source_words, target_words))
    return record
