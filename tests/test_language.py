"""Language detection (nmt/translate/language.py) on real lines sliced from the shared corpora."""

import pytest

from conftest import SHARED_DATA
from nmt.errors import NmtError

pytest.importorskip("py3langid", reason="language detection needs the serve extra: pip install -e '.[serve]'")
from nmt.translate.language import Guess, detect_language  # noqa: E402

FILES = {"de": "multi30k/test_2016_flickr.de", "en": "multi30k/test_2016_flickr.en",
         "fr": "multi30k/test_2016_flickr.fr", "cs": "multi30k/test_2016_flickr.cs", "es": "bible-es-en/test.es"}


def lines(lang: str, n: int = 8) -> list[str]:
    path = SHARED_DATA / FILES[lang]
    if not path.exists():
        pytest.skip(f"{path} is not available")
    return path.read_text(encoding="utf-8").splitlines()[100:100 + n]


@pytest.mark.parametrize("lang", sorted(FILES))
def test_real_lines_are_found_in_their_language(lang):
    candidates = sorted(FILES)
    for guesses in detect_language(lines(lang), candidates):
        assert guesses[0].language == lang
        assert sorted(g.language for g in guesses) == candidates
        assert [g.confidence for g in guesses] == sorted((g.confidence for g in guesses), reverse=True)
        assert 0 <= guesses[-1].confidence <= guesses[0].confidence <= 100


def test_candidates_restrict_the_answer():
    found = detect_language(lines("fr", 3) + ["", "   "], ["de", "en"])
    assert all({g.language for g in guesses} == {"de", "en"} for guesses in found)
    assert found[-1] == [Guess("de", 50.0), Guess("en", 50.0)]
    assert detect_language(["anything"], ["es"]) == [[Guess("es", 100.0)]]


def test_bad_candidates_are_one_line_errors():
    with pytest.raises(NmtError, match="src not among"):
        detect_language(["x"], ["de", "src"])
    with pytest.raises(NmtError, match="no candidate"):
        detect_language(["x"], [])
