"""Two CPU processes (gloo) under `accelerate launch`, started with the README's own command line.

Accelerate 1.15's `launch --cpu` starts a single process, so the README's CPU line uses the
torchrun-based launcher (`--multi_gpu`) with ACCELERATE_USE_CPU=true (DistributedType.MULTI_CPU).
"""

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import REPO, TINY, reverse_corpus, reverse_recipe, run_cli
from test_update import SPLIT_OVER_PROCESSES, examples, gradients, max_diff

# No dropout: each process draws its own masks, which a single process cannot reproduce.
ARGS = [*TINY, "--set", "model.dropout=0.0", "--set", "train.threads=1", "--set", "train.schedule=constant"]
BIN = Path(sys.executable).parent


def readme_launch() -> list[str]:
    """The README's CPU launch line up to its recipe, with this venv's `accelerate`."""
    line = next(x for x in (REPO / "README.md").read_text().splitlines()
                if x.strip().startswith("ACCELERATE_USE_CPU=true accelerate launch"))
    words = shlex.split(line)
    assert words[-4:-1] == ["-m", "nmt", "train"] and words[-1].endswith(".yaml"), line
    return [str(BIN / "accelerate"), *words[2:-1]]


def launch(*args: str, cache=None) -> subprocess.Popen:
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "PATH": f"{BIN}:{os.environ['PATH']}"}
    if cache:
        env["NMT_CACHE_DIR"] = str(cache)
    return subprocess.Popen([*readme_launch(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def finish(proc: subprocess.Popen) -> str:
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    return stderr


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    # 12 updates stay inside the first epoch, where both set-ups see the same batches.
    recipe = reverse_recipe(root, 600, {"max_steps": 12, "eval_every": 6, "max_tokens": 600, "log_every": 3,
                                        "patience": 0})
    # Its own data cache: the DDP run prepares, once.
    ddp = launch(str(recipe), "--run-dir", str(root / "ddp"), *ARGS, cache=root / "cache")
    # train.max_tokens is the update's: 2 processes x 300, or 1 process x 2 micro-batches x 300.
    single = run_cli("nmt-train", str(recipe), "--run-dir", str(root / "single"), *ARGS,
                     "--set", "train.accumulate=2")
    assert single.returncode == 0, single.stderr[-3000:]
    other = run_cli("nmt-train", str(recipe), "--run-dir", str(root / "other"), *ARGS,
                    "--set", "train.max_tokens=300")  # half the batch
    assert other.returncode == 0, other.stderr[-3000:]
    return root, finish(ddp)


def metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_both_ranks_end_with_identical_weights(runs):
    root, _ = runs
    assert [m["replicas_identical"] for m in metrics(root / "ddp") if "replicas_identical" in m] == [True]


def test_only_rank_zero_writes_and_logs(runs):
    root, stderr = runs
    steps = [m["step"] for m in metrics(root / "ddp") if "train_loss" in m]
    assert steps == [3, 6, 9, 12]  # one line per log step, not one per process
    assert stderr.count("training pairs:") == 1
    assert "global batch: up to 600 target tokens per update = 2 process(es) x 1 micro-batch(es) x 300" in stderr
    assert stderr.count("read and tokenised") == 2  # train and valid, by the main process only
    assert "data prepared once, by the main process; all 2 processes map the same cache files" in stderr
    cache = root / "cache"
    assert [len(list(cache.glob(f"{kind}/*"))) for kind in ("tokenizers", "splits", "tmp-*")] == [1, 2, 0]
    assert sorted(p.name for p in (root / "ddp" / "checkpoints").iterdir()) == ["step-00000006", "step-00000012"]


def mean_abs_diff(a, b):
    return sum((a[k] - b[k]).abs().sum() for k in a).item() / sum(v.numel() for v in a.values())


def test_ddp_matches_one_process_with_the_same_global_batch(runs):
    root, _ = runs
    ddp, single, other = (load_file(root / name / "last" / "model.safetensors") for name in ("ddp", "single", "other"))
    # Same updates; only the order of floating-point sums differs (all-reduce vs accumulation), which
    # Adam's normalised steps turn into differences well under one step (lr 1e-3) per weight.
    assert max((ddp[k] - single[k]).abs().max().item() for k in single) < 2e-3
    assert mean_abs_diff(ddp, single) < 1e-4
    # A different global batch moves the weights far more: the comparison above has teeth.
    assert mean_abs_diff(other, single) > 10 * mean_abs_diff(ddp, single)


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    out = tmp_path_factory.mktemp("worker")
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    words = readme_launch()[:-3]  # the launcher and its flags, without `-m nmt train`
    done = subprocess.run([*words, str(REPO / "tests" / "ddp_worker.py"), str(out)], capture_output=True,
                          text=True, env=env, timeout=300, cwd=REPO / "tests")
    assert done.returncode == 0, done.stderr[-3000:]
    return [torch.load(out / f"rank{r}.pt") for r in (0, 1)]


def test_two_processes_give_the_gradient_of_one_batch(worker):
    """2 processes x 2 unequal micro-batches: DDP's average of the per-token normalised sums equals
    one batch of all the examples (float64)."""
    whole = gradients([examples()])
    split = gradients([examples()[a:b] for part in SPLIT_OVER_PROCESSES for a, b in part])
    assert max_diff(split, whole) < 1e-12
    for rank in worker:
        assert max_diff(rank["grads"], whole) < 1e-12


def test_a_nan_on_one_process_is_skipped_by_both(worker):
    assert [r["skipped"] for r in worker] == [True, True]
    assert [r["unchanged"] for r in worker] == [True, True]


def rank_zero_pid(run_dir: Path) -> int | None:
    """The training process of rank 0 among those started for `run_dir` (not the launcher)."""
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(run_dir).encode() in cmdline and b"RANK=0" in environ and b"nmt" in cmdline:
            return int(proc.name)
    return None


def test_a_signal_to_rank_zero_stops_both_with_one_checkpoint_then_resume(tmp_path):
    recipe = reverse_recipe(tmp_path, 600, {"max_steps": 400, "eval_every": 8, "max_tokens": 600, "patience": 0})
    run_dir = tmp_path / "run"
    args = [*TINY, "--set", "model.dropout=0.2"]  # dropout: each process's own RNG stream must be kept
    proc = launch(str(recipe), "--run-dir", str(run_dir), *args)
    deadline = time.time() + 120
    while not (run_dir / "last").exists():
        assert proc.poll() is None and time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    os.kill(rank_zero_pid(run_dir), signal.SIGTERM)
    stderr = finish(proc)  # both processes left the loop at the same update: no hang, exit 0
    assert "stopped by SIGTERM" in stderr
    stopped = (run_dir / "last").resolve().name
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step-00000008", stopped]
    state = torch.load(run_dir / "last" / "trainer.pt", weights_only=True)
    first, second = state["rng"]["processes"]  # one stream per process, and they differ
    assert not torch.equal(first["torch"], second["torch"])
    step = int(stopped.split("-")[1])
    stderr = finish(launch(str(recipe), "--run-dir", str(run_dir), "--resume", "--set", f"train.max_steps={step + 3}"))
    assert f"resumed from {stopped}" in stderr
    assert (run_dir / "last").resolve().name == f"step-{step + 3:08d}"


def test_ranks_draw_their_own_dropout_masks_and_resume_exactly(tmp_path):
    """Sentences of one length give every batch of both ranks one shape, so ranks seeded alike would
    draw equal dropout masks (equal random streams). Resumed from its step-3 checkpoint, the run ends
    with the weights of the uninterrupted one."""
    corpus = reverse_corpus(tmp_path / "data", n_train=600, vocab=10, min_len=5, max_len=5)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"data:\n  dir: {corpus}\n  src_lang: src\n  tgt_lang: tgt\ntrain:\n  max_steps: 6\n"
                      "  eval_every: 3\n  max_tokens: 600\n  patience: 0\n")
    full, half = tmp_path / "full", tmp_path / "half"
    finish(launch(str(recipe), "--run-dir", str(full), *TINY, "--set", "model.dropout=0.2"))
    state = torch.load(full / "checkpoints" / "step-00000003" / "trainer.pt", weights_only=True)
    first, second = state["rng"]["processes"]
    assert not torch.equal(first["torch"], second["torch"])
    # The same run as if killed right after its step-3 save.
    shutil.copytree(full, half, symlinks=True)
    shutil.rmtree(half / "checkpoints" / "step-00000006")
    (half / "results.json").unlink()
    for name in ("last", "best"):
        (half / name).unlink()
        (half / name).symlink_to(Path("checkpoints") / "step-00000003")
    stderr = finish(launch(str(recipe), "--run-dir", str(half), "--resume"))
    assert "resumed from step-00000003" in stderr
    expected, got = (load_file(run / "last" / "model.safetensors") for run in (full, half))
    assert all(torch.equal(got[name], expected[name]) for name in expected)
