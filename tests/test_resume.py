"""Interrupted training resumes to exactly the weights of an uninterrupted run (CPU, fixed seed)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file

from conftest import TINY, reverse_recipe, run_cli

STEPS = 40


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    recipe = reverse_recipe(root, 600, {"max_steps": STEPS, "eval_every": 10, "max_tokens": 300, "patience": 0,
                                        "keep_last": 10, "log_every": 5})
    args = [*TINY, "--set", "model.dropout=0.2"]  # dropout: the RNG state must be restored too
    full = run_cli("nmt-train", str(recipe), "--run-dir", str(root / "full"), *args)
    assert full.returncode == 0, full.stderr[-2000:]
    return root, recipe, args, load_file(root / "full" / "last" / "model.safetensors")


def assert_same_weights(run_dir, expected, checkpoint="last"):
    got = load_file(run_dir / checkpoint / "model.safetensors")
    assert got.keys() == expected.keys()
    for name in expected:
        assert (got[name] == expected[name]).all(), name


def start(recipe, run_dir, args):
    exe = os.path.join(os.path.dirname(sys.executable), "nmt-train")
    return subprocess.Popen([exe, str(recipe), "--run-dir", str(run_dir), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint(run_dir, proc, timeout=120):
    deadline = time.time() + timeout
    while not (run_dir / "last").exists():
        assert proc.poll() is None and time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)


def full_run_step(root, step):
    return load_file(root / "full" / "checkpoints" / f"step-{step:08d}" / "model.safetensors")


def test_stopping_at_a_step_limit_then_resuming(setup):
    """Resumed with its data moved (same contents), past a step-20 and a save of step 30 that a killed
    run left behind: the resumed run writes its own step 20 and ends with the uninterrupted weights."""
    root, recipe, args, expected = setup
    run_dir = root / "limit"
    first = run_cli("nmt-train", str(recipe), "--run-dir", str(run_dir), *args, "--set", "train.max_steps=17")
    assert first.returncode == 0, first.stderr[-2000:]
    saved = run_dir / "checkpoints"
    shutil.copytree(saved / "step-00000017", saved / "step-00000020")  # renamed, never linked: other weights
    (saved / ".tmp-step-00000030-1").mkdir()  # a save killed midway
    moved = shutil.copytree(root / "data", root / "moved-data")
    second = run_cli("nmt-train", str(recipe), "--run-dir", str(run_dir), "--resume",
                     "--set", f"train.max_steps={STEPS}", "--set", f"data.dir={moved}")
    assert second.returncode == 0, second.stderr[-2000:]
    assert "resumed from step-00000017" in second.stderr
    assert_same_weights(run_dir, expected)
    assert_same_weights(run_dir, full_run_step(root, 20), "checkpoints/step-00000020")
    assert not list(saved.glob(".*"))


@pytest.mark.parametrize("delay", [0.0, 0.7])
def test_kill_9_then_resume(setup, delay):
    root, recipe, args, expected = setup
    run_dir = root / f"kill{delay}"
    proc = start(recipe, run_dir, args)
    wait_for_checkpoint(run_dir, proc)
    time.sleep(delay)
    proc.kill()
    proc.wait()
    resumed = run_cli("nmt-train", str(recipe), "--run-dir", str(run_dir), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_same_weights(run_dir, expected)


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(setup):
    """A run far longer than the test is always stopped by the signal, after its first checkpoint;
    resumed to the full run's next checkpoint, it has that checkpoint's weights."""
    root, recipe, args, _ = setup
    run_dir = root / "term"
    proc = start(recipe, run_dir, [*args, "--set", "train.max_steps=100000"])
    wait_for_checkpoint(run_dir, proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr[-2000:]
    stopped = json.loads((run_dir / "last" / "meta.json").read_text())["step"]
    assert f"stopped by SIGTERM at step {stopped}; checkpoint saved" in stderr and "--resume" in stderr
    target = (stopped // 10 + 1) * 10  # eval_every 10: the full run's next checkpoint
    assert target <= STEPS, f"the signal took {stopped - 10} updates to stop the run"
    resumed = run_cli("nmt-train", str(recipe), "--run-dir", str(run_dir), "--resume",
                      "--set", f"train.max_steps={target}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed from step-{stopped:08d}" in resumed.stderr
    assert_same_weights(run_dir, full_run_step(root, target))


@pytest.mark.parametrize("key, value", [("data.max_len", 50), ("data.max_ratio", 2.0), ("data.train_limit", 100),
                                        ("data.train", "val"), ("data.src_lang", "tgt"), ("tokenizer.vocab_size", 50)])
def test_resume_refuses_what_would_change_the_epochs_batches(setup, key, value):
    from nmt.config import load_saved_config
    from nmt.errors import NmtError
    from nmt.train.run_checks import check_resume_config

    root, *_ = setup
    changed = load_saved_config(root / "full" / "config.yaml", [f"{key}={value}"])
    with pytest.raises(NmtError, match=rf"^{key}: the run was started with \S+ and cannot change to {value!r} "
                                       r"on --resume \(.*\); start a new run$"):
        check_resume_config(root / "full", changed)


def test_resume_refuses_changed_training_files(setup, tmp_path):
    root, recipe, _, _ = setup
    run_dir = root / "full"
    saved = (run_dir / "config.yaml").read_text()
    edited = shutil.copytree(root / "data", tmp_path / "data")
    (edited / "train.tgt").write_text((edited / "train.tgt").read_text().replace("v1", "v2", 1))
    result = run_cli("nmt-train", str(recipe), "--run-dir", str(run_dir), "--resume", "--set", f"data.dir={edited}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: data.train: the training files changed since the run started, so the epoch's batches would "
        "change under the position saved in it; restore them or start a new run")
    assert (run_dir / "config.yaml").read_text() == saved  # nothing rewritten


def test_resume_refuses_a_changed_optimizer_setting(setup):
    root, recipe, args, _ = setup
    run_dir = root / "full"
    saved = (run_dir / "config.yaml").read_text()
    result = run_cli("nmt-train", str(recipe), "--run-dir", str(run_dir), "--resume", "--set", "train.lr=0.01",
                     "--set", f"train.max_steps={STEPS + 5}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: train.lr: the run was started with 0.001 and cannot change to 0.01 on --resume (the optimizer, "
        "schedule and batch order are restored); start a new run"]
    assert (run_dir / "config.yaml").read_text() == saved  # nothing rewritten


def test_each_process_restores_its_own_random_streams():
    import random

    import torch

    from nmt.errors import NmtError
    from nmt.train.run_state import rng_state, set_rng_state

    states = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        random.seed(seed)
        states.append(rng_state())
    expected = (torch.rand(3), random.random())  # what process 1 draws next
    set_rng_state({"processes": states}, rank=1, processes=2)
    assert torch.equal(torch.rand(3), expected[0]) and random.random() == expected[1]
    with pytest.raises(NmtError, match="written by 2 process"):
        set_rng_state({"processes": states}, rank=0, processes=1)
