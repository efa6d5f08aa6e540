"""SentencePiece models for source and target, trained on the training split and saved with the run.

Ids are fixed for every model so that the network can rely on them: pad 0, unk 1, bos 2, eos 3.
The source gets EOS appended (so an empty line still has one position to attend to);
the decoder input starts with BOS and the decoder output ends with EOS.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm

from nmt.config import TokenizerConfig
from nmt.errors import NmtError

PAD, UNK, BOS, EOS = 0, 1, 2, 3
JOINT_FILE, SRC_FILE, TGT_FILE = "spm.model", "spm.src.model", "spm.tgt.model"


def _train_model(sentences: Iterable[str], cfg: TokenizerConfig) -> bytes:
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=proto,
        vocab_size=cfg.vocab_size,
        hard_vocab_limit=False,  # tiny corpora get fewer pieces instead of an error
        model_type=cfg.model_type,
        character_coverage=cfg.character_coverage,
        byte_fallback=cfg.byte_fallback,
        input_sentence_size=cfg.max_sentences,
        shuffle_input_sentence=True,
        pad_id=PAD, unk_id=UNK, bos_id=BOS, eos_id=EOS,
        minloglevel=2,
    )
    return proto.getvalue()


class Tokenizer:
    """Source and target SentencePiece processors (the same object when the model is joint)."""

    def __init__(self, src: spm.SentencePieceProcessor, tgt: spm.SentencePieceProcessor, files: dict):
        self.src, self.tgt, self.files = src, tgt, files

    @property
    def src_vocab_size(self) -> int:
        return self.src.get_piece_size()

    @property
    def tgt_vocab_size(self) -> int:
        return self.tgt.get_piece_size()

    @classmethod
    def train(cls, src_lines: list[str], tgt_lines: list[str], cfg: TokenizerConfig, out_dir: Path):
        """Train on the training split and write the model file(s) into `out_dir`."""
        out_dir.mkdir(parents=True, exist_ok=True)
        if cfg.joint:
            blobs = {JOINT_FILE: _train_model([*src_lines, *tgt_lines], cfg)}
        else:
            blobs = {SRC_FILE: _train_model(src_lines, cfg), TGT_FILE: _train_model(tgt_lines, cfg)}
        for name, blob in blobs.items():
            tmp = out_dir / f".{name}.tmp"
            tmp.write_bytes(blob)
            tmp.replace(out_dir / name)
        return cls.load(out_dir)

    @classmethod
    def load(cls, directory: Path):
        directory = Path(directory)
        names = [JOINT_FILE] if (directory / JOINT_FILE).exists() else [SRC_FILE, TGT_FILE]
        procs = []
        for name in names:
            path = directory / name
            if not path.exists():
                raise NmtError(f"{directory}: no SentencePiece model ({JOINT_FILE} or {SRC_FILE}+{TGT_FILE})")
            proc = spm.SentencePieceProcessor()
            try:
                proc.load(str(path))
            except (OSError, RuntimeError) as err:
                raise NmtError(f"{path}: not a SentencePiece model ({err})") from None
            procs.append(proc)
        files = {name: directory / name for name in names}
        return cls(procs[0], procs[-1], files)

    def copy_to(self, directory: Path) -> None:
        for name, path in self.files.items():
            shutil.copyfile(path, Path(directory) / name)

    def encode_src(self, lines: list[str]) -> list[list[int]]:
        return [ids + [EOS] for ids in self.src.encode(list(lines))]

    def encode_tgt(self, lines: list[str]) -> list[list[int]]:
        """Target pieces without BOS/EOS; `data.collate` adds them for decoder input and output."""
        return self.tgt.encode(list(lines))

    def src_pieces(self, line: str) -> list[str]:
        return self.src.encode(line, out_type=str) + ["</s>"]

    def tgt_pieces(self, ids: list[int]) -> list[str]:
        return [self.tgt.id_to_piece(i) for i in ids]

    def decode(self, ids: list[list[int]]) -> list[str]:
        return self.tgt.decode(ids)
