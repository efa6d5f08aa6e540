"""Checkpoints: atomic writes, keep-last-N, and loading that refuses code and names mismatches."""

import os
import shutil

import pytest
import torch
import yaml

from conftest import run_cli
from nmt import checkpoint
from nmt.config import Config, ModelConfig
from nmt.data.tokenizer import Tokenizer
from nmt.errors import NmtError
from nmt.model.seq2seq import Seq2Seq


@pytest.fixture
def run_copy(reverse_run, tmp_path):
    root, _, _ = reverse_run
    run = tmp_path / "run"
    shutil.copytree(root / "run", run, symlinks=True)
    return run


TINY_CFG = Config(model=ModelConfig(embed_size=4, hidden_size=4, decoder_hidden_size=4, attention_size=4))


def tiny_save(run_dir, step, tokenizer, links=("last",), keep_last=2, model=None):
    """Save `model` (default: a fresh tiny one) as step-`step` of `run_dir`; returns its directory."""
    if model is None:
        model = Seq2Seq(TINY_CFG.model, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size)
    return checkpoint.save_checkpoint(run_dir, model, TINY_CFG, tokenizer, {"step": step}, {"x": torch.zeros(1)},
                                      links, keep_last)


def assert_loads_as_saved(path, model, tokenizer, step):
    """`path` loads as what was saved: every tensor equal, the same config, vocabularies and
    tokenization (its own sentences encode to the same ids), and its step."""
    loaded, loaded_tok, cfg, meta = checkpoint.load_checkpoint(path)
    saved = model.state_dict()
    assert loaded.state_dict().keys() == saved.keys()
    for name, tensor in saved.items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    assert cfg == TINY_CFG and meta["step"] == step
    assert loaded_tok.src.vocabulary() == tokenizer.src.vocabulary()
    assert loaded_tok.tgt.vocabulary() == tokenizer.tgt.vocabulary()
    src, tgt = ["w1 w2 w3", "w11 w0 w7 w7"], ["v3 v2 v1", "v7 v7 v0 v11"]
    assert loaded_tok.encode_src(src) == tokenizer.encode_src(src)
    assert loaded_tok.encode_tgt(tgt) == tokenizer.encode_tgt(tgt)


def test_keep_last_n_never_deletes_best_or_last(run_copy, tmp_path):
    tok = Tokenizer.load(run_copy)
    run_dir = tmp_path / "fresh"
    for step in range(1, 6):
        tiny_save(run_dir, step, tok, links=("last", "best") if step == 2 else ("last",))
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert names == ["step-00000002", "step-00000004", "step-00000005"]
    assert os.readlink(run_dir / "best").endswith("step-00000002")
    assert os.readlink(run_dir / "last").endswith("step-00000005")


def test_a_save_killed_midway_leaves_the_previous_checkpoint(run_copy, tmp_path, monkeypatch):
    tok = Tokenizer.load(run_copy)
    run_dir = tmp_path / "fresh"
    survivor = Seq2Seq(TINY_CFG.model, tok.src_vocab_size, tok.tgt_vocab_size)
    tiny_save(run_dir, 1, tok, model=survivor)

    def dies(*args, **kwargs):
        raise KeyboardInterrupt  # stands for a kill in the middle of writing

    monkeypatch.setattr(torch, "save", dies)
    with pytest.raises(KeyboardInterrupt):
        tiny_save(run_dir, 2, tok)
    assert os.readlink(run_dir / "last").endswith("step-00000001")
    assert not (run_dir / "checkpoints" / "step-00000002").exists()
    assert_loads_as_saved(run_dir, survivor, tok, step=1)  # the survivor still loads, whole


def test_a_save_at_an_existing_step_writes_its_own_directory(run_copy, tmp_path):
    """A resumed run reaching a step-N that the run it continues left behind (killed after the
    rename, before the links) saves its own weights there, not links to the old ones."""
    tok = Tokenizer.load(run_copy)
    run_dir = tmp_path / "fresh"
    tiny_save(run_dir, 1, tok)
    old = tiny_save(run_dir, 2, tok, links=())  # written, never linked
    before = (old / "model.safetensors").read_bytes()
    torch.manual_seed(1)  # other initial weights: the resumed run's own
    tiny_save(run_dir, 2, tok, links=("last", "best"))
    for name in ("last", "best"):
        assert os.readlink(run_dir / name).endswith("step-00000002")
        assert (run_dir / name / "model.safetensors").read_bytes() != before
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step-00000001", "step-00000002"]


