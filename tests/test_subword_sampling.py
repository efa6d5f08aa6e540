"""Subword regularization (tokenizer.sampling): a line's segmentation is drawn anew every epoch, the
same for the same (seed, epoch) whatever the blocks or processes, only among the vocabulary's
pieces; resuming a sampled run is exact, and sampling off changes nothing."""

import dataclasses

import datasets
import numpy as np
import pytest
from safetensors.torch import load_file

from conftest import TINY, reverse_recipe, run_cli
from nmt.config import SamplingConfig, TokenizerConfig, load_saved_config
from nmt.data import batching, prepare
from nmt.data.encode import write_tokenized
from nmt.data.readers import Pairs
from nmt.data.subword_sampling import epoch_draw, line_seeds
from nmt.data.tokenizer import UNK, Tokenizer
from nmt.errors import NmtError

SRC = [f"Ein Hund läuft im Park und {w} Männer spielen Fußball am Seeufer." for w in
       ("zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun")] * 8
TGT = [f"A dog runs in the park and {w} men play football by the lakeside." for w in
       ("two", "three", "four", "five", "six", "seven", "eight", "nine")] * 8
BOTH = SamplingConfig(sides="both", alpha=0.1, nbest_size=-1)


def drawn(tokenizer, folder, name, draw, blocks=1, procs=1):
    """The split's ids as `draw` segments it, written in `blocks` blocks by `procs` processes."""
    cut = np.linspace(0, len(SRC), blocks + 1).astype(int)
    parts = [Pairs(SRC[a:b], TGT[a:b]) for a, b in zip(cut[:-1], cut[1:])]
    write_tokenized(parts, tokenizer, folder / name, keep_text=False, procs=procs, draw=draw)
    ds = datasets.Dataset.from_file(str(folder / name))
    return list(ds["src_ids"]), list(ds["tgt_ids"])


@pytest.fixture(scope="module", params=["unigram", "bpe"])
def tokenizer(request, tmp_path_factory):
    """Every piece of the model in each side's vocabulary (min_freq 0): the draws are free."""
    folder = tmp_path_factory.mktemp(request.param)
    cfg = TokenizerConfig(vocab_size=120, model_type=request.param, min_freq=0)
    return Tokenizer.train(SRC, TGT, cfg, folder), folder


def test_a_lines_segmentation_differs_between_epochs_and_repeats_for_the_same_seed_and_epoch(tokenizer):
    tok, folder = tokenizer
    first = drawn(tok, folder, "e0.arrow", epoch_draw(BOTH, 1, 0))
    assert drawn(tok, folder, "e0-again.arrow", epoch_draw(BOTH, 1, 0)) == first
    second = drawn(tok, folder, "e1.arrow", epoch_draw(BOTH, 1, 1))
    other_seed = drawn(tok, folder, "s2.arrow", epoch_draw(BOTH, 2, 0))
    plain = (tok.encode_src(SRC), tok.encode_tgt(TGT))
    for side in (0, 1):
        assert first[side] != second[side] and first[side] != other_seed[side] and first[side] != plain[side]
        # each copy of a repeated line is drawn on its own: the draw is the line's, not the text's
        assert len({tuple(ids) for ids in first[side]}) > 8
    assert tok.decode(first[1]) == TGT and tok.decode(second[1]) == TGT  # other cuts of the same text


def test_the_draw_does_not_depend_on_blocks_or_processes(tokenizer):
    tok, folder = tokenizer
    draw = epoch_draw(BOTH, 3, 4)
    one = drawn(tok, folder, "one.arrow", draw)
    assert drawn(tok, folder, "blocks.arrow", draw, blocks=5) == one
    assert drawn(tok, folder, "procs.arrow", draw, blocks=5, procs=2) == one
    lines = np.arange(10, 20)
    assert (line_seeds(draw, 0, lines)[3:] == line_seeds(draw, 0, lines[3:])).all()
    assert (line_seeds(draw, 0, lines) != line_seeds(draw, 1, lines)).all()


