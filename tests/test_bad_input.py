"""The real commands on bad input: a one-line error and exit 2, or a documented, warned behaviour."""

import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from conftest import TINY, reverse_corpus, run_cli, write_lines


def assert_one_line_error(result, message: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]


@pytest.fixture
def corpus(tmp_path):
    return reverse_corpus(tmp_path / "data", n_train=200)


def recipe(tmp_path, corpus, extra: str = "") -> str:
    path = tmp_path / "r.yaml"
    path.write_text(f"data:\n  dir: {corpus}\n  src_lang: src\n  tgt_lang: tgt\n{extra}")
    return str(path)


def train(tmp_path, corpus, *args, extra=""):
    return run_cli("nmt-train", recipe(tmp_path, corpus, extra), "--run-dir", str(tmp_path / "run"),
                   *TINY, "--set", "train.max_steps=3", *args)


@pytest.mark.parametrize("damage, message", [
    (lambda c: os.remove(c / "train.src"), "train.src: file not found"),
    (lambda c: (os.remove(c / "train.src"), os.mkdir(c / "train.src")), "train.src: cannot read"),
    (lambda c: (c / "train.tgt").write_text(""), "train.tgt: file is empty"),
    (lambda c: write_lines(c / "train.tgt", ["v1"] * 199), "train.src has 200 lines but"),
    (lambda c: (c / "train.src").write_bytes(b"w1\nw2 \xc3\x28 w3\n"), "train.src:2: not valid UTF-8 (byte 0xc3)"),
    (lambda c: os.remove(c / "val.tgt"), "val.tgt: file not found"),
])
def test_bad_data_files(tmp_path, corpus, damage, message):
    damage(corpus)
    assert_one_line_error(train(tmp_path, corpus), message)
    assert not list((tmp_path / "run").iterdir())  # nothing a corrected run would be refused for


@pytest.mark.parametrize("args, extra, message", [
    ([], "model:\n  hiden_size: 8\n", "model.hiden_size: unknown key; did you mean hidden_size?"),
    ([], "train:\n  lr: fast\n", "train.lr: expected float, got 'fast'"),
    (["--set", "train.warmup=10"], "", "train.warmup: unknown key; did you mean warmup_steps?"),
    (["--set", "model.cell=transformer"], "", "model.cell: 'transformer' is not one of rnn, lstm, gru"),
    (["--set", "train.mixed_precision=fp16"], "", "fp16 needs a GPU"),
])
def test_bad_config(tmp_path, corpus, args, extra, message):
    assert_one_line_error(train(tmp_path, corpus, *args, extra=extra), message)


def test_missing_recipe_and_unwritable_run_dir(tmp_path, corpus):
    assert_one_line_error(run_cli("nmt-train", str(tmp_path / "nope.yaml")), "nope.yaml: config file not found")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run_cli("nmt-train", recipe(tmp_path, corpus), "--run-dir", str(blocker / "run"))
    assert_one_line_error(result, "not writable")


def test_train_module_is_the_command(tmp_path):
    """`python -m nmt.train` (what `accelerate launch -m nmt.train` runs) is nmt-train, not a silent no-op."""
    result = subprocess.run([sys.executable, "-m", "nmt.train", str(tmp_path / "nope.yaml")],
                            capture_output=True, text=True)
    assert_one_line_error(result, "nope.yaml: config file not found")


def test_run_dir_of_another_model(tmp_path, corpus):
    assert train(tmp_path, corpus).returncode == 0
    assert_one_line_error(train(tmp_path, corpus), "already holds a run; pass --resume")
    resumed = run_cli("nmt-train", recipe(tmp_path, corpus), "--run-dir", str(tmp_path / "run"), "--resume",
                      "--set", "model.cell=lstm", "--set", "train.max_steps=6")
    assert_one_line_error(resumed, "model.cell: the run was started with 'gru' and cannot change to 'lstm'")
    assert (tmp_path / "run" / "last" / "model.safetensors").exists()  # nothing lost


