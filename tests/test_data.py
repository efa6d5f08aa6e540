"""Tokenizer round trip, loading each data format, filtering and token batching."""

import json

import numpy as np
import pytest

from conftest import write_lines
from nmt.config import DataConfig, TokenizerConfig
from nmt.data import batching, splits
from nmt.data.encode import write_tokenized
from nmt.data.readers import Pairs
from nmt.data.tokenizer import BOS, EOS, PAD, UNK, Tokenizer
from nmt.errors import NmtError

SRC = ["Ein Hund läuft im Park.", "Zwei Männer spielen Fußball.", "Eine Frau liest ein Buch.",
       "Kinder baden im See.", "Ein Mann fährt Fahrrad."] * 20
TGT = ["A dog runs in the park.", "Two men play football.", "A woman reads a book.",
       "Children bathe in the lake.", "A man rides a bike."] * 20


def tokenized(pairs: Pairs, tokenizer: Tokenizer, folder):
    """A split tokenised as `prepare` stores it: an Arrow file, memory-mapped, with the text."""
    import datasets

    write_tokenized([pairs], tokenizer, folder / "split.arrow", keep_text=True, procs=1)
    return datasets.Dataset.from_file(str(folder / "split.arrow"))


@pytest.fixture
def corpus(tmp_path):
    write_lines(tmp_path / "train.de", SRC)
    write_lines(tmp_path / "train.en", TGT)
    return tmp_path


@pytest.mark.parametrize("joint", [True, False])
def test_tokenizer_round_trip_and_reload(tmp_path, joint):
    cfg = TokenizerConfig(joint=joint, vocab_size=60)
    tok = Tokenizer.train(SRC, TGT, cfg, tmp_path)
    ids = tok.encode_src(["Ein Hund läuft."])[0]
    assert ids[-1] == EOS and PAD not in ids and BOS not in ids
    assert tok.decode(tok.encode_tgt(TGT[:5])) == TGT[:5]
    again = Tokenizer.load(tmp_path)
    assert again.encode_tgt(TGT[:3]) == tok.encode_tgt(TGT[:3])
    assert sorted(p.name for p in tmp_path.glob("*.model")) == (
        ["spm.model"] if joint else ["spm.src.model", "spm.tgt.model"])


def test_each_side_keeps_the_pieces_its_training_text_uses(tmp_path):
    tok = Tokenizer.train(SRC, TGT, TokenizerConfig(vocab_size=80), tmp_path)
    proc = tok.tgt.proc  # the joint SentencePiece model, read without a vocabulary
    used = {p for line in TGT for p in proc.encode(line, out_type=str)}
    assert tok.tgt.pieces(list(range(4, tok.tgt_vocab_size))) == [
        proc.id_to_piece(i) for i in range(proc.get_piece_size()) if proc.id_to_piece(i) in used]
    assert tok.tgt_vocab_size == 4 + len(used) < proc.get_piece_size()
    assert UNK not in sum(tok.encode_tgt(TGT), []) and tok.decode(tok.encode_tgt(TGT)) == TGT
    # German pieces are not English ones: the source vocabulary gives them ids, the target side <unk>.
    assert UNK not in tok.encode_src(["Ein Hund läuft im Park."])[0]
    pieces = proc.encode("Ein Hund läuft im Park.", out_type=str)
    got = tok.encode_tgt(["Ein Hund läuft im Park."])[0]
    assert [i == UNK for i in got] == [p not in used for p in pieces] and UNK in got
    full = Tokenizer.train(SRC, TGT, TokenizerConfig(vocab_size=80, min_freq=0), tmp_path / "full")
    assert full.tgt_vocab_size == full.src_vocab_size == proc.get_piece_size()


def test_a_vocabulary_that_does_not_fit_its_model_is_refused(tmp_path):
    Tokenizer.train(SRC, TGT, TokenizerConfig(vocab_size=80), tmp_path)
    lines = (tmp_path / "vocab.tgt.txt").read_text().splitlines()
    (tmp_path / "vocab.tgt.txt").write_text("\n".join(lines[:6] + ["▁Zebra"] + lines[6:]) + "\n")
    with pytest.raises(NmtError, match=r"vocab.tgt.txt:7: '▁Zebra' is not a piece"):
        Tokenizer.load(tmp_path)


def test_text_pairs_by_prefix_template_and_paths(corpus):
    for spec in ("train", "train.{lang}", "train.de|train.en"):
        ds = splits.load_split(DataConfig(root=str(corpus), src_lang="de", tgt_lang="en"), spec)
        assert ds["src"][:2] == SRC[:2] and ds["tgt"][:2] == TGT[:2] and len(ds) == 100


def test_splits_in_memory_are_not_hashed_through_dill(corpus, monkeypatch):
    """datasets hashes a table given no fingerprint through dill, which fails where packages were
    installed with `pip install --target` (seen on the GPU machine); ours never asks it to."""
    import datasets.arrow_dataset

    def refuse(*args, **kwargs):
        raise AssertionError("datasets hashed a table")

    monkeypatch.setattr(datasets.arrow_dataset, "generate_fingerprint", refuse)
    ds = splits.load_split(DataConfig(root=str(corpus), src_lang="de", tgt_lang="en"), "train")
    assert ds["src"] == SRC and ds.features["src"].dtype == "string"


