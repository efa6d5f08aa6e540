"""Target-prefix decoding: forced tokens on hand-written tables, then on the trained reverse model."""

import math
import re

import pytest
import torch

from nmt.config import DecodeConfig
from nmt.data.tokenizer import BOS, EOS
from nmt.errors import NmtError
from nmt.search import FREE, beam_search, greedy_search, sample
from nmt.translate.translator import Translator

from conftest import run_cli, write_lines
from test_search import TRAP, A, B_, C, TableModel

# EOS is the likely choice at every step: a forced row must still go on through its whole prefix.
EAGER = {BOS: {EOS: 0.9, A: 0.1}, A: {EOS: 0.99, B_: 0.01}, B_: {C: 1.0}, C: {EOS: 1.0}}


def run(strategy: str, model, rows: list[list[int]], opts: DecodeConfig, n: int = 1):
    """Each sentence's n-best (or n samples), one sentence per prefix in `rows` ([]: none)."""
    width = max(len(r) for r in rows)
    # (B, P) forced tokens padded with FREE, as decode_ids builds them
    prefix = torch.tensor([r + [FREE] * (width - len(r)) for r in rows]) if width else None
    src, lengths = torch.full((len(rows), 3), 6), torch.full((len(rows),), 3)
    if strategy == "greedy":
        return [[h] for h in greedy_search(model, src, lengths, opts, prefix=prefix)]
    if strategy == "beam":
        return beam_search(model, src, lengths, opts, nbest=n, prefix=prefix)
    return sample(model, src, lengths, opts, n=n, prefix=prefix)


@pytest.mark.parametrize("strategy", ["greedy", "beam", "sampling"])
def test_a_prefix_is_forced_and_scored_even_where_eos_is_likely(strategy):
    opts = DecodeConfig(beam_size=2, length_penalty=0.0, min_len=0, sampling=strategy == "sampling")
    best = run(strategy, TableModel(EAGER), [[A, B_]], opts)[0][0]
    assert best.tokens == [A, B_, C] and best.finished
    assert best.score == pytest.approx(math.log(0.1 * 0.01 * 1.0 * 1.0))


def test_the_search_continues_from_the_prefix():
    # Forced to A, the best continuation is EOS (0.4), though C and B_ lead on (0.3 each).
    opts = DecodeConfig(beam_size=3, length_penalty=0.0)
    hyps = run("beam", TableModel(TRAP), [[A]], opts, n=3)[0]
    assert [h.tokens for h in hyps] == [[A], [A, C], [A, B_]]
    assert [h.score for h in hyps] == pytest.approx([math.log(0.6 * 0.4), math.log(0.6 * 0.3 * 1.0),
                                                     math.log(0.6 * 0.3 * 0.9)])


@pytest.mark.parametrize("strategy", ["greedy", "beam", "sampling"])
def test_sentences_with_and_without_prefixes_share_a_batch(strategy):
    opts = DecodeConfig(beam_size=3, length_penalty=1.0, min_len=0, sampling=strategy == "sampling", seed=7)
    rows = [[A, B_], [], [B_], [A]]
    n = 1 if strategy == "greedy" else 2
    together = run(strategy, TableModel(EAGER), rows, opts, n)
    for row, hyps in zip(rows, together):
        alone = run(strategy, TableModel(EAGER), [row], opts, n)[0]
        assert [h.tokens for h in hyps] == [h.tokens for h in alone], row
        assert [h.score for h in hyps] == pytest.approx([h.score for h in alone]), row
        assert all(h.tokens[:len(row)] == row for h in hyps)


def test_a_prefix_longer_than_the_cap_is_kept_whole_and_eos_follows():
    loop = {BOS: {A: 1.0}, A: {A: 0.9, EOS: 0.1}}
    opts = DecodeConfig(beam_size=2, length_penalty=0.0, max_len_a=0.0, max_len_b=3)
    for strategy in ("greedy", "beam"):
        best = run(strategy, TableModel(loop), [[A] * 5], opts)[0][0]
        assert best.tokens == [A] * 5 and not best.finished, strategy  # EOS forced at the raised cap
        assert best.score == pytest.approx(math.log(0.9 ** 4 * 0.1)), strategy


