"""scripts/reproduce.py end to end on a tiny recipe folder: three cells, RESULTS.md and the plot."""

import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, reverse_corpus


def assert_one_line_per_model(path, models):
    """The plot decodes to a picture of a readable size on which each model's line (and legend
    entry) has its own colour, matplotlib's default cycle in the order the models are plotted."""
    matplotlib = pytest.importorskip("matplotlib", reason="the plot needs matplotlib: pip install -e '.[dev]'")
    from matplotlib import colors, image

    pixels = image.imread(str(path))[..., :3]  # (height, width, RGB) in [0, 1]
    assert pixels.shape[0] >= 200 and pixels.shape[1] >= 300, pixels.shape
    cycle = [colors.to_rgb(style["color"]) for style in matplotlib.rcParams["axes.prop_cycle"]]
    for model, colour in zip(models, cycle):
        # Its legend entry alone (line and marker) is over 100 pixels: a line hidden under another counts
        assert (np.abs(pixels - colour).max(-1) < 0.02).sum() > 50, model


def test_reproduce_writes_a_table_and_a_plot(tmp_path):
    corpus = reverse_corpus(tmp_path / "data", n_train=400)
    recipes = tmp_path / "toy"
    recipes.mkdir()
    (recipes / "full.yaml").write_text(
        f"data:\n  dir: {corpus}\n  src_lang: src\n  tgt_lang: tgt\n  test: [test]\nmodel:\n"
        "  embed_size: 512\ntrain:\n  max_steps: 10000\ndecode:\n  beam_size: 2\n"
        "eval:\n  short_long_threshold: 5\n  length_buckets: [4, 6]\n")
    (recipes / "cpu.yaml").write_text(  # the cpu scale must override the full-scale sizes
        "tokenizer:\n  vocab_size: 40\nmodel:\n  embed_size: 16\n  hidden_size: 16\n  decoder_hidden_size: 16\n"
        "  attention_size: 16\ntrain:\n  max_steps: 30\n  eval_every: 15\n  max_tokens: 400\n  log_every: 5\n")
    cmd = [sys.executable, str(REPO / "scripts" / "reproduce.py"), str(recipes), "--runs", str(tmp_path / "runs"),
           "--bench-steps", "5"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-3000:]
    report = (recipes / "RESULTS.md").read_text()
    for cell in ("rnn", "lstm", "gru"):
        assert f"| {cell} |" in report
    assert "| 1-4 (" in report and "short BLEU" in report
    assert_one_line_per_model(recipes / "bleu_by_length.png", ["rnn", "lstm", "gru"])
    notes = "\n## Notes written by hand\n\nKept when the table is written again.\n"
    (recipes / "RESULTS.md").write_text(report + notes)
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and again.stdout.count("reused") == 3
    assert (recipes / "RESULTS.md").read_text() == report + notes  # same table, the notes kept once