def test_tsv_jsonl_and_hub_formats_load_the_same_pairs(tmp_path):
    rows = list(zip(SRC[:5], TGT[:5]))
    (tmp_path / "train.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in rows))
    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"de": s, "en": t}) + "\n" for s, t in rows))
    hub = tmp_path / "hubdata"
    hub.mkdir()
    (hub / "train.jsonl").write_text(
        "".join(json.dumps({"translation": {"de": s, "en": t}}) + "\n" for s, t in rows))
    configs = [(DataConfig(root=str(tmp_path), format="tsv"), "train.tsv"),
               (DataConfig(root=str(tmp_path), format="jsonl"), "train.jsonl"),
               (DataConfig(format="hub", hub_name=str(hub)), "train")]
    for cfg, spec in configs:
        ds = splits.load_split(cfg, spec)
        assert list(zip(ds["src"], ds["tgt"])) == rows, cfg.format


def test_bad_files_give_one_line_errors(tmp_path, corpus):
    cfg = DataConfig(root=str(corpus))
    write_lines(corpus / "short.de", SRC[:3])
    write_lines(corpus / "short.en", TGT[:4])
    (corpus / "empty.de").write_text("")
    (corpus / "empty.en").write_text("")
    (corpus / "bad.de").write_bytes(b"gut\nschl\xe4cht\n")
    (corpus / "bad.en").write_text("good\nbad\n")
    cases = {"short": "short.de has 3 lines but", "empty": "empty.de: file is empty",
             "missing": "missing.de: file not found", "bad": "bad.de:2: not valid UTF-8 (byte 0xe4)"}
    for spec, message in cases.items():
        with pytest.raises(NmtError, match=message.replace(".", r"\.").replace("(", r"\(").replace(")", r"\)")):
            splits.load_split(cfg, spec)


def test_filtering_drops_and_counts_training_pairs(tmp_path):
    tok = Tokenizer.train(SRC, TGT, TokenizerConfig(vocab_size=60), tmp_path)
    src = ["Ein Hund.", "", "Ein Hund läuft im Park " * 30, "Ein Hund läuft im Park, ein Mann fährt Fahrrad.", "Ein Mann."]
    tgt = ["A dog.", "Empty source.", "long", "A.", ""]
    ds = tokenized(Pairs(src, tgt), tok, tmp_path)
    assert ds["src_ids"] == tok.encode_src(src) and ds["tgt_ids"] == tok.encode_tgt(tgt)
    rows, counts = batching.filter_pairs(ds, max_len=50, max_ratio=3.0)
    assert counts == {"kept": 1, "empty": 2, "too_long": 1, "bad_ratio": 1}
    assert ds.select(rows)["src"] == ["Ein Hund."]


def greedy_batches(src, tgt, max_tokens, seed, epoch):
    """The batching rule row by row, written plainly: the same pools and sort, then rows join the
    current batch while (its widest target + EOS) x (its rows) stays within `max_tokens`."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(tgt))
    pool = max(1, int(100 * max_tokens / max(1.0, float(np.mean(tgt)) + 1)))
    batches = []
    for start in range(0, len(tgt), pool):
        chunk = order[start:start + pool]
        batch, width = [], 0
        for i in chunk[np.lexsort((src[chunk], tgt[chunk]))].tolist():
            w = max(width, int(tgt[i]) + 1)
            if batch and w * (len(batch) + 1) > max_tokens:
                batches.append(batch)
                batch, w = [], int(tgt[i]) + 1
            batch.append(i)
            width = w
        batches.append(batch)
    rng.shuffle(batches)
    return batches


def test_token_batches_respect_the_budget_and_are_deterministic():
    rng = np.random.default_rng(0)
    tgt = rng.integers(1, 40, size=3000)
    src = tgt + rng.integers(0, 5, size=3000)
    batches = [b.tolist() for b in batching.token_batches(src, tgt, max_tokens=500, seed=1, epoch=0)]
    assert sorted(i for b in batches for i in b) == list(range(3000))
    for b in batches:
        assert max(tgt[i] + 1 for i in b) * len(b) <= 500
    real = sum(tgt + 1)
    padded = sum(max(tgt[i] + 1 for i in b) * len(b) for b in batches)
    assert padded / real < 1.1  # length bucketing keeps padding low
    assert batches == greedy_batches(src, tgt, 500, seed=1, epoch=0)
    assert batches != [b.tolist() for b in batching.token_batches(src, tgt, 500, seed=1, epoch=1)]
    for max_tokens in (1, 30, 41, 2000):  # a row wider than the budget, and budgets around the widths
        assert [b.tolist() for b in batching.token_batches(src, tgt, max_tokens, 3, 0)] == greedy_batches(
            src, tgt, max_tokens, 3, 0)


def test_the_sampler_batches_only_the_given_rows(tmp_path):
    tok = Tokenizer.train(SRC, TGT, TokenizerConfig(vocab_size=60), tmp_path)
    ds = tokenized(Pairs(SRC, TGT), tok, tmp_path)
    rows = np.arange(0, len(SRC), 3)
    loader, sampler = batching.make_loader(ds, max_tokens=60, seed=0, shuffle=True, rows=rows)
    seen = [i for b in sampler for i in b]
    assert sorted(seen) == rows.tolist()
    src, tgt = batching.lengths(ds)
    assert [b.tolist() for b in sampler.batches()] == [
        rows[b].tolist() for b in batching.token_batches(src[rows], tgt[rows], 60, 0, 0)]
    batch = next(iter(loader))
    first = sampler.batches()[0]
    assert batch.src_lengths.tolist() == src[first].tolist()


def test_collate_builds_decoder_input_and_output():
    batch = batching.collate([{"src_ids": [5, 6, EOS], "tgt_ids": [7, 8]}, {"src_ids": [9, EOS], "tgt_ids": [4]}])
    assert batch.src.tolist() == [[5, 6, EOS], [9, EOS, PAD]]
    assert batch.src_lengths.tolist() == [3, 2]
    assert batch.tgt_in.tolist() == [[BOS, 7, 8], [BOS, 4, PAD]]
    assert batch.tgt_out.tolist() == [[7, 8, EOS], [4, EOS, PAD]]
