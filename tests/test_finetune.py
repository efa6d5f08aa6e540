"""Fine-tuning (nmt-train --init-from): a new run from a trained model's weights, tokenizer and architecture."""

import hashlib
import json
import shutil

import pytest
import yaml
from safetensors.torch import load_file

from conftest import TINY, reverse_recipe, run_cli, write_lines

NEW_WORD = "ñ7"  # characters the parent's tokenizer never saw
# The children's recipes list no model or tokenizer section: they inherit the parent's.
CHILD = ["--set", "train.threads=1", "--set", "train.patience=0", "--set", "train.max_tokens=300",
         "--set", "train.schedule=constant"]


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    recipe = reverse_recipe(root, 300, {"max_steps": 20, "eval_every": 10, "max_tokens": 300, "lr": 0.003,
                                        "schedule": "constant", "patience": 0})
    result = run_cli("nmt-train", str(recipe), "--run-dir", str(root / "parent"), *TINY)
    assert result.returncode == 0, result.stderr[-2000:]
    return root, (root / "parent" / "best").resolve()


def new_corpus(root):
    """Another reverse-task corpus whose sources and targets also hold a word of unseen characters."""
    folder = root / "new"
    folder.mkdir(exist_ok=True)
    for split, n in (("train", 120), ("val", 20)):
        src = [f"w{i % 12} {NEW_WORD} w{(i * 5) % 12}" for i in range(n)]
        write_lines(folder / f"{split}.src", src)
        write_lines(folder / f"{split}.tgt", [" ".join(w.replace("w", "v") for w in reversed(s.split())) for s in src])
    recipe = root / "child.yaml"
    recipe.write_text(f"data:\n  dir: {folder}\n  src_lang: src\n  tgt_lang: tgt\n")
    return recipe


def finetune(root, run, *extra):
    return run_cli("nmt-train", str(new_corpus(root)), "--run-dir", str(root / run), *CHILD, *extra)


def tokenizer_files(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.suffix in (".model", ".txt")}


def test_the_first_update_starts_from_the_parents_weights_with_its_vocabulary(parent):
    """At learning rate 0, one update leaves the weights as they were: the parent's, exactly. The run
    takes the parent's tokenizer although its corpus has characters the parent never saw."""
    root, ckpt = parent
    result = finetune(root, "lr0", "--init-from", str(root / "parent"), "--set", "train.lr=0",
                      "--set", "train.max_steps=1", "--set", "model.dropout=0.1")
    assert result.returncode == 0, result.stderr[-2000:]
    child = root / "lr0"
    expected, got = load_file(ckpt / "model.safetensors"), load_file(child / "last" / "model.safetensors")
    assert got.keys() == expected.keys()
    assert all((got[name] == expected[name]).all() for name in expected)
    assert json.loads((child / "last" / "meta.json").read_text())["step"] == 1  # the step count starts afresh
    assert tokenizer_files(child) == tokenizer_files(ckpt) == tokenizer_files(child / "last")
    from nmt.data.tokenizer import UNK, Tokenizer

    assert UNK in Tokenizer.load(child).encode_src([NEW_WORD])[0]
    train = yaml.safe_load((child / "config.yaml").read_text())["train"]
    assert train["init_from"] == str(ckpt)
    assert train["init_sha256"] == hashlib.sha256((ckpt / "model.safetensors").read_bytes()).hexdigest()
    assert train["lr"] == 0 and yaml.safe_load((child / "config.yaml").read_text())["model"]["dropout"] == 0.1


def test_a_recipe_that_changes_the_architecture_is_refused_in_one_line(parent):
    root, ckpt = parent
    result = finetune(root, "wider", "--init-from", str(root / "parent"), "--set", "model.hidden_size=64")
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: model.hidden_size: the parent {ckpt} was trained with 48; ")
    assert result.stderr.count("\n") == 1 and not (root / "wider").exists()


