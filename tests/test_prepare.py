"""Prepare once: streamed reading, the SentencePiece sample, and the cache (reuse, rebuild, damage)."""

import json
import logging
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY, reverse_corpus, reverse_recipe, run_cli, write_lines
from nmt.config import from_dict
from nmt.data import cache, readers
from nmt.data.prepare import prepare, sample_pairs
from nmt.data.readers import Pairs
from nmt.errors import NmtError

# Lines that a careless reader gets wrong: CRLF, a byte-order mark, empty lines, a line separator
# (U+2028) inside a line, multi-byte characters that a chunk boundary may cut, a last line without \n.
SRC = ["Ein Hund läuft.", "", "Zwei Männer\u2028spielen.", "Eine Frau — liest 読む.", "Kinder baden."] * 9
TGT = ["A dog runs.", "Empty source.", "Two men\u2028play.", "A woman — reads 読む.", ""] * 9


def crlf_file(path, lines, bom=True, last_newline=False):
    text = "\r\n".join(lines) + ("\r\n" if last_newline else "")
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode("utf-8"))
    return path


def whole_file_lines(path):
    """An independent reading of a whole file: utf-8-sig, CRLF as LF, only \\n ends a line."""
    text = path.read_bytes().decode("utf-8-sig").replace("\r\n", "\n")
    return text.removesuffix("\n").split("\n")


def config(tmp_path, **data_values):
    values = {"root": str(tmp_path), "src_lang": "de", "tgt_lang": "en", "train": "train", "valid": "train",
              "cache_dir": str(tmp_path / "cache"), "num_proc": 2, **data_values}
    return from_dict({"data": values, "tokenizer": {"vocab_size": 60}})


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, None])
def test_lines_stream_in_chunks_exactly_as_the_whole_file_reads(tmp_path, chunk):
    path = crlf_file(tmp_path / "a.txt", SRC)
    blocks = list(readers.iter_lines(path, chunk))
    assert [line for b in blocks for line in b.lines] == whole_file_lines(path) == SRC
    assert [b.first for b in blocks] == list(np.cumsum([1] + [len(b.lines) for b in blocks[:-1]]))
    write_lines(tmp_path / "b.txt", ["x", ""])  # a final empty line is a line; the last \n ends it
    assert readers.read_lines(tmp_path / "b.txt") == ["x", ""]


@pytest.mark.parametrize("fmt", ["text", "tsv", "jsonl"])
def test_prepared_ids_equal_the_whole_file_path(tmp_path, monkeypatch, fmt):
    if fmt == "text":
        crlf_file(tmp_path / "train.de", SRC)
        crlf_file(tmp_path / "train.en", TGT, bom=False, last_newline=True)
        spec = "train"
        pairs = list(zip(whole_file_lines(tmp_path / "train.de"), whole_file_lines(tmp_path / "train.en")))
    elif fmt == "tsv":
        rows = [f"{s}\t{t}" for s, t in zip(SRC, TGT)]
        crlf_file(tmp_path / "train.tsv", [r if i % 7 else "" for i, r in enumerate(rows)])  # blank lines: skipped
        spec = "train.tsv"
        pairs = [tuple(line.split("\t")) for line in whole_file_lines(tmp_path / "train.tsv") if line]
    else:
        rows = [json.dumps({"translation": {"de": s, "en": t}} if i % 2 else {"de": s, "en": t}, ensure_ascii=False)
                for i, (s, t) in enumerate(zip(SRC, TGT))]
        crlf_file(tmp_path / "train.jsonl", rows[:5] + ["  "] + rows[5:])
        spec = "train.jsonl"
        pairs = [(r.get("translation", r)["de"], r.get("translation", r)["en"])
                 for r in map(json.loads, filter(str.strip, whole_file_lines(tmp_path / "train.jsonl")))]
    monkeypatch.setattr(readers, "CHUNK_BYTES", 50)  # many blocks: the worker processes share them out
    ready = prepare(config(tmp_path, format=fmt, train=spec, valid=spec))
    src, tgt = [p[0] for p in pairs], [p[1] for p in pairs]
    assert len(src) == len(SRC) - (7 if fmt == "tsv" else 0)
    assert list(ready.train["src_ids"]) == ready.tokenizer.encode_src(src)
    assert list(ready.train["tgt_ids"]) == ready.tokenizer.encode_tgt(tgt)
    assert list(ready.valid["src"]) == src and list(ready.valid["tgt"]) == tgt
    assert list(ready.valid["src_ids"]) == ready.tokenizer.encode_src(src)


