"""Forced decoding: batched scores against one-sentence-at-a-time teacher forcing through `step`;
every pair, empty ones included, gets its line in order."""

import pytest
import torch

from conftest import run_cli, write_lines
from nmt import Translator
from nmt.data.tokenizer import BOS, EOS


def step_by_step(translator, src: str, tgt: str) -> float:
    """The independent computation: Seq2Seq.step over the reference, one sentence, no batching."""
    model, tok = translator.model, translator.tokenizer
    src_ids = tok.encode_src([src])[0]
    out_ids = tok.encode_tgt([tgt])[0] + [EOS]
    with torch.inference_mode():
        enc = model.encode(torch.tensor([src_ids]), torch.tensor([len(src_ids)]))
        state, prev, total = model.init_state(enc), BOS, 0.0
        for token in out_ids:
            out = model.step(torch.tensor([prev]), state, enc)
            total += out.logits.log_softmax(-1)[0, token].item()
            state, prev = out.state, token
    return total


def pairs(corpus):
    src = (corpus / "test.src").read_text().splitlines()[:12]
    tgt = (corpus / "test.tgt").read_text().splitlines()[:12]
    tgt[3] = " ".join(reversed(tgt[3].split()))  # a bad translation among good ones
    return src[:5] + ["", "w1 w2"] + src[5:], tgt[:5] + ["v1", ""] + tgt[5:]


def test_batched_scores_equal_teacher_forcing_one_sentence_at_a_time(reverse_run):
    root, corpus, _ = reverse_run
    translator = Translator.load(root / "run", device="cpu")
    src, tgt = pairs(corpus)
    scores = translator.score(src, tgt, batch_size=4)
    assert len(scores) == len(src)
    for s, t, got in zip(src, tgt, scores):
        assert got.total == pytest.approx(step_by_step(translator, s, t), abs=1e-4)
        assert got.tokens == len(translator.tokenizer.encode_tgt([t])[0]) + 1
    assert scores[3].per_token < min(scores[i].per_token for i in (0, 1, 2, 4))


def test_cli_keeps_one_line_per_pair_from_files_and_stdin(reverse_run, tmp_path):
    root, corpus, _ = reverse_run
    src, tgt = pairs(corpus)
    want = Translator.load(root / "run", device="cpu").score(src, tgt)
    s, t = write_lines(tmp_path / "s.txt", src), write_lines(tmp_path / "t.txt", tgt)
    out = run_cli("nmt-score", str(root / "run"), "--src", str(s), "--tgt", str(t), "-o", str(tmp_path / "o.tsv"),
                  "--batch-size", "3", "--chunk-size", "5")
    assert out.returncode == 0, out.stderr
    rows = [line.split("\t") for line in (tmp_path / "o.tsv").read_text().splitlines()]
    assert [float(r[0]) for r in rows] == pytest.approx([w.total for w in want], abs=2e-4)
    assert [float(r[1]) for r in rows] == pytest.approx([w.per_token for w in want], abs=2e-4)
    piped = run_cli("nmt-score", str(root / "run"), stdin="".join(f"{a}\t{b}\n" for a, b in zip(src, tgt)))
    assert piped.stdout == (tmp_path / "o.tsv").read_text()
    short = write_lines(tmp_path / "short.txt", tgt[:-1])
    bad = run_cli("nmt-score", str(root / "run"), "--src", str(s), "--tgt", str(short))
    assert bad.returncode == 2 and "has 14 lines but" in bad.stderr and len(bad.stderr.splitlines()) == 1
    bad = run_cli("nmt-score", str(root / "run"), stdin="no tab here\n")
    assert bad.returncode == 2 and "stdin:1: expected source<TAB>target" in bad.stderr
