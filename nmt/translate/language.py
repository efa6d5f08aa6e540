"""Which language a text is in, among given candidates (nmt-serve's `source: auto`).

The identifier is py3langid (the maintained fork of langid.py: a naive Bayes model over byte
n-grams for 97 languages, shipped in its package, 4.5 MB, no download), chosen by measurement
(docs/benchmarks.md#language-identification): 5 999 of 6 000 test lines of the shared corpora
right among de, en, fr, cs and es, at 0.1-0.2 ms a line. It is a dependency of the `serve` extra, and
imported on the first call: translating from the command line never needs it.
"""

from __future__ import annotations

import copy
import functools
from typing import NamedTuple

from nmt.errors import NmtError


class Guess(NamedTuple):
    language: str      # an ISO 639-1 code, one of the candidates
    confidence: float  # 0-100: its probability among the candidates, in percent


@functools.lru_cache(maxsize=1)
def _full_model():
    """py3langid's model of all its languages (loading it takes about a second: kept)."""
    try:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier
    except ImportError:
        raise NmtError("language detection needs py3langid: pip install 'nmt[serve]'") from None
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


@functools.lru_cache(maxsize=8)
def _identifier(candidates: tuple[str, ...]):
    """The model restricted to `candidates`: a copy of the full one (its set_languages builds new arrays
    from the full model's, so a shallow copy leaves the full one as it was)."""
    full = _full_model()
    known = set(full.nb_classes)
    unknown = [code for code in candidates if code not in known]
    if unknown:
        raise NmtError(f"language detection: {', '.join(unknown)} not among the identifier's languages "
                       f"(codes such as {', '.join(sorted(known)[:6])}, ...)")
    model = copy.copy(full)
    model.set_languages(list(candidates))
    return model


def can_tell(candidates: list[str]) -> bool:
    """Whether detect_language can tell `candidates` apart: one needs no identifier; several must all
    be among its languages (loads it, about a second, once)."""
    codes = tuple(dict.fromkeys(candidates))
    if len(codes) < 2:
        return bool(codes)
    try:
        _identifier(codes)
    except NmtError:
        return False
    return True


def detect_language(texts: list[str], candidates: list[str]) -> list[list[Guess]]:
    """Per text, every candidate language with its confidence, best first. A text with nothing to
    go by (blank) gets each candidate at the same confidence, in the order given."""
    if not candidates:
        raise NmtError("language detection: no candidate languages")
    codes = tuple(dict.fromkeys(candidates))
    if len(codes) == 1:
        return [[Guess(codes[0], 100.0)] for _ in texts]
    model = _identifier(codes)
    found = []
    for text in texts:
        if not text.strip():
            found.append([Guess(code, round(100 / len(codes), 2)) for code in codes])
            continue
        ranked = [(lang, p) for lang, p in model.rank(text) if lang in codes]
        found.append([Guess(lang, round(100 * p, 2)) for lang, p in ranked])
    return found
