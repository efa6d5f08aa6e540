"""What an answer costs and how it is built: the prefix and attention checks made before decoding, the
`Translation` records (decoded in parts, built on the decoding worker) and their JSON (encoded off the
event loop)."""

from __future__ import annotations

import json

import torch

from nmt.search.common import max_lengths, prefix_caps
from nmt.serve.parts import PartedDecoder
from nmt.serve.refusal import CONFLICTING, TOO_LARGE, RequestError
from nmt.serve.schema import Sentence, Settings
from nmt.translate.prefix import long_prefix
from nmt.translate.decoding import pad_prefixes
from nmt.translate.records import hypothesis_record

# Why a budget: one legal request (100 sentences, nbest 16, attention) once made an answer of 123 MB.


def attention_size(translator, sentences: list[Sentence], settings: Settings) -> int:
    """An upper bound on the attention weights that a request makes the decoding worker compute and
    keep: per hypothesis, rows (the output length cap, EOS included, raised to fit a prefix as the
    search raises it) x columns (source pieces the model reads). Alignments are made from those
    weights, so they count as attention does, though only the pairs are sent; otherwise nothing."""
    if not (settings.attention or settings.alignments):
        return 0
    opts = translator.cfg.decode
    columns = torch.tensor([len(pieces) for pieces, _ in translator.pieces_read([s.text for s in sentences])])
    prefixes = pad_prefixes(translator.tokenizer.encode_tgt([s.prefix for s in sentences]), torch.device("cpu"))
    # The search's own cap: if its rule changes, the budget follows.
    rows = prefix_caps(max_lengths(columns, opts.max_len_a, opts.max_len_b), prefixes)
    return settings.nbest * int((rows * columns).sum())  # a blank line has no columns


def check_prefixes(translator, sentences: list[Sentence]) -> None:
    """RequestError CONFLICTING (422) naming a prefix that the target vocabulary cannot spell (a word it
    reads as <unk>: forced so, the translation would not start with the prefix) or that is longer than
    its sentence allows (nmt/translate/prefix.py), before the request is queued. The schema cannot
    say either, so a request that it accepts may still be refused here."""
    # A blank sentence is answered without decoding: its prefix is never forced.
    prefixes = [s.prefix if s.text.strip() else "" for s in sentences]
    ids = translator.tokenizer.encode_tgt(prefixes)
    unknown = translator.unspellable(prefixes, ids)
    if unknown is not None:
        index, word = unknown
        raise RequestError(CONFLICTING, f"{_prefix_name(index, sentences)}: the word {word!r} is outside the "
                                        "model's target vocabulary (forced as <unk>, the translation would not "
                                        "start with the prefix)")
    sources = [len(pieces) for pieces, _ in translator.pieces_read([s.text for s in sentences])]
    long = long_prefix(sources, [len(seq) for seq in ids], translator.cfg.decode)
    if long is not None:
        raise RequestError(CONFLICTING, f"{_prefix_name(long.index, sentences)}: {long.reason()}")


def _prefix_name(index: int, sentences: list[Sentence]) -> str:
    """The JSON field of sentence `index`'s prefix."""
    return f"prefix[{index}]" if len(sentences) > 1 else "prefix"


def check_budget(translator, sentences: list[Sentence], settings: Settings, max_attention: int) -> None:
    """RequestError TOO_LARGE (413) naming `attention` (or `alignments`) when the request's attention
    could exceed `max_attention` weights."""
    size = attention_size(translator, sentences, settings)
    if size > max_attention:
        name = "attention" if settings.attention else "alignments"
        raise RequestError(TOO_LARGE, f"{name}: up to {size} attention weights (sentences x nbest x output cap "
                                      f"x source pieces); this server computes at most {max_attention} per request")


def translate_records(translator, batch_size: int, parts: PartedDecoder, sentences: list[Sentence],
                      settings: Settings) -> list[dict]:
    """One `Translation` record per sentence (plain dicts: the answer is built off the event loop)."""
    lines = [s.text for s in sentences]
    prefixes = [s.prefix for s in sentences] if any(s.prefix for s in sentences) else None
    read = translator.pieces_read(lines)  # (pieces, truncated) per line
    words = translator.source_words(lines) if settings.alignments else [None] * len(lines)

    def decode(indices: list[int]) -> list:
        return translator.translate_hyps([lines[i] for i in indices], nbest=settings.nbest,
                                         prefixes=None if prefixes is None else [prefixes[i] for i in indices],
                                         return_attention=settings.attention or settings.alignments,
                                         beam_size=settings.beam_size, length_penalty=settings.length_penalty,
                                         batch_size=batch_size, workers=1)  # `parts` are the server's workers

    found = parts.map(decode, [len(pieces) for pieces, _ in read])
    texts = iter(translator.tokenizer.decode([h.tokens for hyps in found for h in hyps]))
    records = []
    for (source, truncated), aligned, hyps in zip(read, words, found):
        columns = len(source) if settings.attention else None
        items = [hypothesis_record(translator.tokenizer, hyp, next(texts), columns, aligned) for hyp in hyps]
        if settings.nbest > 1:  # the best one's weights are in nbest[0]; never sent twice
            top = {k: v for k, v in items[0].items() if k != "attention"}
            records.append({**top, "source_tokens": source, "truncated": truncated, "nbest": items})
        else:
            records.append({**items[0], "source_tokens": source, "truncated": truncated})
    return records


def encode(answer: dict) -> bytes:
    """The answer as one line of UTF-8 JSON; `allow_nan=False`: a non-finite score is a bug, not an answer."""
    return json.dumps(answer, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
