"""Sampling: truncation checked by hand, sample frequencies against the truncated distribution,
top-k 1 against greedy search, and reproducibility for a seed."""

import math

import pytest
import torch

from conftest import run_cli
from nmt import Translator
from nmt.config import DecodeConfig
from nmt.data.tokenizer import BOS, EOS
from nmt.errors import NmtError
from nmt.search import sample, truncate
from test_search import TableModel

A, B_, C = 4, 5, 6
FIRST = {EOS: 0.05, A: 0.5, B_: 0.3, C: 0.15}  # the first token's distribution; then EOS
TABLE = {BOS: FIRST, A: {EOS: 1.0}, B_: {EOS: 1.0}, C: {EOS: 1.0}}


def expected(keep: dict[int, float], temperature: float = 1.0) -> dict[int, float]:
    """The independent computation: p^(1/T) over the kept tokens, renormalised."""
    powered = {t: p ** (1 / temperature) for t, p in keep.items()}
    return {t: p / sum(powered.values()) for t, p in powered.items()}


CASES = [  # (temperature, top_k, top_p, the tokens that must survive)
    (1.0, 0, 1.0, [EOS, A, B_, C]),
    (1.0, 2, 1.0, [A, B_]),
    (1.0, 0, 0.75, [A, B_]),  # mass before B_ is 0.5 < 0.75, before C 0.8
    (1.0, 3, 0.9, [A, B_, C]),  # 0.5 + 0.3 < 0.9: C stays, EOS (0.95 before it) goes
    (2.0, 0, 1.0, [EOS, A, B_, C]),
    (0.5, 3, 1.0, [A, B_, C]),
    (1.0, 2, 0.6, [A]),  # top-k's two renormalised (0.625, 0.375): the mass before B_ reaches 0.6
]


@pytest.mark.parametrize("temperature, top_k, top_p, kept", CASES)
def test_truncate_keeps_the_right_tokens_renormalised(temperature, top_k, top_p, kept):
    lp = TableModel(TABLE).logp[BOS][None]  # (1, V)
    tempered = expected(FIRST, temperature)  # temperature first, then truncation of the tempered distribution
    want = expected({t: tempered[t] for t in kept})
    got = truncate(lp, temperature, top_k, top_p).exp()[0]
    assert got.sum().item() == pytest.approx(1.0)
    for token in range(7):
        assert got[token].item() == pytest.approx(want.get(token, 0.0), abs=1e-6)


@pytest.mark.parametrize("temperature, top_k, top_p, kept", CASES)
def test_sample_frequencies_match_the_truncated_distribution(temperature, top_k, top_p, kept):
    n = 20000
    opts = DecodeConfig(min_len=0, temperature=temperature, top_k=top_k, top_p=top_p)
    hyps = sample(TableModel(TABLE), torch.full((1, 3), 6), torch.tensor([3]), opts, n=n)[0]
    first = [h.tokens[0] if h.tokens else EOS for h in hyps]
    tempered = expected(FIRST, temperature)
    want = expected({t: tempered[t] for t in kept})
    for token in (EOS, A, B_, C):
        p = want.get(token, 0.0)
        freq = first.count(token) / n
        assert abs(freq - p) <= 5 * math.sqrt(p * (1 - p) / n) + 1e-12, (token, freq, p)
    # the score is the model's own log-probability of the sample, untempered and untruncated
    for h in hyps[:50]:
        want_score = math.log(FIRST[h.tokens[0]]) if h.tokens else math.log(FIRST[EOS])
        assert h.score == pytest.approx(want_score, abs=1e-5)


def test_top_k_one_equals_greedy(reverse_run):
    root, corpus, _ = reverse_run
    lines = (corpus / "test.src").read_text().splitlines()[:20]
    translator = Translator.load(root / "run", device="cpu")
    greedy = translator.translate_hyps(lines, beam_size=1)
    drawn = translator.translate_hyps(lines, sampling=True, top_k=1, temperature=3.0, seed=7)
    assert [h[0].tokens for h in drawn] == [h[0].tokens for h in greedy]
    assert [h[0].score for h in drawn] == pytest.approx([h[0].score for h in greedy], abs=1e-4)


def test_a_seed_gives_the_same_samples_and_nbest_draws_n(reverse_run):
    root, corpus, _ = reverse_run
    lines = "\n".join((corpus / "test.src").read_text().splitlines()[:15]) + "\n"
    args = [str(root / "run"), "--sampling", "--temperature", "2.0", "--nbest", "3", "--batch-size", "4"]
    runs = [run_cli("nmt-translate", *args, "--seed", seed, stdin=lines) for seed in ("3", "3", "4")]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr
    assert runs[0].stdout == runs[1].stdout
    assert runs[0].stdout != runs[2].stdout  # 45 samples at temperature 2: a collision is not credible
    rows = [r.split("\t") for r in runs[0].stdout.splitlines()]
    assert [int(r[0]) for r in rows] == [i for i in range(15) for _ in range(3)]
    bad = run_cli("nmt-translate", str(root / "run"), "--top-p", "0.9", stdin="w1\n")
    assert bad.returncode == 2 and "add --sampling" in bad.stderr and len(bad.stderr.splitlines()) == 1
    bad = run_cli("nmt-translate", str(root / "run"), "--sampling", "--top-p", "1.5", stdin="w1\n")
    assert bad.returncode == 2 and "--top-p" in bad.stderr


def test_top_k_keeps_exactly_k_among_ties():
    tied = torch.log(torch.tensor([[0.3, 0.3, 0.3, 0.1]]))
    for k in (1, 2, 3):
        kept = truncate(tied, top_k=k).exp()[0]
        assert int((kept > 0).sum()) == k
        assert kept.sum().item() == pytest.approx(1.0)


def test_too_small_a_temperature_is_refused_in_one_line(reverse_run):
    root, _, _ = reverse_run
    translator = Translator.load(root / "run", device="cpu")
    for value in (1e-40, 0.0, -1.0):
        with pytest.raises(NmtError, match="^temperature: .* below the minimum"):
            translator.translate(["w1 w2"], sampling=True, temperature=value)
    bad = run_cli("nmt-translate", str(root / "run"), "--sampling", "--temperature", "1e-40", stdin="w1\n")
    assert bad.returncode == 2 and "temperature" in bad.stderr and len(bad.stderr.splitlines()) == 1
