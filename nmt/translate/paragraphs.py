"""Raw text in, raw text out: paragraphs and HTML fragments split into sentences, decoded as one
batch and rebuilt around the translations with the text's own whitespace, newlines and markup.

Sentences come from sentencex (Wikimedia's segmenter: rules for ~300 languages, Czech included,
falling back along related languages to a generic rule for an unknown code), chosen by measurement
(docs/benchmarks.md#sentence-splitting): as accurate as pysbd on the shared corpora joined into
paragraphs and about a hundred times faster. A newline always ends a sentence: the output keeps
each line where the input had it. A piece with no letter or digit ("...", "|", "-") is kept as it
is: the model would invent words for it.

HTML goes through the standard library's parser (nmt/translate/html_text.py): only its text is
translated; tags, attributes, comments, entities and the insides of <script> and <style> are kept
byte for byte.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from sentencex import segment

from nmt.translate.html_text import Chunk, html_chunks

NEWLINE = re.compile(r"(\r\n|\r|\n)")


class Segmented(NamedTuple):
    """A text as sentences and the glue around them: glue[0] + sentences[0] + glue[1] + ... +
    sentences[-1] + glue[-1] == the text. Glue is whitespace, newlines and pieces without a letter
    or digit (for HTML, markup too); len(glue) == len(sentences) + 1."""
    sentences: list[str]
    glue: list[str]

    def join(self, translations: list[str]) -> str:
        """The text with each sentence replaced by its translation, the glue kept."""
        if len(translations) != len(self.sentences):
            raise ValueError(f"{len(translations)} translations for {len(self.sentences)} sentences")
        return self.glue[0] + "".join(t + g for t, g in zip(translations, self.glue[1:]))


def _add(pieces: list[str], glue: list[str], piece: str, translate: bool) -> None:
    """Append `piece` to a segmentation being built: its stripped core as a sentence, its
    whitespace as glue; all of it as glue where it is markup or has nothing to translate."""
    core = piece.strip()
    if not translate or not any(c.isalnum() for c in core):
        glue[-1] += piece
        return
    start = piece.index(core)
    glue[-1] += piece[:start]
    pieces.append(core)
    glue.append(piece[start + len(core):])


def segments(text: str, lang: str = "en", html: bool = False) -> Segmented:
    """`text` split into sentences (lines first: a newline always ends one) with the glue between
    them, by sentencex's rules for `lang` (an ISO 639 code; an unknown one gets the generic rule).
    `html`: `text` is an HTML fragment; only its text nodes are split, its markup is glue."""
    sentences, glue = [], [""]
    chunks = html_chunks(text) if html else [Chunk(text, True)]
    for chunk, is_text in chunks:
        if not is_text:
            _add(sentences, glue, chunk, False)
            continue
        for part in NEWLINE.split(chunk):
            if NEWLINE.fullmatch(part) or not part.strip():
                _add(sentences, glue, part, False)
            else:
                for piece in segment(lang, part):
                    _add(sentences, glue, piece, True)
    return Segmented(sentences, glue)


def translate_texts(translator, texts: list[str], html: bool = False, lang: str | None = None,
                    **settings) -> list[str]:
    """Each text (a paragraph, newlines allowed, or with `html` an HTML fragment) translated: its
    sentences, those of all `texts` together, decoded in one `translator.translate` call (one
    length-sorted batch), each put back where it was. `lang`: the source language for the
    splitter's rules (default: the model's data.src_lang); `settings`: decode settings, as
    `Translator.translate` takes them."""
    lang = lang or translator.cfg.data.src_lang
    parts = [segments(text, lang, html) for text in texts]
    flat = [sentence for part in parts for sentence in part.sentences]
    found = iter(translator.translate(flat, **settings) if flat else [])
    return [part.join([next(found) for _ in part.sentences]) for part in parts]


class LinePlan(NamedTuple):
    """Lines ready for one decoding call: `inputs`, each line of one sentence as it is (its
    translation unchanged by splitting), else its sentences; `split`, per line, its segmentation
    where it was split, else None; `lines`, per input, the index of the line it comes from (what a
    warning about it names)."""
    inputs: list[str]
    split: list[Segmented | None]
    lines: list[int]


def plan_lines(lines: list[str], lang: str) -> LinePlan:
    """nmt-translate's --split-sentences: a line that holds two sentences or more is replaced by
    them; any other line (one sentence, blank, symbols only) is decoded exactly as without splitting."""
    inputs, split, origins = [], [], []
    for index, line in enumerate(lines):
        found = segments(line, lang)
        several = len(found.sentences) > 1
        inputs.extend(found.sentences if several else [line])
        origins.extend([index] * (len(found.sentences) if several else 1))
        split.append(found if several else None)
    return LinePlan(inputs, split, origins)


def rebuild_lines(plan: LinePlan, outputs: list[str]) -> list[str]:
    """One output per line of `plan`, from the outputs of `plan.inputs` in order."""
    found, rebuilt = iter(outputs), []
    for part in plan.split:
        rebuilt.append(next(found) if part is None else part.join([next(found) for _ in part.sentences]))
    return rebuilt
