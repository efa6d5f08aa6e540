"""Checkpoint averaging: identical checkpoints give the checkpoint, two give the mean per tensor;
other architectures or tokenizers are refused with the tensor or file named."""

import json

import pytest
import torch

from conftest import run_cli
from nmt.average import run_checkpoints, write_average
from nmt.checkpoint import load_checkpoint, save_checkpoint
from nmt.config import from_dict, to_dict
from nmt.errors import NmtError
from nmt.model.seq2seq import Seq2Seq
from test_ensemble import other_vocabulary


def weights(path) -> dict:
    return {name: t.clone() for name, t in load_checkpoint(path)[0].state_dict().items()}


def test_the_average_of_identical_checkpoints_is_the_checkpoint(reverse_run, tmp_path):
    root, _, _ = reverse_run
    last = run_checkpoints(root / "run", 1)[0]
    write_average([last, last, last], tmp_path / "avg")
    mine, theirs = weights(tmp_path / "avg"), weights(last)
    assert mine.keys() == theirs.keys()
    for name in theirs:
        assert torch.equal(mine[name], theirs[name]), name


def test_the_average_of_two_is_the_mean_per_tensor_and_translates(reverse_run, tmp_path):
    root, corpus, _ = reverse_run
    first, second = run_checkpoints(root / "run", 2)
    out = run_cli("nmt-average", str(root / "run"), "--last", "2", "-o", str(tmp_path / "avg"))
    assert out.returncode == 0, out.stderr
    a, b, avg = weights(first), weights(second), weights(tmp_path / "avg")
    for name in a:
        torch.testing.assert_close(avg[name], (a[name] + b[name]) / 2, rtol=0, atol=1e-6)
        assert not torch.equal(a[name], b[name]) or name.endswith("embed.weight")  # the test is not vacuous
    meta = json.loads((tmp_path / "avg" / "meta.json").read_text())
    assert meta["averaged_steps"] == [json.loads((p / "meta.json").read_text())["step"] for p in (first, second)]
    assert not (tmp_path / "avg" / "trainer.pt").exists()
    lines = (corpus / "test.src").read_text().splitlines()[:5]
    translated = run_cli("nmt-translate", str(tmp_path / "avg"), stdin="\n".join(lines) + "\n")
    assert translated.returncode == 0 and len(translated.stdout.splitlines()) == 5
    again = run_cli("nmt-average", str(first), str(second), "-o", str(tmp_path / "avg"))
    assert again.returncode == 2 and "already exists" in again.stderr  # nothing already written is lost
    too_many = run_cli("nmt-average", str(root / "run"), "--last", "9", "-o", str(tmp_path / "x"))
    assert too_many.returncode == 2 and "keep_last" in too_many.stderr and not (tmp_path / "x").exists()


def test_other_architectures_and_tokenizers_are_refused(reverse_run, tmp_path):
    root, _, _ = reverse_run
    last = run_checkpoints(root / "run", 1)[0]
    model, tokenizer, cfg, _ = load_checkpoint(last)
    values = to_dict(cfg)
    values["model"]["decoder_hidden_size"] += 8
    wider_cfg = from_dict(values)
    wider = Seq2Seq(wider_cfg.model, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size)
    other = save_checkpoint(tmp_path / "wider", wider, wider_cfg, tokenizer, {"step": 1}, None, ("last",), 1)
    with pytest.raises(NmtError, match=r"decoder\.attention\.\S+ has shape .*different architectures"):
        write_average([last, other], tmp_path / "avg")
    with pytest.raises(NmtError, match="tokenizer file vocab.tgt.txt differs"):
        write_average([last, other_vocabulary(root / "run", tmp_path)], tmp_path / "avg")
    assert not (tmp_path / "avg").exists()


def test_settings_of_training_only_do_not_block_averaging(reverse_run, tmp_path):
    """Dropout and the initialisation shape training, not the function: checkpoints differing in them average."""
    root, _, _ = reverse_run
    last = run_checkpoints(root / "run", 1)[0]
    model, tokenizer, cfg, _ = load_checkpoint(last)
    values = to_dict(cfg)
    values["model"].update(init="xavier", init_range=0.3, dropout=0.5)
    other = save_checkpoint(tmp_path / "other", model, from_dict(values), tokenizer, {"step": 1}, None, ("last",), 1)
    write_average([last, other], tmp_path / "avg")
    averaged, _, _, _ = load_checkpoint(tmp_path / "avg")
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(averaged.state_dict()[name], tensor)


def test_last_n_never_reaches_past_keep_last_to_an_old_best(reverse_run, tmp_path):
    """keep_last 2 keeps steps 3 and 4 and, as best, step 1: the 3 newest are not steps 1, 3, 4."""
    root, _, _ = reverse_run
    model, tokenizer, cfg, _ = load_checkpoint(run_checkpoints(root / "run", 1)[0])
    values = to_dict(cfg)
    values["train"]["keep_last"] = 2
    run = tmp_path / "run"
    for step in (1, 2, 3, 4):
        save_checkpoint(run, model, from_dict(values), tokenizer, {"step": step}, None,
                        ("last", "best") if step == 1 else ("last",), 2)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000001", "step-00000003",
                                                                        "step-00000004"]
    with pytest.raises(NmtError, match=r"3 checkpoints asked for, but the run keeps only its 2 newest "
                                       r"\(train.keep_last\); older ones left \(step-00000001\)"):
        run_checkpoints(run, 3)
    out = run_cli("nmt-average", str(run), "--last", "2", "-o", str(tmp_path / "avg"))
    assert out.returncode == 0, out.stderr
    assert f"averaged 2 checkpoints (steps 3, 4) into {tmp_path / 'avg'}" in out.stdout
