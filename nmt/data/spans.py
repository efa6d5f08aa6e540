"""Where SentencePiece's pieces lie in their text: each piece's byte span, read from the
SentencePieceText message that SentencePiece serialises, without the protobuf package.

SentencePiece normalises a line before it cuts it into pieces (NFKC: `´` becomes a space and a
combining accent), and the model's vocabulary may read a piece as <unk>, so neither a piece's string
nor its id says which characters of the line it stands for; its span does. SentencePiece reports it
as `begin`/`end` byte offsets into the text it encoded, or, decoding, into the text it wrote (where
a <unk> is " ⁇ "). A piece may have an empty span: the ▁ of a normaliser's space, or a byte piece
before the one that completes its character.

The serialised message (`out_type="serialized_proto"`) is in every sentencepiece this package
allows (0.2 on); the parsed forms are not: 0.2.3 refuses `immutable_proto`, and `proto` needs protobuf.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

# Field numbers of sentencepiece.proto: SentencePieceText's text and pieces, a piece's begin and end.
TEXT, PIECES, BEGIN, END = 1, 2, 4, 5
FIXED_SIZE = {1: 8, 5: 4}  # bytes of the fixed-size wire types (64 and 32 bits: the float score)


class Span(NamedTuple):
    begin: int  # byte offsets into the text's UTF-8
    end: int


class Located(NamedTuple):
    """A text and the span of each of its pieces in it."""
    text: str
    spans: list[Span]


def _varint(message: bytes, pos: int) -> tuple[int, int]:
    """The varint at `pos` and the position after it."""
    value, shift = 0, 0
    while True:
        byte = message[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return value, pos
        shift += 7


def fields(message: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(number, value) of each field of a serialised protobuf message: a varint as an int, a
    length-delimited field (a string, a message) as its bytes; fixed-size fields are skipped."""
    pos = 0
    while pos < len(message):
        key, pos = _varint(message, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(message, pos)
        elif wire == 2:
            size, pos = _varint(message, pos)
            value, pos = message[pos:pos + size], pos + size
        elif wire in FIXED_SIZE:
            pos += FIXED_SIZE[wire]
            continue
        else:  # groups (3, 4): sentencepiece.proto has none
            raise ValueError(f"SentencePieceText: unexpected wire type {wire}")
        yield number, value


def located(serialized: bytes) -> Located:
    """A serialised SentencePieceText -> its text and its pieces' spans."""
    text, spans = "", []
    for number, value in fields(serialized):
        if number == TEXT:
            text = value.decode("utf-8")
        elif number == PIECES:
            piece = dict(fields(value))
            spans.append(Span(piece.get(BEGIN, 0), piece.get(END, 0)))  # proto2: an unset field is 0
    return Located(text, spans)
