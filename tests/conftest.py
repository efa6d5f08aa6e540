"""Shared helpers: tiny corpora written on the fly and the real command-line tools run as subprocesses."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def reverse_corpus(directory: Path, n_train: int = 1500, seed: int = 0, vocab: int = 12,
                   min_len: int = 3, max_len: int = 7) -> Path:
    """A synthetic 'translation' task: the target is the source words reversed and renamed.

    Only a model whose attention really finds the mirrored source position can solve it.
    """
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(vocab)]
    directory.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("val", 60), ("test", 60)):
        src = [" ".join(rng.choice(words) for _ in range(rng.randint(min_len, max_len))) for _ in range(n)]
        tgt = [" ".join(w.replace("w", "v") for w in reversed(s.split())) for s in src]
        write_lines(directory / f"{split}.src", src)
        write_lines(directory / f"{split}.tgt", tgt)
    return directory


def reverse_recipe(root: Path, n_train: int, train: dict, extra: str = "") -> Path:
    """A reverse-task corpus under `root` and a recipe for it with the given `train` section."""
    corpus = reverse_corpus(root / "data", n_train=n_train)
    lines = "".join(f"  {key}: {value}\n" for key, value in train.items())
    recipe = root / "r.yaml"
    recipe.write_text(f"data:\n  dir: {corpus}\n  src_lang: src\n  tgt_lang: tgt\ntrain:\n{lines}{extra}")
    return recipe


def run_cli(tool: str, *args: str, stdin: str | None = None, cwd: Path | None = None,
            timeout: int = 600) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name(tool)
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return subprocess.run([str(exe), *args], input=stdin, capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


@pytest.fixture(scope="session")
def multi30k_dir() -> Path:
    path = SHARED_DATA / "multi30k"
    if not (path / "train.de").exists():
        pytest.skip("../shared/data/multi30k is not available")
    return path


TINY = ["--set", "tokenizer.vocab_size=40", "--set", "model.embed_size=32", "--set", "model.hidden_size=48",
        "--set", "model.decoder_hidden_size=64", "--set", "model.attention_size=32",
        "--set", "model.dropout=0.0", "--set", "train.label_smoothing=0.0", "--set", "train.threads=1"]


@pytest.fixture(scope="session")
def reverse_run(tmp_path_factory):
    """Train once per test session on the reverse task (about 15 s); several test files read the run."""
    root = tmp_path_factory.mktemp("reverse")
    corpus = reverse_corpus(root / "data")
    recipe = root / "reverse.yaml"
    recipe.write_text(f"data:\n  dir: {corpus}\n  src_lang: src\n  tgt_lang: tgt\n  test: [test]\n"
                      "train:\n  max_steps: 300\n  eval_every: 100\n  max_tokens: 600\n  lr: 0.003\n"
                      "  schedule: constant\n  patience: 0\n  log_every: 20\ndecode:\n  beam_size: 1\n")
    result = run_cli("nmt-train", str(recipe), "--run-dir", str(root / "run"), *TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    return root, corpus, result


# Tensor methods that copy a value to the host: on a GPU each waits for the queued work to finish.
HOST_READS = ("item", "tolist", "__bool__", "__int__", "__float__", "__index__", "nonzero", "cpu", "numpy")


class HostSyncs:
    """Counts calls of HOST_READS (from any code, torch's and Accelerate's included) while active."""

    def __init__(self, monkeypatch):
        import torch

        self.count = 0
        for name in HOST_READS:
            original = getattr(torch.Tensor, name)

            def counted(*args, _original=original, **kwargs):
                self.count += 1
                return _original(*args, **kwargs)

            monkeypatch.setattr(torch.Tensor, name, counted)
