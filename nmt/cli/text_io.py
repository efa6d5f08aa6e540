"""Line input and output of the command-line tools: stdin or a file read in chunks with a clear
error on invalid UTF-8, and stdout or a file written atomically (PATH.partial, renamed when complete)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path

from nmt.errors import NmtError


def read_chunks(stream, name: str, on_bad_bytes: str, size: int):
    """Yield (first line number, lines) in chunks, so that a huge input streams in flat memory."""
    chunk, first = [], 1
    for number, raw in enumerate(stream, start=1):
        raw = raw.rstrip(b"\n").rstrip(b"\r")
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            if on_bad_bytes == "error":
                raise NmtError(f"{name}:{number}: not valid UTF-8 (byte {raw[err.start]:#04x}); "
                               "use --bad-bytes replace to translate it anyway") from None
            logging.getLogger("nmt.translate").warning("%s:%d: invalid UTF-8 replaced by U+FFFD", name, number)
            line = raw.decode("utf-8", errors="replace")
        chunk.append(line)
        if len(chunk) == size:
            yield first, chunk
            chunk, first = [], number + 1
    if chunk:
        yield first, chunk


def with_prefixes(chunks, prefix_chunks, name: str):
    """Yield (first line number, lines, prefixes): the input's chunks beside a prefix file's, read
    with the same chunk size so that they line up; NmtError naming `name` when their line counts differ.

    A mismatch is found at the first chunk where the counts differ (at the latest, the end): lines
    translated before it are already written (with -o, to PATH.partial only)."""
    def mismatch(prefix_count: int, line_count: int) -> NmtError:
        return NmtError(f"{name}: {prefix_count} lines but the input has {line_count}; "
                        "give one prefix per input line (an empty line for none)")

    def rest(stream) -> int:  # the lines left in a stream of chunks
        return sum(len(chunk) for _, chunk in stream)

    lines_seen = 0
    for first, lines in chunks:
        _, prefixes = next(prefix_chunks, (first, []))
        lines_seen = first - 1 + len(lines)
        if len(prefixes) != len(lines):
            raise mismatch(first - 1 + len(prefixes) + rest(prefix_chunks), lines_seen + rest(chunks))
        yield first, lines, prefixes
    extra = rest(prefix_chunks)
    if extra:
        raise mismatch(lines_seen + extra, lines_seen)


def open_input(path: str | None):
    if not path:
        return contextlib.nullcontext(sys.stdin.buffer)
    try:
        return open(path, "rb")
    except OSError as err:
        raise NmtError(f"{path}: cannot read ({err.strerror})") from None


@contextlib.contextmanager
def open_output(path: str | None):
    """stdout, or PATH written as PATH.partial and renamed when complete.

    A run that fails midway leaves an existing PATH untouched and its own lines in PATH.partial.
    """
    if not path:
        yield sys.stdout
        return
    partial = Path(f"{path}.partial")
    try:
        out = open(partial, "w", encoding="utf-8")
    except OSError as err:
        raise NmtError(f"{path}: cannot write ({err.strerror})") from None
    try:
        with out:
            yield out
    except NmtError as err:
        raise NmtError(f"{err} ({partial} holds the lines translated before it)") from None
    os.replace(partial, path)