def test_a_resumed_run_cleans_up_after_saves_killed_midway(run_copy, tmp_path):
    tok = Tokenizer.load(run_copy)
    run_dir = tmp_path / "fresh"
    for step in (1, 2):
        tiny_save(run_dir, step, tok)
    root = run_dir / "checkpoints"
    (root / ".tmp-step-00000003-4242").mkdir()  # killed while writing step 3
    (root / ".tmp-step-00000003-4242" / "model.safetensors").write_bytes(b"half")
    # Killed while replacing step 2 (the one 'last' names): moved aside, its replacement not yet in place.
    os.replace(root / "step-00000002", root / ".old-step-00000002-4242")
    shutil.copytree(root / "step-00000001", root / ".old-step-00000001-4343")  # killed after the replacement
    (run_dir / ".last.tmp").symlink_to("checkpoints/step-00000001")
    checkpoint.clean_interrupted_saves(run_dir)
    assert sorted(os.listdir(root)) == ["step-00000001", "step-00000002"]
    assert sorted(os.listdir(run_dir)) == ["checkpoints", "last"]
    assert checkpoint.read_meta((run_dir / "last").resolve())["step"] == 2


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/nmt-pwned",))


def test_a_pickle_that_runs_code_is_refused(run_copy):
    if os.path.exists("/tmp/nmt-pwned"):
        os.remove("/tmp/nmt-pwned")
    last = (run_copy / "last").resolve()
    torch.save({"optimizer": Exploit()}, last / "trainer.pt")
    with pytest.raises(NmtError, match="trainer.pt: refused or unreadable"):
        checkpoint.load_trainer_state(last)
    assert not os.path.exists("/tmp/nmt-pwned")
    result = run_cli("nmt-train", str(run_copy / "config.yaml"), "--run-dir", str(run_copy), "--resume")
    assert result.returncode == 2 and "refused or unreadable" in result.stderr and "Traceback" not in result.stderr
    assert not os.path.exists("/tmp/nmt-pwned")


def test_pickled_weights_are_not_safetensors(run_copy):
    best = (run_copy / "best").resolve()
    torch.save({"w": Exploit()}, best / "model.safetensors")
    result = run_cli("nmt-translate", str(run_copy), stdin="w1 w2\n")
    assert result.returncode == 2 and "not a readable safetensors file" in result.stderr
    assert not os.path.exists("/tmp/nmt-pwned")


def test_truncated_weights_are_reported(run_copy):
    path = (run_copy / "best").resolve() / "model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(NmtError, match="not a readable safetensors file"):
        checkpoint.load_checkpoint(run_copy)


@pytest.mark.parametrize("change, message", [
    ({"cell": "lstm"}, "has shape"),  # gates: 4 H rows instead of 3 H
    ({"hidden_size": 64}, "has shape"),
    ({"num_layers": 2}, "no tensor encoder.rnn.weight_ih_l1"),
])
def test_a_checkpoint_of_another_architecture_names_the_mismatch(run_copy, change, message):
    best = (run_copy / "best").resolve()
    cfg = yaml.safe_load((best / "config.yaml").read_text())
    cfg["model"].update(change)
    (best / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(NmtError, match=message) as err:
        checkpoint.load_checkpoint(run_copy)
    assert "\n" not in str(err.value)


def test_a_config_from_before_readout_size_loads_with_the_embedding_sized_readout(run_copy, tmp_path):
    """Before model.readout_size, the readout had the embedding's size; the default is now the
    decoder's. A checkpoint's config.yaml without the key must still build the model it was."""
    tok = Tokenizer.load(run_copy)
    cfg = Config(model=ModelConfig(embed_size=4, hidden_size=4, decoder_hidden_size=6, attention_size=4,
                                   readout_size=4))
    model = Seq2Seq(cfg.model, tok.src_vocab_size, tok.tgt_vocab_size)
    ckpt = checkpoint.save_checkpoint(tmp_path / "old", model, cfg, tok, {"step": 1}, {}, ("last",), 1)
    saved = yaml.safe_load((ckpt / "config.yaml").read_text())
    del saved["model"]["readout_size"]
    (ckpt / "config.yaml").write_text(yaml.safe_dump(saved))
    loaded, _, loaded_cfg, _ = checkpoint.load_checkpoint(ckpt)
    assert loaded_cfg.model.readout_size == 4 and loaded.decoder.out.weight.shape[1] == 4
    torch.testing.assert_close(loaded.decoder.out.weight, model.decoder.out.weight)


def test_another_vocabulary_names_the_mismatch(run_copy, tmp_path):
    other = Tokenizer.train(["a b c d e f g"] * 50, ["h i j k l m"] * 50,
                            Config().tokenizer.__class__(vocab_size=20), tmp_path / "spm")
    best = (run_copy / "best").resolve()
    other.copy_to(best)
    with pytest.raises(NmtError, match=r"embed.weight has shape \(\d+, 32\), the model expects \(\d+, 32\) \(another architecture or vocabulary\)"):
        checkpoint.load_checkpoint(run_copy)


@pytest.mark.parametrize("cell, tie", [("gru", False), ("lstm", True)])
def test_a_format_1_checkpoint_loads_with_its_padding_rows_cut(cell, tie, tmp_path):
    """Format 1 kept the decoder's layers in an nn.RNN container (weight_ih_l0 ...) and padded the
    output rows to a multiple of 8; such a file must load into today's model with the same values."""
    from safetensors.torch import save_file

    cfg = ModelConfig(cell=cell, embed_size=4, hidden_size=4, decoder_hidden_size=6, attention_size=4,
                      readout_size=4, num_layers=2, tie_embeddings=tie)
    model = Seq2Seq(cfg, src_vocab_size=11, tgt_vocab_size=13)
    old, today = {}, model.state_dict()
    for name, tensor in today.items():
        if name == "decoder.context_gates.weight":
            continue  # format 1 kept C in the first layer's input matrix: [W C]
        if name == "decoder.rnn.input.0.weight":
            tensor = torch.cat([tensor, today["decoder.context_gates.weight"]], 1)
        if name.startswith("decoder.rnn."):  # decoder.rnn.input.1.weight -> decoder.rnn.weight_ih_l1
            _, _, side, layer, kind = name.split(".")
            name = f"decoder.rnn.{kind}_{'ih' if side == 'input' else 'hh'}_l{layer}"
        if name in ("decoder.out.weight", "decoder.embed.weight"):
            tensor = torch.cat([tensor, torch.randn(3, tensor.size(1))])  # 13 rows padded to 16
        old[name] = tensor.clone()
    if tie:
        del old["decoder.out.weight"]  # one name per shared tensor, as save_model writes it
    save_file(old, str(tmp_path / "model.safetensors"))  # no nmt_format metadata: format 1
    fresh = Seq2Seq(cfg, src_vocab_size=11, tgt_vocab_size=13)
    checkpoint.load_weights(fresh, tmp_path / "model.safetensors")
    for name, tensor in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], tensor), name
    assert (fresh.decoder.out.weight is fresh.decoder.embed.weight) == tie


