"""Language identifiers measured on the shared corpora's test lines (issue 35, `source: auto`).

Each test line of Multi30k test_2016_flickr (de, en, fr, cs) and of the Bible's test split (es, en)
is identified among those five languages only, as nmt-serve picks among its served source
languages. Reported: the share identified right per corpus and language, over all lines, and the
wall time per line (one thread, the model loaded before the clock starts).

    PYTHONPATH=DIR_WITH_CANDIDATES python scripts/bench/language_id.py [--limit 1000]

The candidates are imported by name: those not installed are skipped with a note.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
CORPORA = [("multi30k", lang, SHARED / "multi30k" / f"test_2016_flickr.{lang}") for lang in ("de", "en", "fr", "cs")]
CORPORA += [("bible", lang, SHARED / "bible-es-en" / f"test.{lang}") for lang in ("es", "en")]
LANGS = ["de", "en", "fr", "cs", "es"]


def py3langid_():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    model = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    model.set_languages(LANGS)
    return lambda line: model.classify(line)[0]


def langid_():
    from langid.langid import LanguageIdentifier, model

    found = LanguageIdentifier.from_modelstring(model, norm_probs=True)
    found.set_languages(LANGS)
    return lambda line: found.classify(line)[0]


def langdetect_():
    from langdetect import DetectorFactory, detect_langs

    DetectorFactory.seed = 0  # langdetect draws at random: a seed makes it repeatable

    def best(line):  # its 55 languages, the best of ours among its guesses
        guesses = [g.lang for g in detect_langs(line) if g.lang in LANGS]
        return guesses[0] if guesses else "?"
    return best


def lingua_(low: bool):
    def make():
        from lingua import IsoCode639_1, LanguageDetectorBuilder

        builder = LanguageDetectorBuilder.from_iso_codes_639_1(*(getattr(IsoCode639_1, c.upper()) for c in LANGS))
        detector = (builder.with_low_accuracy_mode() if low else builder).with_preloaded_language_models().build()
        return lambda line: detector.detect_language_of(line).iso_code_639_1.name.lower()
    return make


CANDIDATES = [("py3langid", "py3langid", py3langid_), ("langid", "langid", langid_),
              ("langdetect", "langdetect", langdetect_), ("lingua", "lingua-language-detector", lingua_(False)),
              ("lingua low-accuracy", "lingua-language-detector", lingua_(True))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=1000, help="test lines read per corpus")
    args = parser.parse_args()
    data = {(c, lang): [line.strip() for line in path.read_text(encoding="utf-8").splitlines()[:args.limit]]
            for c, lang, path in CORPORA}
    print("| identifier | " + " | ".join(f"{c} {lang}" for c, lang, _ in CORPORA) + " | all | ms/line |")
    print("|---|" + "---|" * (len(CORPORA) + 2))
    for name, dist, make in CANDIDATES:
        try:
            identify, version = make(), importlib.metadata.version(dist)
        except ImportError as err:
            print(f"skipped {name}: {err}")
            continue
        right, lines, seconds, cells = 0, 0, 0.0, []
        for key, texts in data.items():
            began = time.perf_counter()
            guesses = [identify(text) for text in texts]
            seconds += time.perf_counter() - began
            hits = sum(g == key[1] for g in guesses)
            right, lines = right + hits, lines + len(texts)
            cells.append(f"{hits / len(texts):.3f}")
        print(f"| {name} {version} | " + " | ".join(cells) + f" | {right / lines:.3f} | {1000 * seconds / lines:.3f} |")


if __name__ == "__main__":
    main()
