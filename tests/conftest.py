"""Shared helpers: tiny corpora written on the fly and the real command-line tools run as subprocesses."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import NamedTuple

import pytest
from filelock import FileLock

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# One thread per process, here and in every command a test runs: the suite runs in two pytest workers
# (scripts/test.sh), and the tests' tiny models are slower on two threads than on one, much slower
# (seconds per update) when the other core is busy. Set before torch is imported; a test that is
# about threads sets its own.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session", autouse=True)
def data_cache(tmp_path_factory):
    """Prepared data goes to a cache of this test session (the commands inherit the variable), never ~/.cache."""
    path = tmp_path_factory.mktemp("nmt-cache")
    os.environ["NMT_CACHE_DIR"] = str(path)
    return path


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


def command_env() -> dict:
    """The environment of a command a test runs: this process's (the data cache, one thread), quiet."""
    return {**os.environ, "PYTHONWARNINGS": "ignore"}


def run_cli(tool: str, *args: str, stdin: str | None = None, cwd: Path | None = None,
            timeout: int = 600) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name(tool)
    return subprocess.run([str(exe), *args], input=stdin, capture_output=True, text=True,
                          cwd=cwd, env=command_env(), timeout=timeout)


@pytest.fixture(scope="session")
def multi30k_dir() -> Path:
    path = SHARED_DATA / "multi30k"
    if not (path / "train.de").exists():
        pytest.skip("../shared/data/multi30k is not available")
    return path


# init_range 0.5: layers of 32-64 units learn slowly from the default ±0.1, which suits a few hundred
# (the reverse task: BLEU 1.5 after 300 updates at 0.1, 90 after 100 at 0.5; ModelConfig.init_range).
TINY = ["--set", "tokenizer.vocab_size=40", "--set", "model.embed_size=32", "--set", "model.hidden_size=48",
        "--set", "model.decoder_hidden_size=64", "--set", "model.attention_size=32", "--set", "model.init_range=0.5",
        "--set", "model.dropout=0.0", "--set", "train.label_smoothing=0.0", "--set", "train.threads=1"]


def train_tiny(root: Path, corpus: Path, src_lang: str, tgt_lang: str, *settings: str) -> subprocess.CompletedProcess:
    """The tests' tiny model trained on `corpus` read from `src_lang` to `tgt_lang`, into root/run
    (`settings`: more --set flags, after the tiny ones)."""
    recipe = root / "tiny.yaml"
    recipe.write_text(f"data:\n  dir: {corpus}\n  src_lang: {src_lang}\n  tgt_lang: {tgt_lang}\n  test: [test]\n"
                      "train:\n  max_steps: 300\n  eval_every: 100\n  max_tokens: 600\n  lr: 0.003\n"
                      "  schedule: constant\n  patience: 0\n  log_every: 20\ndecode:\n  beam_size: 1\n")
    result = run_cli("nmt-train", str(recipe), "--run-dir", str(root / "run"), *TINY, *settings)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def made_once(tmp_path_factory, name: str, make) -> Path:
    """A directory `make(directory)` fills once per test session, for reading only. In pytest-xdist's
    workers (scripts/test.sh) the first worker to ask makes it under a file lock and the others wait
    for it and read it: each of these fixtures trains models, and made in every worker they cost
    the suite about a minute."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        directory = tmp_path_factory.mktemp(name)
        make(directory)
        return directory
    directory = tmp_path_factory.getbasetemp().parent / name  # the session's, above each worker's own
    with FileLock(f"{directory}.lock"):
        if not (directory / ".made").exists():
            shutil.rmtree(directory, ignore_errors=True)  # a worker that failed half-way
            directory.mkdir()
            make(directory)
            (directory / ".made").touch()
    return directory


@pytest.fixture(scope="session")
def reverse_run(tmp_path_factory):
    """(root, corpus, run directory) of a model trained once per test session on the reverse task
    (about 15 s); many test files read the run, none writes into it."""
    root = made_once(tmp_path_factory, "reverse", lambda root: train_tiny(root, reverse_corpus(root / "data"), "src", "tgt"))
    return root, root / "data", root / "run"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(url: str, body=None, timeout: float = 60, headers: dict | None = None) -> tuple[int, dict]:
    """(status, decoded JSON answer) of a GET, or a POST when `body` (bytes, or an object sent as JSON) is given."""
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


class Server(NamedTuple):
    url: str
    process: subprocess.Popen
    log: Path


@contextlib.contextmanager
def serving(run_dir: Path, log: Path, *flags: str, timeout: float = 120):
    """`nmt-serve run_dir` on a free port of 127.0.0.1 until the block ends; yields a Server once /health answers."""
    port = free_port()
    exe = Path(sys.executable).with_name("nmt-serve")
    with open(log, "wb") as out:
        process = subprocess.Popen([str(exe), str(run_dir), "--port", str(port), *flags],
                                   stdout=out, stderr=out, env=command_env())
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert process.poll() is None, f"nmt-serve exited with {process.returncode}: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"nmt-serve did not answer in {timeout} s: {log.read_text()[-3000:]}"
            try:
                if call(server.url + "/health", timeout=2)[0] == 200:
                    break
            except OSError:
                time.sleep(0.2)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="session")
def served(reverse_run, tmp_path_factory):
    """The reverse-task model behind `nmt-serve` with default settings, shared by the API and page tests."""
    pytest.importorskip("fastapi", reason="nmt-serve needs the serve extra: pip install -e '.[serve]'")
    pytest.importorskip("uvicorn", reason="nmt-serve needs the serve extra: pip install -e '.[serve]'")
    root, _, _ = reverse_run
    with serving(root / "run", tmp_path_factory.mktemp("serve") / "serve.log") as server:
        yield server


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


@pytest.fixture(scope="session")
def backward_run(reverse_run, tmp_path_factory):
    """reverse_run's corpus read the other way round: its languages swapped (a split's files are
    named by language, so data.src_lang: tgt reads train.tgt as the source). A second direction for
    the multi-pair server, trained once per session (about 15 s)."""
    root = made_once(tmp_path_factory, "backward", lambda root: train_tiny(root, reverse_run[1], "tgt", "src"))
    return root, reverse_run[1], root / "run"


# Real text, so that its codes are real: the first pairs of Multi30k, read in place (never copied), a
# vocabulary its characters fit, and a few updates. What the model says does not matter, only that
# the server answers with it; 10 updates and no test split keep each run to a few seconds.
MULTI30K_SLICE = ["--set", "data.train_limit=400", "--set", "data.valid_limit=8", "--set", "data.test=[]",
                  "--set", "tokenizer.vocab_size=120", "--set", "train.max_steps=10", "--set", "train.eval_every=10",
                  "--set", "decode.max_len_a=0.0", "--set", "decode.max_len_b=12"]


@pytest.fixture(scope="session")
def real_codes(multi30k_dir, tmp_path_factory) -> dict[str, Path]:
    """Two tiny models whose recipes have real codes, de -> fr and en -> fr, by pair name (for
    nmt-serve PAIR=RUN): what /detect (German or English) and `source: auto` (which of the two into
    French) need, as the identifier knows only real codes. About 14 s a run on 2 busy cores, most of
    it the command's start-up."""
    def make(root: Path) -> None:
        for source in ("de", "en"):
            (root / source).mkdir()
            train_tiny(root / source, multi30k_dir, source, "fr", *MULTI30K_SLICE)

    root = made_once(tmp_path_factory, "real-codes", make)
    return {f"{source}-fr": root / source / "run" for source in ("de", "en")}
