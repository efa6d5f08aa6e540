"""Sentence splitters measured on the shared corpora joined into paragraphs (issue 35, raw text in).

A paragraph is `--join` consecutive test lines joined with one space; the places where the lines
met are the true boundaries, those after a line that ends a sentence (., ? or !, maybe before a
closing quote or bracket: a verse ending in a comma or colon goes on in the next). A splitter's boundaries are the offsets where one of its sentences
starts (after the first). Reported per corpus and language:

    recall     true boundaries found / true boundaries
    precision  boundaries found that are true / boundaries found (a split inside a line counts
               against it: right for Multi30k, whose lines are single captions, but a lower bound
               for the Bible, whose verses often hold two sentences)
    exact      paragraphs split exactly back into their lines
    ms/par     wall time per paragraph, one thread

    PYTHONPATH=DIR_WITH_CANDIDATES python scripts/bench/sentence_splitters.py [--join 4] [--limit 1000]

The candidates are imported by name: those not installed are skipped with a note.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
CORPORA = [("multi30k", lang, SHARED / "multi30k" / f"test_2016_flickr.{lang}") for lang in ("de", "en", "fr", "cs")]
CORPORA += [("bible", lang, SHARED / "bible-es-en" / f"test.{lang}") for lang in ("es", "en")]
SENTENCE_END = re.compile(r"[.?!][\"'”’»)\]]*$")
PYSBD_LANGS = {"de", "en", "fr", "es"}  # pysbd has no Czech rules: cs falls back to English's


def starts_of(text: str, sentences) -> set[int]:
    """Offsets in `text` where each sentence but the first starts (sentences are substrings, in order)."""
    found, at = set(), 0
    for sentence in sentences:
        piece = sentence.strip()
        if not piece:
            continue
        at = text.index(piece, at)
        found.add(at)
        at += len(piece)
    return found - {0}


def splitters() -> dict:
    """name -> (version, function(text, lang) -> sentences) for the candidates installed."""
    found = {}

    def add(name, dist, make):
        try:
            found[name] = (importlib.metadata.version(dist), make())
        except ImportError as err:
            print(f"skipped {name}: {err}")

    def sentencex_():
        from sentencex import segment
        return lambda text, lang: list(segment(lang, text))

    def pysbd_():
        import pysbd
        made = {lang: pysbd.Segmenter(language=lang, clean=False) for lang in PYSBD_LANGS}
        return lambda text, lang: made.get(lang, made["en"]).segment(text)

    def blingfire_():
        from blingfire import text_to_sentences
        return lambda text, lang: text_to_sentences(text).split("\n")

    def syntok_():
        from syntok import segmenter
        return lambda text, lang: [text[s[0].offset - len(s[0].spacing):s[-1].offset + len(s[-1].value)]
                                   for p in segmenter.analyze(text) for s in p]

    add("sentencex", "sentencex", sentencex_)
    add("pysbd", "pysbd", pysbd_)
    add("blingfire", "blingfire", blingfire_)
    add("syntok", "syntok", syntok_)
    return found


def paragraphs(path: Path, join: int, limit: int) -> list[tuple[str, set[int]]]:
    """(paragraph, its true boundaries) for consecutive groups of `join` lines of `path`."""
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()[:limit]]
    out = []
    for start in range(0, len(lines) - join + 1, join):
        group = lines[start:start + join]
        text, cuts, at = " ".join(group), set(), 0
        for line in group[:-1]:
            at += len(line) + 1
            if SENTENCE_END.search(line):
                cuts.add(at)
        out.append((text, cuts))
    return out


def measure(split, lang: str, items) -> dict:
    true = found = right = exact = 0
    began = time.perf_counter()
    predicted = [starts_of(text, split(text, lang)) for text, _ in items]
    seconds = time.perf_counter() - began
    for (_, cuts), guess in zip(items, predicted):
        true, found, right, exact = true + len(cuts), found + len(guess), right + len(cuts & guess), exact + (cuts == guess)
    return {"recall": right / max(true, 1), "precision": right / max(found, 1), "exact": exact / len(items),
            "ms": 1000 * seconds / len(items)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--join", type=int, default=4, help="lines per paragraph")
    parser.add_argument("--limit", type=int, default=1000, help="test lines read per corpus")
    args = parser.parse_args()
    candidates = splitters()
    print("| splitter | " + " | ".join(f"{c} {lang}" for c, lang, _ in CORPORA) + " | mean exact | ms/par |")
    print("|---|" + "---|" * (len(CORPORA) + 2))
    data = {(c, lang): paragraphs(path, args.join, args.limit) for c, lang, path in CORPORA}
    for name, (version, split) in candidates.items():
        results = [measure(split, lang, data[(c, lang)]) for c, lang, _ in CORPORA]
        cells = [f"{r['recall']:.3f} / {r['precision']:.3f} / {r['exact']:.3f}" for r in results]
        mean = sum(r["exact"] for r in results) / len(results)
        ms = sum(r["ms"] for r in results) / len(results)
        print(f"| {name} {version} | " + " | ".join(cells) + f" | {mean:.3f} | {ms:.3f} |")


if __name__ == "__main__":
    main()