def test_min_len_counts_the_prefix():
    # min_len 2: after the one-piece prefix A, EOS is still forbidden at step 1.
    opts = DecodeConfig(beam_size=1, length_penalty=0.0, min_len=2)
    best = run("greedy", TableModel(TRAP), [[A]], opts)[0][0]
    assert best.tokens in ([A, C], [A, B_])


# The trained reverse model: "w1 w2 w3" -> "v3 v2 v1".
LINES = ["w1 w2 w3", "w4 w5 w6 w7", "w8 w9", "w2 w2 w5 w1"]
PREFIXES = ["v9", "", "v9 v8 v7", "v1"]  # wrong first words, none, and a right one


@pytest.fixture(scope="module")
def translator(reverse_run):
    root, _, _ = reverse_run
    return Translator.load(root / "run", device="cpu")


@pytest.mark.parametrize("settings", [dict(beam_size=1), dict(beam_size=4, length_penalty=0.0),
                                      dict(sampling=True, seed=3)])
def test_the_output_starts_with_the_prefix_and_nmt_score_agrees(translator, settings):
    found = translator.translate_hyps(LINES, prefixes=PREFIXES, **settings)
    texts = translator.tokenizer.decode([hyps[0].tokens for hyps in found])
    for text, prefix in zip(texts, PREFIXES):
        assert text.startswith(prefix), (text, prefix)
    assert texts[1] == "v7 v6 v5 v4"  # no prefix: the plain translation
    scored = translator.score(LINES, texts)
    assert [s.total for s in scored] == pytest.approx([hyps[0].score for hyps in found], abs=1e-4)


@pytest.mark.parametrize("settings", [dict(beam_size=1), dict(beam_size=3), dict(sampling=True, seed=5)])
def test_each_line_decodes_as_it_would_alone(translator, settings):
    together = translator.translate_hyps(LINES, nbest=2 if settings.get("beam_size") != 1 else 1,
                                         prefixes=PREFIXES, **settings)
    for line, prefix, hyps in zip(LINES, PREFIXES, together):
        alone = translator.translate_hyps([line], nbest=len(hyps), prefixes=[prefix], **settings)[0]
        assert [h.tokens for h in hyps] == [h.tokens for h in alone]
        assert [h.score for h in hyps] == pytest.approx([h.score for h in alone], abs=1e-5)


def test_prefixes_must_match_the_lines(translator):
    with pytest.raises(NmtError, match="prefixes: 1 given for 2 lines"):
        translator.translate(["w1", "w2"], prefixes=["v1"])


def test_a_prefix_word_outside_the_target_vocabulary_is_refused_naming_it(translator):
    """Forced as <unk>, the word would be missing from the output, which must start with its prefix."""
    assert translator.unspellable(["v1 v2", ""]) is None
    assert translator.unspellable(["v1", "v2 Ωmega v1"]) == (1, "Ωmega")
    with pytest.raises(NmtError, match="^line 2: its prefix's word 'Ωmega' is outside the target vocabulary"):
        translator.translate(["w1", "w2 w3"], prefixes=["v1", "v2 Ωmega"])


def test_cli_prefix_file(reverse_run, tmp_path):
    root, _, _ = reverse_run
    src = write_lines(tmp_path / "in.txt", LINES)
    prefix_file = write_lines(tmp_path / "prefix.txt", PREFIXES)
    done = run_cli("nmt-translate", str(root / "run"), "-i", str(src), "--prefix-file", str(prefix_file),
                   "--device", "cpu", "--chunk-size", "3")  # the prefix file's chunks line up with the input's
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == Translator.load(root / "run", device="cpu").translate(LINES, prefixes=PREFIXES)
    short = write_lines(tmp_path / "short.txt", PREFIXES[:3])
    for flag, given in ((short, 3), (write_lines(tmp_path / "long.txt", PREFIXES + ["v1"]), 5)):
        failed = run_cli("nmt-translate", str(root / "run"), "-i", str(src), "--prefix-file", str(flag),
                         "--device", "cpu")
        assert failed.returncode == 2
        assert failed.stderr.strip() == (f"error: --prefix-file {flag}: {given} lines but the input has 4; "
                                         "give one prefix per input line (an empty line for none)")


