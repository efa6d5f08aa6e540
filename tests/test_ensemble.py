"""Ensembles: the combination rule on scripted models, and an ensemble of one model or of a model
with itself decoding exactly as that model."""

import math
import shutil

import pytest
import torch

from conftest import run_cli
from nmt import Translator
from nmt.checkpoint import load_checkpoint, resolve
from nmt.config import DecodeConfig
from nmt.data.batching import pad
from nmt.data.tokenizer import BOS, EOS
from nmt.search import beam_search, greedy_search, log_probs
from nmt.translate.ensemble import Ensemble
from nmt.translate.inference import InferenceModel
from test_search import TableModel

A, B_, C = 4, 5, 6
# Model 1 prefers A, model 2 prefers B_ more strongly: the ensemble's mean log-probability prefers B_.
ONE = {BOS: {A: 0.6, B_: 0.3, C: 0.1}, A: {EOS: 1.0}, B_: {EOS: 1.0}, C: {EOS: 1.0}}
TWO = {BOS: {A: 0.2, B_: 0.7, C: 0.1}, A: {EOS: 1.0}, B_: {EOS: 1.0}, C: {EOS: 1.0}}


def test_step_scores_are_the_mean_of_the_members_log_softmaxes():
    one, two = TableModel(ONE), TableModel(TWO)
    ensemble = Ensemble([one, two])
    src, lengths = torch.full((2, 3), 6), torch.tensor([3, 2])
    enc = ensemble.encode(src, lengths)
    out = ensemble.step(torch.tensor([BOS, BOS]), ensemble.init_state(enc), enc)
    mean = (one.logp[BOS].log_softmax(-1) + two.logp[BOS].log_softmax(-1)) / 2
    torch.testing.assert_close(out.logits, mean.expand(2, -1))
    # by hand: log p(B_) = (log 0.3 + log 0.7) / 2; the search renormalises the geometric mean
    assert out.logits[0, B_].item() == pytest.approx((math.log(0.3) + math.log(0.7)) / 2)
    geo = {t: math.sqrt(ONE[BOS][t] * TWO[BOS][t]) for t in (A, B_, C)}
    renormalised = log_probs(out.logits, 1, DecodeConfig())
    assert renormalised[0, B_].item() == pytest.approx(math.log(geo[B_] / sum(geo.values())))
    torch.testing.assert_close(out.attention, torch.tensor([[1 / 3] * 3, [0.5, 0.5, 0.0]]))
    hyp = greedy_search(ensemble, src, lengths, DecodeConfig())[0]
    assert hyp.tokens == [B_]  # each member alone: A for one, B_ for two
    assert greedy_search(one, src, lengths, DecodeConfig())[0].tokens == [A]


@pytest.fixture(scope="module")
def trained(reverse_run):
    root, corpus, _ = reverse_run
    model, tokenizer, _, _ = load_checkpoint(root / "run")
    ids = tokenizer.encode_src((corpus / "test.src").read_text().splitlines()[:16])
    return InferenceModel(model), pad(ids), torch.tensor([len(i) for i in ids])


@pytest.mark.parametrize("copies", [1, 2])
def test_an_ensemble_of_one_model_or_of_itself_is_the_model(trained, copies):
    model, src, lengths = trained
    ensemble = Ensemble([model] * copies)
    for search, opts in ((greedy_search, DecodeConfig()), (beam_search, DecodeConfig(beam_size=4))):
        alone, together = search(model, src, lengths, opts), search(ensemble, src, lengths, opts)
        if search is beam_search:
            alone, together = [h[0] for h in alone], [h[0] for h in together]
        assert [h.tokens for h in together] == [h.tokens for h in alone]
        assert [h.score for h in together] == pytest.approx([h.score for h in alone], abs=1e-4)


def other_vocabulary(run, tmp_path):
    """A copy of the run's checkpoint whose target vocabulary lists two pieces the other way round."""
    ckpt = tmp_path / "other"
    shutil.copytree(resolve(run), ckpt)
    pieces = (ckpt / "vocab.tgt.txt").read_text().splitlines()
    pieces[4], pieces[5] = pieces[5], pieces[4]
    (ckpt / "vocab.tgt.txt").write_text("".join(p + "\n" for p in pieces))
    return ckpt


def test_translate_with_an_ensemble_and_refuse_another_vocabulary(reverse_run, tmp_path):
    root, corpus, _ = reverse_run
    run = str(root / "run")
    lines = (corpus / "test.src").read_text().splitlines()[:10]
    assert Translator.load([run, run]).translate(lines) == Translator.load(run).translate(lines)
    stdin = "\n".join(lines) + "\n"
    alone, pair = run_cli("nmt-translate", run, stdin=stdin), run_cli("nmt-translate", run, run, stdin=stdin)
    assert pair.returncode == 0 and pair.stdout == alone.stdout
    bad = run_cli("nmt-translate", run, str(other_vocabulary(run, tmp_path)), stdin=stdin)
    assert bad.returncode == 2 and "target vocabulary differs" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