def test_dirty_training_lines_are_dropped_and_counted(tmp_path, corpus):
    src = (corpus / "train.src").read_text().splitlines()
    tgt = (corpus / "train.tgt").read_text().splitlines()
    src[:4] = ["", " ".join(["w1"] * 5000), "!!! ??? ...", "🙂🙂🙂"]
    tgt[:4] = ["v1", "v1", "!!!", "🙂"]
    write_lines(corpus / "train.src", src)
    write_lines(corpus / "train.tgt", tgt)
    result = train(tmp_path, corpus)
    assert result.returncode == 0, result.stderr[-2000:]
    counts = re.search(r"training pairs: ((?:\w+ \d+(?:, )?)+)", result.stderr)[1]  # "kept 197, empty 1, ..."
    counted = {name: int(n) for name, n in re.findall(r"(\w+) (\d+)", counts)}
    # Of the four dirty pairs, three go: one empty, one too long, one out of ratio.
    assert counted == {"kept": len(src) - 3, "empty": 1, "too_long": 1, "bad_ratio": 1}


def test_translate_bad_arguments(reverse_run, tmp_path):
    root, _, _ = reverse_run
    assert_one_line_error(run_cli("nmt-translate", str(tmp_path)), "not a checkpoint")
    assert_one_line_error(run_cli("nmt-translate", str(root / "run"), "--nbest", "4", "--beam-size", "2"),
                          "--nbest: 4 needs --beam-size of at least 4, got 2")
    assert_one_line_error(run_cli("nmt-translate", str(root / "run"), "--dtype", "fp16", "--device", "cpu"),
                          "fp16 inference needs a CUDA device")
    assert_one_line_error(run_cli("nmt-translate", str(root / "run"), "-i", str(tmp_path / "none.txt")),
                          "none.txt: cannot read")


def test_translate_odd_lines_and_keeps_earlier_output(reverse_run, tmp_path):
    root, _, _ = reverse_run
    out = tmp_path / "out.txt"
    out.write_text("precious\n")
    good = run_cli("nmt-translate", str(root / "run"), "-o", str(out), stdin="!!! ??? ...\n🙂🙂\nw1 w2\n")
    assert good.returncode == 0 and len(out.read_text().splitlines()) == 3
    out.write_text("precious\n")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"w1 w2\n" * 3000 + b"\xff\n")
    result = run_cli("nmt-translate", str(root / "run"), "-i", str(bad), "-o", str(out), "--chunk-size", "1000")
    assert_one_line_error(result, "bad.txt:3001: not valid UTF-8")
    assert out.read_text() == "precious\n"
    assert len((tmp_path / "out.txt.partial").read_text().splitlines()) == 3000


def test_translations_are_written_while_input_still_arrives(reverse_run, tmp_path):
    """Streaming as a property, not a memory figure (which a loaded machine blurs, and which took
    100 000 translations to show): each chunk's translations are out before the input ends, so
    nothing grows with the input's length."""
    root, _, _ = reverse_run
    exe = shutil.which("nmt-translate", path=os.path.dirname(sys.executable))
    out = tmp_path / "out.txt"
    with open(out, "wb") as sink:
        proc = subprocess.Popen([exe, str(root / "run"), "--beam-size", "1", "--chunk-size", "1000"],
                                stdin=subprocess.PIPE, stdout=sink, stderr=subprocess.DEVNULL)
    proc.stdin.write(b"w1 w2 w3\n" * 3500)
    proc.stdin.flush()
    deadline = time.monotonic() + 300  # a hang guard, not a speed bound
    while len(out.read_bytes().splitlines()) < 3000:  # three whole chunks; the input is still open
        assert proc.poll() is None and time.monotonic() < deadline, "no translations before the input ended"
        time.sleep(0.1)
    proc.stdin.write(b"w1 w2 w3\n" * 500)
    proc.stdin.close()
    assert proc.wait(timeout=300) == 0
    assert out.read_text().splitlines() == ["v3 v2 v1"] * 4000
