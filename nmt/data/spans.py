"""Where SentencePiece's pieces lie in their text: each piece's byte span, from SentencePiece's own
record of it (its SentencePieceText message, parsed by the protobuf package).

SentencePiece normalises a line before it cuts it into pieces (NFKC: `´` becomes a space and a
combining accent), and the model's vocabulary may read a piece as <unk>, so neither a piece's string
nor its id says which characters of the line it stands for; its span does. SentencePiece reports it
as `begin`/`end` byte offsets into the text it encoded, or, decoding, into the text it wrote (where
a <unk> is " ⁇ "). A piece may have an empty span: the ▁ of a normaliser's space, or a byte piece
before the one that completes its character.
"""

from __future__ import annotations

from typing import NamedTuple


class Span(NamedTuple):
    begin: int  # byte offsets into the text's UTF-8
    end: int


class Located(NamedTuple):
    """A text and the span of each of its pieces in it."""
    text: str
    spans: list[Span]


def located(message) -> Located:
    """A SentencePieceText (sentencepiece's `out_type="proto"`) -> its text and its pieces' spans."""
    return Located(message.text, [Span(piece.begin, piece.end) for piece in message.pieces])
