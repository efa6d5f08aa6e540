"""nmt-translate on awkward input: order, empty and very long lines, bad bytes, n-best, JSON, plots."""

import json

import pytest

from conftest import run_cli
from nmt import Translator
from nmt.errors import NmtError


def test_output_keeps_order_with_empty_and_very_long_lines(reverse_run):
    root, corpus, _ = reverse_run
    src = (corpus / "test.src").read_text().splitlines()[:30]
    long_line = " ".join(["w1 w2 w3"] * 700)  # 2 100 words, beyond decode.max_input_len
    lines = src[:10] + ["", long_line, "   "] + src[10:]
    out = run_cli("nmt-translate", str(root / "run"), "--batch-size", "7", stdin="\n".join(lines) + "\n")
    assert out.returncode == 0, out.stderr
    got = out.stdout.split("\n")[:-1]
    assert len(got) == len(lines)
    assert got[10] == "" and got[12] == ""
    assert "line 12:" in out.stderr and "truncated" in out.stderr
    alone = Translator.load(root / "run").translate(src, beam_size=None)
    assert got[:10] + got[13:] == alone


def test_bad_bytes_stop_with_the_line_number_or_are_replaced(reverse_run, tmp_path):
    root, _, _ = reverse_run
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"w1 w2\nw3 \xff w4\nw5\n")
    out = run_cli("nmt-translate", str(root / "run"), "-i", str(bad))
    assert out.returncode == 2 and "bad.txt:2: not valid UTF-8" in out.stderr and "Traceback" not in out.stderr
    out = run_cli("nmt-translate", str(root / "run"), "-i", str(bad), "--bad-bytes", "replace")
    assert out.returncode == 0 and len(out.stdout.splitlines()) == 3


def test_nbest_tsv_and_json(reverse_run, tmp_path):
    root, corpus, _ = reverse_run
    src = (corpus / "test.src").read_text().splitlines()[:4]
    out = run_cli("nmt-translate", str(root / "run"), "--beam-size", "4", "--nbest", "3", stdin="\n".join(src) + "\n")
    rows = [r.split("\t") for r in out.stdout.splitlines()]
    assert [int(r[0]) for r in rows] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    for i in range(4):
        scores = [float(r[1]) for r in rows if int(r[0]) == i]
        assert scores == sorted(scores, reverse=True)
    out = run_cli("nmt-translate", str(root / "run"), "--format", "json", "--attention",
                  "--plot-attention", str(tmp_path / "png"), stdin="\n".join(src) + "\n")
    records = [json.loads(r) for r in out.stdout.splitlines()]
    assert [r["line"] for r in records] == [0, 1, 2, 3]
    first = records[0]
    assert len(first["attention"]) == len(first["tokens"]) + 1
    assert sorted(p.name for p in (tmp_path / "png").glob("*.png")) == [f"{i:06d}.png" for i in range(4)]


def test_python_api_and_bad_model_path(reverse_run, tmp_path):
    root, corpus, _ = reverse_run
    assert Translator.load(root / "run", device="cpu").translate(["w1 w2 w3"], beam_size=3) == ["v3 v2 v1"]
    out = run_cli("nmt-translate", str(tmp_path / "nope"), stdin="x\n")
    assert out.returncode == 2 and "no such run or checkpoint directory" in out.stderr


@pytest.mark.parametrize("overrides, message", [
    ({"beam_size": 0}, "^beam_size: 0 is below the minimum 1$"),
    ({"temperature": -1.0}, "^temperature: -1.0 is below the minimum"),
    ({"top_p": 1.5}, "^top_p: 1.5 is above the maximum 1.0$"),
    ({"beam_sise": 3}, "^beam_sise: unknown key; did you mean beam_size\\?$"),
    ({"beam_size": "5"}, "^beam_size: expected int, got '5'$"),
    ({"beam_size": 2, "nbest": 3}, "^nbest: 3 needs beam_size of at least 3, got 2$"),
    ({"temperature": 0.5}, "^temperature: applies to sampling only"),
])
def test_api_checks_decode_options_as_the_config_does(reverse_run, overrides, message):
    root, _, _ = reverse_run
    translator = Translator.load(root / "run", device="cpu")
    with pytest.raises(NmtError, match=message):
        translator.options(**overrides)
    with pytest.raises(NmtError, match=message):
        translator.translate(["w1 w2"], **overrides)