def test_a_hub_dataset_is_prepared_from_its_own_arrow_cache(tmp_path):
    hub = tmp_path / "hub"
    hub.mkdir()
    rows = [{"translation": {"de": s, "en": t}} for s, t in zip(SRC, TGT)]
    (hub / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ready = prepare(config(tmp_path, format="hub", hub_name=str(hub), train_limit=30))
    assert list(ready.train["tgt_ids"]) == ready.tokenizer.encode_tgt(TGT[:30])
    assert list(ready.valid["src"]) == SRC and list(ready.valid["src_ids"]) == ready.tokenizer.encode_src(SRC)


@pytest.mark.parametrize("fmt, spec, content, message", [
    ("tsv", "t.tsv", "a\tb\nc\td\te\n", "t.tsv:2: expected 2 tab-separated fields (de, en), found 3"),
    ("tsv", "t.tsv", "\n\n", "t.tsv: no examples"),
    ("jsonl", "t.jsonl", '{"de": "a", "en": "b"}\n{"de": "a"}\n', "t.jsonl:2: a row has no 'en' entry"),
    ("jsonl", "t.jsonl", '{"de": "a", "en": "b"}\n\n{"de": "a", "en": \n', "t.jsonl:3: not valid JSON"),
    ("jsonl", "t.jsonl", '["a", "b"]\n', "t.jsonl:1: needs a 'translation' object or keys 'de' and 'en'"),
    ("text", "t", None, "t.de has 5 lines but"),
])
def test_bad_files_are_named_with_their_line(tmp_path, fmt, spec, content, message):
    if content is None:  # the mismatch is found after train_limit pairs, reading to the end
        write_lines(tmp_path / "t.de", ["a"] * 5)
        write_lines(tmp_path / "t.en", ["b"] * 4)
    else:
        (tmp_path / spec).write_text(content)
    with pytest.raises(NmtError, match=message.replace("(", r"\(").replace(")", r"\)")):
        prepare(config(tmp_path, format=fmt, train=spec, valid=spec, train_limit=2))
    assert not list((tmp_path / "cache").glob("splits/*")) and not list((tmp_path / "cache").glob("tmp-*"))


def test_the_sentencepiece_sample_is_uniform_in_order_and_independent_of_blocks():
    src = [f"s{i}" for i in range(1000)]
    cfg = from_dict({"tokenizer": {"max_sentences": 100}}).tokenizer
    for size in (7, 1000):
        blocks = (Pairs(src[i:i + size], src[i:i + size]) for i in range(0, 1000, size))
        sample = sample_pairs(blocks, cfg)  # joint: 100 lines = 50 pairs
        keys = np.random.default_rng(0).random(1000)  # the same keys, drawn at once
        assert sample.src == [src[i] for i in sorted(np.argsort(keys)[:50])]
    assert sample_pairs([Pairs(src[:40], src[:40]), Pairs(src[40:50], src[40:50])], cfg).src == src[:50]


def entries(tmp_path, kind):
    return sorted(p.name for p in (tmp_path / "cache" / kind).iterdir())


def test_the_cache_is_reused_and_rebuilt_only_when_its_inputs_change(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(cache, "RACY_NS", 0)  # remember digests of files however new (they are seconds old)
    reverse_corpus(tmp_path, n_train=300)
    cfg = config(tmp_path, src_lang="src", tgt_lang="tgt", valid="val")
    first = prepare(cfg)
    caplog.set_level(logging.INFO, logger="nmt")
    caplog.clear()
    again = prepare(cfg)
    assert "training SentencePiece" not in caplog.text and "tokenised" not in caplog.text
    assert list(again.train["src_ids"]) == list(first.train["src_ids"])
    tokenizers, splits = entries(tmp_path, "tokenizers"), entries(tmp_path, "splits")
    assert len(tokenizers) == 1 and len(splits) == 2
    # A filter setting: the same entries, and the kept rows an independent computation gives.
    tight = prepare(config(tmp_path, src_lang="src", tgt_lang="tgt", valid="val", max_len=5))
    lengths = [(len(s) - 1, len(t)) for s, t in zip(first.train["src_ids"], first.train["tgt_ids"])]
    assert tight.train_rows.tolist() == [i for i, (s, t) in enumerate(lengths)
                                         if 0 < s <= 5 and 0 < t <= 5 and max(s, t) <= 3 * min(s, t)]
    assert entries(tmp_path, "splits") == splits
    # Another tokenizer setting: a new tokenizer entry; new splits as its files differ.
    same = prepare(from_dict({"data": vars(cfg.data), "tokenizer": {"vocab_size": 50}}))  # the corpus has < 50
    assert len(entries(tmp_path, "tokenizers")) == 2 and entries(tmp_path, "splits") == splits
    assert same.tokenizer.encode_src(["w1 w2"]) == first.tokenizer.encode_src(["w1 w2"])
    prepare(from_dict({"data": vars(cfg.data), "tokenizer": {"vocab_size": 60, "joint": False}}))
    assert len(entries(tmp_path, "tokenizers")) == 3 and len(entries(tmp_path, "splits")) == 4
    # A changed data file (same size, mtime put back): a new tokenizer and training split.
    train = tmp_path / "train.src"
    stat, text = train.stat(), train.read_text()
    train.write_text(text.replace("w1", "w2", 1))
    os.utime(train, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    changed = prepare(cfg)
    assert len(entries(tmp_path, "tokenizers")) == 4 and len(set(entries(tmp_path, "splits")) - set(splits)) >= 3
    assert list(changed.train["src_ids"]) != list(first.train["src_ids"])


def test_a_damaged_entry_is_rebuilt_with_a_warning(tmp_path, caplog):
    reverse_corpus(tmp_path, n_train=300)
    cfg = config(tmp_path, src_lang="src", tgt_lang="tgt", valid="val")
    first = prepare(cfg)
    expected = list(first.train["tgt_ids"]), list(first.valid["tgt"])
    del first  # its files are about to be damaged in place, which a mapped reader must not see
    for damage in (lambda p: p.write_bytes(p.read_bytes()[:-100]), lambda p: p.with_name("meta.json").unlink(),
                   lambda p: p.write_bytes(p.read_bytes()[:40] + b"x" * (p.stat().st_size - 40))):
        for entry in (tmp_path / "cache" / "splits").iterdir():
            damage(entry / "data.arrow")
        caplog.clear()
        again = prepare(cfg)
        assert caplog.text.count("damaged cache entry") == 2 and "Traceback" not in caplog.text
        assert (list(again.train["tgt_ids"]), list(again.valid["tgt"])) == expected
        del again


def test_other_processes_never_prepare(tmp_path):
    reverse_corpus(tmp_path, n_train=100)
    cfg = config(tmp_path, src_lang="src", tgt_lang="tgt", valid="val")
    with pytest.raises(NmtError, match="prepared by the main process is not visible from process .* data.cache_dir"):
        prepare(cfg, may_build=False)
    prepare(cfg)
    assert prepare(cfg, may_build=False).counts["kept"] == 100


def wait_for(condition, proc, timeout=120):
    start = time.monotonic()
    while not condition():
        assert proc.poll() is None, "the preparation ended before it could be killed"
        assert time.monotonic() - start < timeout
        time.sleep(0.005)


def test_a_killed_preparation_leaves_nothing_a_later_run_uses(tmp_path):
    root = tmp_path / "r"
    recipe = reverse_recipe(root, 30_000, {"max_steps": 2, "eval_every": 2, "max_tokens": 500, "patience": 0})
    recipe.write_text(recipe.read_text().replace("data:\n", f"data:\n  cache_dir: {tmp_path / 'cache'}\n"
                                                             "  valid_limit: 20\n", 1))
    cache_dir = tmp_path / "cache"
    built = lambda kind: list(cache_dir.glob(f"{kind}/*"))
    tmp = lambda: list(cache_dir.glob("tmp-*/*"))
    exe = os.path.join(os.path.dirname(sys.executable), "nmt-prepare")
    # Killed while SentencePiece trains, then while the training split is tokenised.
    for ready in (lambda: tmp(), lambda: built("tokenizers") and tmp()):
        proc = subprocess.Popen([exe, str(recipe), *TINY[:2]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(ready, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not built("splits") and tmp()
    assert len(built("tokenizers")) == 1
    first = run_cli("nmt-train", str(recipe), "--run-dir", str(tmp_path / "first"), *TINY)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "left by a preparation that did not finish" in first.stderr and "read and tokenised" in first.stderr
    assert not list(cache_dir.glob("tmp-*")) and len(built("splits")) == 2
    # The next run maps the same files and trains to the same weights.
    second = run_cli("nmt-train", str(recipe), "--run-dir", str(tmp_path / "second"), *TINY)
    assert second.returncode == 0 and "tokenised" not in second.stderr, second.stderr[-3000:]
    weights = [load_file(tmp_path / run / "last" / "model.safetensors") for run in ("first", "second")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_only_resume_takes_the_run_directorys_tokenizer(tmp_path):
    """A run killed before its first checkpoint leaves its tokenizer; a new run with other tokenizer
    settings must not take it, a resumed one must."""
    reverse_corpus(tmp_path, n_train=300)
    separate = from_dict({"data": vars(config(tmp_path, src_lang="src", tgt_lang="tgt", valid="val").data),
                          "tokenizer": {"vocab_size": 60, "joint": False}})
    joint = config(tmp_path, src_lang="src", tgt_lang="tgt", valid="val")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    left = prepare(separate, run_dir).tokenizer  # the killed run's copy
    resumed = prepare(joint, run_dir, resume=True).tokenizer
    assert resumed.files.keys() == left.files.keys() and "spm.src.model" in resumed.files
    expected = {name: path.read_bytes() for name, path in prepare(joint).tokenizer.files.items()}
    fresh = prepare(joint, run_dir).tokenizer
    assert {name: path.read_bytes() for name, path in fresh.files.items()} == expected


def test_a_new_run_refuses_a_run_directory_with_leftovers(tmp_path):
    recipe = reverse_recipe(tmp_path, 100, {"max_steps": 1, "eval_every": 1, "max_tokens": 300, "patience": 0})
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "spm.model").write_bytes(b"the tokenizer of a run killed before its first checkpoint")
    (run_dir / "notes.txt").write_text("the user's own\n")
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    result = run_cli("nmt-train", str(recipe), "--run-dir", str(run_dir), *TINY)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {run_dir} holds files of a run that saved no checkpoint to --resume from (spm.model); "
        "remove them or choose another --run-dir"]
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before  # nothing written, nothing lost


def test_the_same_files_with_the_sides_swapped_are_another_cache_entry(tmp_path):
    """The key covers which file is which side and the languages: a model trained the other way
    round on the same files never reads the forward one's prepared data."""
    write_lines(tmp_path / "train.de", [f"de{i} Satz {i}." for i in range(40)])
    write_lines(tmp_path / "train.en", [f"en{i} sentence {i}." for i in range(40)])
    forward = prepare(config(tmp_path))
    backward = prepare(config(tmp_path, src_lang="en", tgt_lang="de"))
    by_paths = prepare(config(tmp_path, train="train.en|train.de", valid="train.en|train.de"))  # languages as forward
    for ready, (src, tgt) in ((forward, ("de", "en")), (backward, ("en", "de")), (by_paths, ("en", "de"))):
        src_lines, tgt_lines = (readers.read_lines(tmp_path / f"train.{lang}") for lang in (src, tgt))
        assert list(ready.train["src_ids"]) == ready.tokenizer.encode_src(src_lines)
        assert list(ready.train["tgt_ids"]) == ready.tokenizer.encode_tgt(tgt_lines)
        assert list(ready.valid["src"]) == src_lines
    assert len({forward.train_key, backward.train_key, by_paths.train_key}) == 3