# 400: outside the request's schema (a prefix of another shape than the text); 422: within it, but
# another count than the sentences', or a word the model cannot spell (no JSON Schema can say either).
PREFIX_REFUSED = [
    ({"text": ["w1", "w2"], "prefix": ["v1"]}, 422, "prefix: 1 given for 2 sentences; give one per sentence"),
    ({"text": ["w1", "w2"], "prefix": "v1"}, 400, 'prefix: expected a list of 2 strings, as text is, got "v1"'),
    ({"text": "w1", "prefix": ["v1"]}, 400, 'prefix: expected a string, as text is one, got ["v1"]'),
    ({"text": ["w1"], "prefix": [3]}, 400, "prefix[0]: expected a string, got 3"),
    ({"text": ["w1", "w2"], "prefix": ["", "v2 Ωmega"]}, 422, "prefix[1]: the word 'Ωmega' is outside the model's"),
    ({"text": "w1", "prefix": "Ωmega"}, 422, "prefix: the word 'Ωmega' is outside the model's target vocabulary"),
]


def test_nmt_serve_takes_a_prefix_per_sentence(served, translator):
    pytest.importorskip("fastapi")
    from conftest import call

    status, answer = call(served.url + "/translate", {"text": LINES, "prefix": PREFIXES, "beam_size": 3})
    assert status == 200
    assert [t["text"] for t in answer["translations"]] == translator.translate(LINES, prefixes=PREFIXES, beam_size=3)
    status, answer = call(served.url + "/translate", {"text": LINES[0], "prefix": "v9 v8"})
    assert status == 200 and answer["translations"][0]["text"].startswith("v9 v8")
    for body, status, message in PREFIX_REFUSED:
        got, answer = call(served.url + "/translate", body)
        assert (got, answer["detail"][:len(message)]) == (status, message)


def test_the_attention_budget_counts_a_long_prefix(translator):
    pytest.importorskip("fastapi")
    from nmt.serve.answer import attention_size
    from nmt.serve.schema import Sentence, Settings

    settings = Settings(beam_size=1, nbest=1, length_penalty=None, attention=True, alignments=False)
    plain = attention_size(translator, [Sentence("w1 w2")], settings)
    long_prefix = attention_size(translator, [Sentence("w1 w2", " ".join(["v1"] * 50))], settings)
    assert long_prefix > plain


# "w1 w2" is 5 pieces with </s>: its output length cap is 1.5 x 5 + 10 = 17, room for 16 prefix pieces.
WITHIN_CAP, PAST_CAP = " ".join(["v1"] * 8), " ".join(["v1"] * 9)  # 16 and 18 pieces
PAST_CAP_REASON = "18 pieces, more than the 16 its source allows (the output length cap"


def test_a_prefix_longer_than_its_sources_length_cap_allows_is_refused(translator, reverse_run, tmp_path):
    """Forced past the cap, a prefix would raise it: its cost would grow with the prefix alone."""
    assert translator.translate(["w1 w2"], prefixes=[WITHIN_CAP]) == [WITHIN_CAP]
    with pytest.raises(NmtError, match=f"^line 2: its prefix has {re.escape(PAST_CAP_REASON)}"):
        translator.translate(["w1", "w1 w2"], prefixes=["", PAST_CAP])
    root, _, _ = reverse_run
    src = write_lines(tmp_path / "in.txt", ["w3 w4 w5", "w1 w2"])
    prefix_file = write_lines(tmp_path / "prefix.txt", ["v5", PAST_CAP])
    failed = run_cli("nmt-translate", str(root / "run"), "-i", str(src), "--prefix-file", str(prefix_file),
                     "--device", "cpu")
    assert failed.returncode == 2 and failed.stdout == ""
    assert failed.stderr.startswith(f"error: line 2: its prefix has {PAST_CAP_REASON}")
    assert len(failed.stderr.strip().splitlines()) == 1


def test_nmt_serve_refuses_a_prefix_longer_than_its_sources_length_cap_allows(served):
    pytest.importorskip("fastapi")
    from conftest import call

    status, answer = call(served.url + "/translate", {"text": "w1 w2", "prefix": WITHIN_CAP})
    assert (status, answer["translations"][0]["text"]) == (200, WITHIN_CAP)
    for body, name in (({"text": "w1 w2", "prefix": PAST_CAP}, "prefix"),
                       ({"text": ["w3", "w1 w2"], "prefix": ["v3", PAST_CAP]}, "prefix[1]")):
        status, answer = call(served.url + "/translate", body)
        assert status == 422 and answer["detail"].startswith(f"{name}: {PAST_CAP_REASON}"), answer
        assert "\n" not in answer["detail"]
