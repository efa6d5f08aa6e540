"""Two CPU processes (gloo) under `accelerate launch` run the same loop; compared with one process.

Accelerate 1.15's `launch --cpu` starts a single process, so the test uses the torchrun-based
launcher (`--multi_gpu`) with ACCELERATE_USE_CPU=true, which gives DistributedType.MULTI_CPU.
"""

import json
import os
import subprocess
import sys

import pytest
from safetensors.torch import load_file

from conftest import TINY, reverse_recipe, run_cli

# No dropout: each process draws its own masks, which a single process cannot reproduce.
ARGS = [*TINY, "--set", "model.dropout=0.0", "--set", "train.threads=1", "--set", "train.schedule=constant"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    # 12 updates stay inside the first epoch, where both set-ups see the same batches.
    recipe = reverse_recipe(root, 600, {"max_steps": 12, "eval_every": 6, "max_tokens": 300, "log_every": 3,
                                        "patience": 0})
    exe = os.path.join(os.path.dirname(sys.executable), "nmt-train")
    launcher = os.path.join(os.path.dirname(sys.executable), "accelerate")
    # Its own data cache: the DDP run prepares, once.
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "NMT_CACHE_DIR": str(root / "cache")}
    ddp = subprocess.run([launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                          "--mixed_precision", "no", "--dynamo_backend", "no", exe, str(recipe),
                          "--run-dir", str(root / "ddp"), *ARGS], capture_output=True, text=True, timeout=300,
                         env=env)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    # One process accumulating 2 batches of 300 tokens takes the same global batches as 2 ranks.
    single = run_cli("nmt-train", str(recipe), "--run-dir", str(root / "single"), *ARGS,
                     "--set", "train.accumulate=2")
    assert single.returncode == 0, single.stderr[-3000:]
    other = run_cli("nmt-train", str(recipe), "--run-dir", str(root / "other"), *ARGS)  # half the batch
    assert other.returncode == 0, other.stderr[-3000:]
    return root, ddp


def metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_both_ranks_end_with_identical_weights(runs):
    root, _ = runs
    sums = [m for m in metrics(root / "ddp") if "weights_checksum_per_process" in m][0]
    first, second = sums["weights_checksum_per_process"]
    assert first == second


def test_only_rank_zero_writes_and_logs(runs):
    root, ddp = runs
    steps = [m["step"] for m in metrics(root / "ddp") if "train_loss" in m]
    assert steps == [3, 6, 9, 12]  # one line per log step, not one per process
    assert ddp.stderr.count("training pairs:") == 1
    assert ddp.stderr.count("read and tokenised") == 2  # train and valid, by the main process only
    assert "data prepared once, by the main process; all 2 processes map the same cache files" in ddp.stderr
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