@pytest.mark.parametrize("override, message", [
    ("tokenizer.vocab_size=50", r"^tokenizer.vocab_size: the parent .* was trained with 40; .*not 50$"),
    ("train.init_sha256=abc", r"^train.init_sha256: .* has sha256 [0-9a-f]{64}, not the abc .*"),
    ("train.init_from=/no/such/run", r"^train.init_from: /no/such/run: no such run or checkpoint directory$"),
])
def test_what_the_parent_cannot_serve_is_refused_naming_the_key(parent, override, message):
    from nmt.errors import NmtError
    from nmt.train.finetune import load_config, with_parent

    root, _ = parent
    with pytest.raises(NmtError, match=message):
        with_parent(load_config(new_corpus(root), [f"train.init_from={root / 'parent'}", override]))


def test_freeze_needs_a_parent_and_names_known_parts():
    from nmt.config import from_dict
    from nmt.errors import NmtError

    with pytest.raises(NmtError, match=r"^train.freeze: .* needs train.init_from"):
        from_dict({"train": {"freeze": ["encoder"]}})
    with pytest.raises(NmtError, match=r"^train.freeze: 'decoder' is not one of encoder, embeddings$"):
        from_dict({"train": {"freeze": ["decoder"], "init_from": "x"}})


def test_frozen_parts_stay_the_parents_and_resume_continues_the_finetuning_run(parent):
    """A fine-tuning run with its encoder and embeddings frozen, stopped at step 2 and resumed to step 4
    with the parent moved away (so it cannot be read), ends as the uninterrupted run does."""
    root, ckpt = parent
    freeze = ["--init-from", str(root / "parent"), "--set", "train.freeze=[encoder, embeddings]",
              "--set", "train.eval_every=2", "--set", "train.lr=0.01"]
    full = finetune(root, "frozen", *freeze, "--set", "train.max_steps=4")
    assert full.returncode == 0, full.stderr[-2000:]
    first = finetune(root, "stopped", *freeze, "--set", "train.max_steps=2")
    assert first.returncode == 0, first.stderr[-2000:]
    moved = shutil.move(root / "parent", root / "parent-away")
    try:
        resumed = run_cli("nmt-train", str(root / "child.yaml"), "--run-dir", str(root / "stopped"), "--resume",
                          "--set", "train.max_steps=4")
    finally:
        shutil.move(moved, root / "parent")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from step-00000002" in resumed.stderr
    start, end = load_file(ckpt / "model.safetensors"), load_file(root / "frozen" / "last" / "model.safetensors")
    frozen = [n for n in start if n.startswith("encoder.") or n.endswith("embed.weight")]
    assert "decoder.embed.weight" in frozen and all((end[n] == start[n]).all() for n in frozen)
    assert not (end["decoder.readout.weight"] == start["decoder.readout.weight"]).all()
    again = load_file(root / "stopped" / "last" / "model.safetensors")
    assert all((again[n] == end[n]).all() for n in end)


def test_nmt_prepare_tokenises_with_the_parents_tokenizer_as_the_finetuning_run_will(parent):
    """nmt-prepare reads train.init_from as nmt-train does: no tokenizer of its own is trained, and the
    fine-tuning run then finds both splits in the cache."""
    root, ckpt = parent
    cache = root / "prepared-cache"
    prepared = run_cli("nmt-prepare", str(new_corpus(root)), "--init-from", str(root / "parent"),
                       "--cache-dir", str(cache))
    assert prepared.returncode == 0, prepared.stderr[-2000:]
    assert f"tokenizer: the parent's, {ckpt}" in prepared.stdout
    assert not (cache / "tokenizers").exists()  # the parent's, never one trained on the new corpus
    run = finetune(root, "prepared", "--init-from", str(root / "parent"), "--set", f"data.cache_dir={cache}",
                   "--set", "train.max_steps=1")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "train: 120 pairs from the cache" in run.stderr and "valid: 20 pairs from the cache" in run.stderr
    refused = run_cli("nmt-prepare", str(new_corpus(root)), "--init-from", str(root / "parent"),
                      "--cache-dir", str(cache), "--set", "tokenizer.vocab_size=50")
    assert refused.returncode == 2 and refused.stderr.startswith("error: tokenizer.vocab_size: the parent ")
