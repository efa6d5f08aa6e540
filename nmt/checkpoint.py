"""One checkpoint format for resuming and translating, written atomically, loaded without pickle.

    RUN_DIR/checkpoints/step-00001200/
        model.safetensors   weights
        config.yaml         the full config the model was built from
        spm*.model          the tokenizer
        vocab.{src,tgt}.txt the pieces each side's embedding rows stand for
        meta.json           step, epoch, vocabulary sizes, validation scores
        trainer.pt          optimizer/scheduler/scaler/RNG state (resume only; loaded weights_only)
    RUN_DIR/best, RUN_DIR/last   symlinks to step directories, replaced atomically

A checkpoint directory is written as a hidden temporary, then renamed: a kill during a save leaves
the previous checkpoints and links intact. A resumed run first removes what killed saves left
(`clean_interrupted_saves`), and writes a step already saved in that one's place.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import NamedTuple

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from nmt.config import Config, load_saved_config, save_config
from nmt.data.tokenizer import Tokenizer
from nmt.errors import NmtError
from nmt.model.seq2seq import Seq2Seq

log = logging.getLogger(__name__)

# 1: the decoder's recurrent weights in an nn.RNN container, output rows padded to 8s;
# 2: the first layer's input matrix [W C] in one tensor; 3: W and C apart (checkpoint.upgrade reads all)
FORMAT_VERSION = 3
# Hidden names beside the step directories: one being written, and one being replaced.
TEMPORARY, ASIDE = ".tmp-", ".old-"


def save_checkpoint(run_dir: Path, model, cfg: Config, tokenizer: Tokenizer, meta: dict,
                    trainer_state: dict | None, links: tuple[str, ...], keep_last: int) -> Path:
    """Write step-N atomically, point `links` (e.g. 'last', 'best') at it, prune old step dirs."""
    ckpt_root = run_dir / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / f"step-{meta['step']:08d}"
    tmp = ckpt_root / f"{TEMPORARY}{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    write_files(tmp, model, cfg, tokenizer, meta, trainer_state)
    _publish(tmp, final)
    for name in links:
        link_tmp = run_dir / f".{name}.tmp"
        link_tmp.unlink(missing_ok=True)
        link_tmp.symlink_to(Path("checkpoints") / final.name)
        os.replace(link_tmp, run_dir / name)
    _prune(run_dir, keep_last)
    return final


def _publish(tmp: Path, final: Path) -> None:
    """Rename the finished `tmp` to `final`. A step directory already there (left by the run that this
    resumed one continues, past the checkpoint it resumed from) holds other weights: it is moved
    aside first and removed last, so that a kill at any moment leaves `final` or its aside copy,
    which `clean_interrupted_saves` puts back."""
    aside = final.with_name(f"{ASIDE}{final.name}-{os.getpid()}")
    if final.exists():
        os.replace(final, aside)
    os.replace(tmp, final)
    shutil.rmtree(aside, ignore_errors=True)


def clean_interrupted_saves(run_dir: Path) -> None:
    """Undo what saves killed midway left in RUN_DIR: a step directory moved aside goes back if its
    replacement never arrived (else it goes), unfinished temporaries go. Only for a run directory
    that no process is writing (the start of a resumed run)."""
    root, found = run_dir / "checkpoints", 0
    for aside in sorted(root.glob(f"{ASIDE}step-*")):
        final = root / aside.name.removeprefix(ASIDE).rsplit("-", 1)[0]
        if final.exists():
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.replace(aside, final)
        found += 1
    for leftover in [*root.glob(f"{TEMPORARY}step-*"), *(run_dir / f".{n}.tmp" for n in ("last", "best"))]:
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
            found += 1
        elif os.path.lexists(leftover):
            leftover.unlink()
            found += 1
    if found:
        log.info("%s: cleaned up after %d checkpoint save(s) killed midway", run_dir, found)


def write_files(directory: Path, model, cfg: Config, tokenizer: Tokenizer, meta: dict,
                trainer_state: dict | None = None) -> None:
    """A checkpoint's files into an existing (temporary) directory."""
    save_file(weights_to_save(model), str(directory / "model.safetensors"),
              metadata={"nmt_format": str(FORMAT_VERSION)})
    save_config(cfg, directory / "config.yaml")
    tokenizer.copy_to(directory)
    (directory / "meta.json").write_text(json.dumps({"format": FORMAT_VERSION, **meta}, indent=1))
    if trainer_state is not None:
        torch.save(trainer_state, directory / "trainer.pt")


def _prune(run_dir: Path, keep_last: int) -> None:
    steps = sorted(p for p in (run_dir / "checkpoints").glob("step-*") if p.is_dir())
    linked = {(run_dir / n).resolve() for n in ("best", "last") if (run_dir / n).exists()}
    for path in steps[:-keep_last]:
        if path.resolve() not in linked:
            shutil.rmtree(path, ignore_errors=True)


def resolve(path: str | Path) -> Path:
    """A run directory (its best checkpoint, else its last) or a checkpoint directory."""
    path = Path(path)
    if not path.exists():
        raise NmtError(f"{path}: no such run or checkpoint directory")
    if (path / "model.safetensors").exists():
        return path
    for name in ("best", "last"):
        if (path / name / "model.safetensors").exists():
            return (path / name).resolve()
    raise NmtError(f"{path}: not a checkpoint (no model.safetensors) and no best/last checkpoint in it")