def test_one_side_sampled_leaves_the_other_as_the_plain_tokenizer_cuts_it(tokenizer):
    tok, folder = tokenizer
    src, tgt = drawn(tok, folder, "target.arrow", epoch_draw(dataclasses.replace(BOTH, sides="target"), 1, 0))
    assert src == tok.encode_src(SRC) and tgt != tok.encode_tgt(TGT)
    assert epoch_draw(SamplingConfig(), 1, 0) is None  # off by default


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_sampled_pieces_stay_in_the_vocabulary(tmp_path, model_type):
    """The target vocabulary keeps only English pieces: a free draw would use German ones (<unk>)."""
    cfg = TokenizerConfig(vocab_size=150, min_freq=1, model_type=model_type)
    tok = Tokenizer.train(SRC, TGT, cfg, tmp_path)
    assert tok.tgt_vocab_size < tok.tgt.proc.get_piece_size()
    free = tok.tgt.proc.encode(TGT, enable_sampling=True, alpha=0.1, nbest_size=-1)
    assert any(tok.tgt.model_ids[i] == UNK for ids in free for i in ids)  # what the restriction prevents
    for epoch in range(3):
        src, tgt = drawn(tok, tmp_path, f"v{epoch}.arrow", epoch_draw(BOTH, 1, epoch))
        assert UNK not in sum(tgt, []) and UNK not in sum(src, [])
        assert tok.decode(tgt) == TGT


def test_nbest_size_that_leaves_one_segmentation_is_refused():
    with pytest.raises(NmtError, match=r"^tokenizer.sampling.nbest_size: 1 leaves one segmentation"):
        SamplingConfig(nbest_size=1)


def test_sampling_settings_make_no_new_tokenizer():
    plain, sampled = TokenizerConfig(), TokenizerConfig(sampling=BOTH)
    assert prepare.tokenizer_identity(plain) == prepare.tokenizer_identity(sampled)
    assert "sampling" not in prepare.tokenizer_identity(plain)


def test_the_epochs_batches_follow_the_sampled_lengths(tokenizer):
    tok, folder = tokenizer
    drawn(tok, folder, "lengths.arrow", epoch_draw(BOTH, 1, 0))
    ds = datasets.Dataset.from_file(str(folder / "lengths.arrow"))
    rows, _ = batching.filter_pairs(ds, max_len=100, max_ratio=3.0)
    plain = datasets.Dataset.from_dict({"src_ids": tok.encode_src(SRC), "tgt_ids": tok.encode_tgt(TGT)})
    loader, sampler = batching.make_loader(plain, max_tokens=200, seed=0, shuffle=True)
    loader.dataset.use(ds)
    sampler.use_data(ds, rows)
    tgt_lens = batching.lengths(ds)[1]
    for batch, rows_of_batch in zip(loader, sampler.batches()):
        assert batch.tgt_out.numel() <= 200 or len(rows_of_batch) == 1
        assert (batch.tgt_out != 0).sum() == (tgt_lens[rows_of_batch] + 1).sum()


STEPS = 30


@pytest.fixture(scope="module")
def sampled_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("sampled")
    recipe = reverse_recipe(root, 300, {"max_steps": STEPS, "eval_every": 10, "max_tokens": 300, "patience": 0,
                                        "keep_last": 10},
                            "tokenizer:\n  sampling:\n    sides: both\n    alpha: 0.1\n    nbest_size: -1\n")
    full = run_cli("nmt-train", str(recipe), "--run-dir", str(root / "full"), *TINY)
    assert full.returncode == 0, full.stderr[-2000:]
    return root, recipe, full


def test_resume_of_a_sampled_run_is_exact(sampled_run):
    root, recipe, full = sampled_run
    assert "epoch 2: sampled segmentation (both)" in full.stderr
    first = run_cli("nmt-train", str(recipe), "--run-dir", str(root / "part"), *TINY, "--set", "train.max_steps=13")
    assert first.returncode == 0, first.stderr[-2000:]
    second = run_cli("nmt-train", str(recipe), "--run-dir", str(root / "part"), "--resume",
                     "--set", f"train.max_steps={STEPS}")
    assert second.returncode == 0, second.stderr[-2000:]
    expected, got = (load_file(root / run / "last" / "model.safetensors") for run in ("full", "part"))
    assert all((got[name] == expected[name]).all() for name in expected)


def test_resume_refuses_changed_sampling(sampled_run):
    from nmt.train.run_checks import check_resume_config

    root, *_ = sampled_run
    changed = load_saved_config(root / "full" / "config.yaml", ["tokenizer.sampling.alpha=0.5"])
    with pytest.raises(NmtError, match=r"^tokenizer.sampling: the run was started with .* on --resume"):
        check_resume_config(root / "full", changed)


def test_sampling_off_trains_on_the_prepared_split():
    """Off, the epoch starter is the batch sampler's own: the loader reads the prepared ids."""
    from nmt.config import load_config
    from nmt.train.epochs import epoch_starter

    ds = datasets.Dataset.from_dict({"src_ids": [[5, 3]], "tgt_ids": [[6]]})
    loader, sampler = batching.make_loader(ds, max_tokens=10, seed=0, shuffle=True)
    cfg = load_config([], [])
    assert epoch_starter(cfg, None, loader, None) == sampler.use_epoch