def test_a_format_2_checkpoint_loads_with_the_context_columns_split_off(tmp_path):
    """Format 2 had today's names but the first layer's [W C] in one tensor."""
    from safetensors.torch import save_file

    cfg = ModelConfig(embed_size=4, hidden_size=4, decoder_hidden_size=6, attention_size=4)
    model = Seq2Seq(cfg, src_vocab_size=11, tgt_vocab_size=13)
    old = {k: v.clone() for k, v in model.state_dict().items() if k != "decoder.context_gates.weight"}
    old["decoder.rnn.input.0.weight"] = torch.cat([old["decoder.rnn.input.0.weight"],
                                                   model.decoder.context_gates.weight.detach()], 1)
    save_file(old, str(tmp_path / "model.safetensors"), metadata={"nmt_format": "2"})
    fresh = Seq2Seq(cfg, src_vocab_size=11, tgt_vocab_size=13)
    checkpoint.load_weights(fresh, tmp_path / "model.safetensors")
    for name, tensor in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], tensor), name


@pytest.mark.parametrize("tie", [False, True])
def test_weights_that_are_views_of_one_buffer_save_and_load(tie, run_copy, tmp_path):
    """On a GPU, cuDNN keeps a recurrent layer's weights as views of one flat buffer; safetensors'
    save_model refused that as shared memory, so no GPU run could write a checkpoint. The same views
    are made here on the CPU; tied embeddings must still be written once."""
    from safetensors import safe_open
    from safetensors.torch import save_model

    tok = Tokenizer.load(run_copy)
    cfg = Config(model=ModelConfig(cell="lstm", embed_size=4, hidden_size=4, decoder_hidden_size=6,
                                   attention_size=4, readout_size=4, tie_embeddings=tie))
    model = Seq2Seq(cfg.model, tok.src_vocab_size, tok.tgt_vocab_size)
    params = list(model.encoder.rnn.parameters())
    flat = torch.cat([p.detach().flatten() for p in params])
    offset = 0
    for p in params:
        p.data = flat[offset:offset + p.numel()].view_as(p)
        offset += p.numel()
    with pytest.raises(RuntimeError, match="no suitable name to keep"):
        save_model(model, str(tmp_path / "refused.safetensors"))
    ckpt = checkpoint.save_checkpoint(tmp_path / "run", model, cfg, tok, {"step": 1}, None, ("last",), 1)
    with safe_open(str(ckpt / "model.safetensors"), framework="pt") as f:
        names = set(f.keys())
    assert len(names) == len(model.state_dict()) - tie
    loaded, _, _, _ = checkpoint.load_checkpoint(ckpt)
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    assert (loaded.decoder.out.weight is loaded.decoder.embed.weight) == tie
