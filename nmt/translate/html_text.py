"""An HTML fragment cut into its text and its markup, byte for byte, by the standard library's parser.

`html.parser.HTMLParser` is a real, maintained HTML parser (the one Python ships: it knows start
and end tags, attributes with `>` inside quotes, comments, declarations, processing instructions,
character and entity references, and the raw-text elements <script> and <style>) and needs no
dependency. It reports each construct with the position where it starts; the input's slice from
one start to the next is that construct exactly, so the chunks put back together are the input,
whatever the parser normalises in what it reports (tag case, attribute quotes, whitespace).
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import NamedTuple

RAW_TEXT = {"script", "style"}  # their content is code or CSS, never translated


class Chunk(NamedTuple):
    text: str        # a slice of the input
    is_text: bool    # text between tags (translated); otherwise markup, an entity or raw text (kept)


class _Cutter(HTMLParser):
    """Records where each construct starts and whether it is translatable text."""

    def __init__(self, source: str):
        # convert_charrefs=False: entities are reported apart from the text, so they stay as written.
        super().__init__(convert_charrefs=False)
        self.source = source
        self.line_starts = [0] + [i + 1 for i, c in enumerate(source) if c == "\n"]
        self.starts: dict[int, bool] = {}  # offset -> whether the construct there is text
        self.raw_text: str | None = None  # inside <script> or <style>: its name

    def _mark(self, is_text: bool) -> None:
        line, column = self.getpos()  # where the construct being reported starts
        self.starts[self.line_starts[line - 1] + column] = is_text

    def handle_starttag(self, tag, attrs):
        self._mark(False)
        if tag in RAW_TEXT:
            self.raw_text = tag

    def handle_endtag(self, tag):
        self._mark(False)
        if tag == self.raw_text:
            self.raw_text = None

    def handle_data(self, data):
        self._mark(self.raw_text is None)

    def handle_startendtag(self, tag, attrs):
        self._mark(False)

    def handle_entityref(self, name):
        self._mark(False)

    def handle_charref(self, name):
        self._mark(False)

    def handle_comment(self, data):
        self._mark(False)

    def handle_decl(self, decl):
        self._mark(False)

    def handle_pi(self, data):
        self._mark(False)

    def unknown_decl(self, data):
        self._mark(False)


def html_chunks(source: str) -> list[Chunk]:
    """`source` as consecutive chunks of text and markup, alternating (adjacent markup is one chunk);
    "".join(c.text for c in chunks) == source."""
    cutter = _Cutter(source)
    cutter.feed(source)
    cutter.close()
    offsets = sorted(cutter.starts.keys() | {0})
    chunks: list[Chunk] = []
    for start, end in zip(offsets, offsets[1:] + [len(source)]):
        is_text = cutter.starts.get(start, False)
        if chunks and chunks[-1].is_text == is_text:  # text the parser reported in parts: one text
            chunks[-1] = Chunk(chunks[-1].text + source[start:end], is_text)
        elif end > start:
            chunks.append(Chunk(source[start:end], is_text))
    return chunks
