"""Corpus files read in chunks: text pairs, TSV and JSONL, in memory that does not grow with the file.

Every reader yields `Pairs` blocks of aligned source and target lines. Only `\\n` ends a line
(`str.splitlines` would also split on `\\u2028` and friends and misalign pairs); the `\\r` of a CRLF
line end and a UTF-8 byte-order mark at the start of a file are not part of the text (SentencePiece
drops both anyway; `nmt-translate` reads its input the same way). Bad input is named by file and line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from nmt.errors import NmtError

CHUNK_BYTES = 1 << 23  # 8 MiB a read: about 100k lines of Multi30k, few calls and flat memory


class Block(NamedTuple):
    first: int  # line number of lines[0], from 1
    lines: list[str]


class Pairs(NamedTuple):
    src: list[str]
    tgt: list[str]


def _decode(raw: bytes, path: Path, first: int, bom: bool) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = first + raw[: err.start].count(b"\n")
        raise NmtError(f"{path}:{line}: not valid UTF-8 (byte {raw[err.start]:#04x})") from None
    if bom:
        text = text.removeprefix("\ufeff")
    return text.replace("\r\n", "\n")


def iter_lines(path: Path, chunk_bytes: int | None = None) -> Iterator[Block]:
    """The lines of a UTF-8 file, a block at a time; blocks are cut after a `\\n`, never inside a line."""
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    try:
        stream = open(path, "rb")
        with stream:
            carry, number, empty = b"", 1, True
            while block := stream.read(chunk_bytes):
                empty = False
                raw = carry + block
                cut = raw.rfind(b"\n") + 1
                raw, carry = raw[:cut], raw[cut:]
                if raw:
                    lines = _decode(raw, path, number, number == 1).split("\n")[:-1]
                    yield Block(number, lines)
                    number += len(lines)
            if empty:
                raise NmtError(f"{path}: file is empty")
    except FileNotFoundError:
        raise NmtError(f"{path}: file not found") from None
    except OSError as err:
        raise NmtError(f"{path}: cannot read ({err.strerror})") from None
    if carry:  # a last line without `\n`
        yield Block(number, [_decode(carry, path, number, number == 1)])


def read_lines(path: Path) -> list[str]:
    """All lines of a UTF-8 text file (for small files: references, hypotheses, test sets)."""
    return [line for block in iter_lines(path) for line in block.lines]


def text_pairs(src_path: Path, tgt_path: Path) -> Iterator[Pairs]:
    """Line i of the source with line i of the target; files of different length are an error."""
    src_blocks, tgt_blocks = iter_lines(src_path), iter_lines(tgt_path)
    src, tgt, done = [], [], 0
    while True:
        src = src or next(src_blocks, Block(0, [])).lines
        tgt = tgt or next(tgt_blocks, Block(0, [])).lines
        n = min(len(src), len(tgt))
        if n == 0:
            break
        yield Pairs(src[:n], tgt[:n])
        src, tgt, done = src[n:], tgt[n:], done + n
    if src or tgt:  # one file ended first: count the rest of the other for the message
        n_src = done + len(src) + sum(len(b.lines) for b in src_blocks)
        n_tgt = done + len(tgt) + sum(len(b.lines) for b in tgt_blocks)
        raise NmtError(f"{src_path} has {n_src} lines but {tgt_path} has {n_tgt}")


def tsv_pairs(path: Path, src_lang: str, tgt_lang: str) -> Iterator[Pairs]:
    """Two tab-separated columns, source first, no header, no quoting; blank lines are skipped."""
    for block in iter_lines(path):
        pairs = Pairs([], [])
        for number, line in enumerate(block.lines, block.first):
            if not line:
                continue
            fields = line.split("\t")
            if len(fields) != 2:
                raise NmtError(f"{path}:{number}: expected 2 tab-separated fields ({src_lang}, {tgt_lang}), "
                               f"found {len(fields)}")
            pairs.src.append(fields[0])
            pairs.tgt.append(fields[1])
        yield pairs


def _jsonl_pair(line: str, where: str, src_lang: str, tgt_lang: str) -> tuple[str, str]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise NmtError(f"{where}: not valid JSON ({err.msg})") from None
    pair = row.get("translation", row) if isinstance(row, dict) else None
    if not isinstance(pair, dict):
        raise NmtError(f"{where}: needs a 'translation' object or keys '{src_lang}' and '{tgt_lang}'")
    texts = []
    for lang in (src_lang, tgt_lang):
        if lang not in pair:
            raise NmtError(f"{where}: a row has no '{lang}' entry")
        text = pair[lang] if pair[lang] is not None else ""
        if not isinstance(text, str):
            raise NmtError(f"{where}: '{lang}' is not a string")
        texts.append(text)
    return texts[0], texts[1]


def jsonl_pairs(path: Path, src_lang: str, tgt_lang: str) -> Iterator[Pairs]:
    """One JSON object a line: `{SRC: ..., TGT: ...}` or `{"translation": {SRC: ..., TGT: ...}}`."""
    for block in iter_lines(path):
        pairs = Pairs([], [])
        for number, line in enumerate(block.lines, block.first):
            if line.strip():  # blank lines are skipped, as JSON-lines readers do
                src, tgt = _jsonl_pair(line, f"{path}:{number}", src_lang, tgt_lang)
                pairs.src.append(src)
                pairs.tgt.append(tgt)
        yield pairs