def read_meta(ckpt: Path) -> dict:
    try:
        return json.loads((ckpt / "meta.json").read_text())
    except (OSError, ValueError) as err:
        raise NmtError(f"{ckpt / 'meta.json'}: unreadable ({err})") from None


def weights_to_save(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Each tensor once, on the CPU, owning its memory. Tied weights (one tensor under two names) keep
    their first name; loading fills the twin by tying. On a GPU, cuDNN keeps a recurrent layer's
    weights as views of one flat buffer, which safetensors' `save_model` refuses as shared memory."""
    state, seen = {}, set()
    for name, tensor in model.state_dict().items():
        key = (tensor.device, tensor.data_ptr(), tuple(tensor.shape), tensor.stride())
        if key not in seen:
            seen.add(key)
            tensor = tensor.detach().cpu()
            if tensor.untyped_storage().nbytes() != tensor.numel() * tensor.element_size():
                tensor = tensor.clone()  # a view into a larger buffer: a copy of its own
            state[name] = tensor
    return state


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Load safetensors weights, naming the first tensor that does not fit the model."""
    expected = model.state_dict()
    try:
        with safe_open(str(path), framework="pt") as f:
            state = upgrade(f.metadata() or {}, {name: f.get_tensor(name) for name in f.keys()}, expected)
    except (SafetensorError, OSError) as err:
        raise NmtError(f"{path}: not a readable safetensors file ({err})") from None
    check_same_tensors(state, expected, path, "the model expects")
    model.load_state_dict(state, strict=False)


def check_same_tensors(state: dict, expected: dict, path: Path, whose: str) -> None:
    """Refuse `state` (the tensors of `path`) unless it holds `expected`'s names and shapes, naming the
    first that differs (`whose` says what `expected` is: "the model expects", "run/best has").
    A tensor may be missing where it is tied to one present (safetensors keeps one name per storage)."""
    for name, tensor in expected.items():
        if name not in state:
            if any(tensor.data_ptr() == t.data_ptr() for n, t in expected.items() if n in state):
                continue
            raise NmtError(f"{path}: no tensor {name} ({whose} it); the checkpoint is of another architecture")
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise NmtError(f"{path}: {name} has shape {tuple(state[name].shape)}, {whose} "
                           f"{tuple(tensor.shape)} (another architecture or vocabulary)")
    extra = set(state) - set(expected)
    if extra:
        raise NmtError(f"{path}: unexpected tensor {sorted(extra)[0]}; the checkpoint is of another architecture")


_OLD_RNN = re.compile(r"decoder\.rnn\.(weight|bias)_(ih|hh)_l(\d+)$")


def upgrade(metadata: dict, state: dict, expected: dict) -> dict:
    """An older checkpoint's tensors under today's names and shapes (safetensors metadata "nmt_format";
    absent: format 1).

    Format 1 kept the decoder's layers in an nn.RNN/GRU/LSTM (weight_ih_l0 ...: now rnn.input.0.weight
    ...) and padded the output rows to a multiple of 8 for MKL: the padding rows were never trained
    and are cut here, so no old model has to be retrained. Formats 1 and 2 kept the first layer's
    input matrix as one [W C] tensor over [E y; c]: its context columns are now context_gates.
    """
    version = int(metadata.get("nmt_format", 1))
    if version >= 3:
        return state
    renamed = {}
    embed_size = expected["decoder.rnn.input.0.weight"].size(1)
    for name, tensor in state.items():
        match = _OLD_RNN.match(name)
        if match:
            kind, side, layer = match.groups()
            name = f"decoder.rnn.{'input' if side == 'ih' else 'recurrent'}.{layer}.{kind}"
        if name == "decoder.rnn.input.0.weight" and tensor.size(1) > embed_size:  # [W C]
            renamed["decoder.context_gates.weight"] = tensor[:, embed_size:].contiguous()
            tensor = tensor[:, :embed_size].contiguous()
        if version == 1 and name in ("decoder.out.weight", "decoder.embed.weight") and name in expected:
            rows = expected[name].size(0)
            if tensor.size(0) == -(-rows // 8) * 8:
                tensor = tensor[:rows].contiguous()
        renamed[name] = tensor
    return renamed


def read_config(ckpt: Path) -> Config:
    """The config a checkpoint's model was built and trained with."""
    return load_saved_config(ckpt / "config.yaml")


class Checkpoint(NamedTuple):
    """A loaded checkpoint: the model (eval mode), its tokenizer, its config and meta.json."""

    model: Seq2Seq
    tokenizer: Tokenizer
    cfg: Config
    meta: dict


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Rebuild the model from the checkpoint's own config and load its weights (eval mode)."""
    ckpt = resolve(path)
    cfg = read_config(ckpt)
    tokenizer = Tokenizer.load(ckpt)
    meta = read_meta(ckpt)
    model = Seq2Seq(cfg.model, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size, initialise=False)
    load_weights(model, ckpt / "model.safetensors")  # every tensor, or an error naming the one missing
    return Checkpoint(model.eval(), tokenizer, cfg, meta)


def load_trainer_state(ckpt: Path) -> dict:
    """Optimizer/scheduler/RNG state; weights_only refuses anything that would run code."""
    try:
        return torch.load(ckpt / "trainer.pt", map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise NmtError(f"{ckpt}: no trainer.pt, cannot resume from it") from None
    except Exception as err:  # unpickling errors come in many types; all mean the same to the user
        raise NmtError(f"{ckpt / 'trainer.pt'}: refused or unreadable ({str(err).splitlines()[0]})") from None
