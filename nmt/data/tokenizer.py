"""SentencePiece models for source and target, trained on the training split and saved with the run.

Ids are fixed for every model so that the network can rely on them: pad 0, unk 1, bos 2, eos 3.
The source gets EOS appended (so an empty line still has one position to attend to);
the decoder input starts with BOS and the decoder output ends with EOS.

Each side's vocabulary is the pieces that side's training text uses (`tokenizer.min_freq`), as
JoeyNMT and fairseq build their dictionaries: a joint 8k model leaves about 4k pieces on the
English side of Multi30k, and the output layer and softmax of every decoding step shrink with it.
The model's ids index that vocabulary (`vocab.src.txt`, `vocab.tgt.txt`, one piece per line);
a piece outside it reads as <unk>.
"""

from __future__ import annotations

import collections
import io
import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import sentencepiece as spm

from nmt.config import TokenizerConfig
from nmt.data.spans import Located, Span, located
from nmt.data.subword_sampling import vocabulary_only
from nmt.errors import NmtError
from nmt.vocab import BOS, EOS, EOS_PIECE, PAD, UNK

JOINT_FILE, SRC_FILE, TGT_FILE = "spm.model", "spm.src.model", "spm.tgt.model"
SRC_VOCAB, TGT_VOCAB = "vocab.src.txt", "vocab.tgt.txt"


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
        pad_id=PAD, unk_id=UNK, bos_id=BOS, eos_id=EOS, eos_piece=EOS_PIECE,
        minloglevel=2,
    )
    return proto.getvalue()


class Side:
    """One side's SentencePiece processor and the model's vocabulary over its pieces."""

    def __init__(self, proc: spm.SentencePieceProcessor, piece_ids: list[int] | None = None):
        self.proc = proc
        n = proc.get_piece_size()
        self.spm_ids = np.arange(n) if piece_ids is None else np.asarray(piece_ids)  # model id -> spm id
        self.model_ids = np.full(n, UNK)  # spm id -> model id
        self.model_ids[self.spm_ids] = np.arange(len(self.spm_ids))
        self._sampling = None

    @property
    def sampling_proc(self) -> spm.SentencePieceProcessor:
        """The processor that draws this side's sampled segmentations: among its vocabulary's pieces only."""
        if self._sampling is None:
            self._sampling = vocabulary_only(self.proc, self.spm_ids)
        return self._sampling

    def __len__(self) -> int:
        return len(self.spm_ids)

    def encode(self, lines: list[str]) -> list[list[int]]:
        lookup = self.model_ids.tolist()
        return [[lookup[i] for i in ids] for ids in self.proc.encode(list(lines))]

    def vocabulary(self) -> list[str]:
        """The pieces the model's ids stand for, in id order."""
        return [self.proc.id_to_piece(i) for i in self.spm_ids.tolist()]

    def to_spm(self, ids: list[int]) -> list[int]:
        return self.spm_ids[ids].tolist()

    def pieces(self, ids: list[int]) -> list[str]:
        return [self.proc.id_to_piece(i) for i in self.to_spm(ids)]

    def decode(self, ids: list[list[int]]) -> list[str]:
        return self.proc.decode([self.to_spm(seq) for seq in ids])

    def spans(self, lines: list[str]) -> list[list[Span]]:
        """Per line, the byte span in it of each piece that `encode` cuts it into (nmt/data/spans.py)."""
        return [located(message).spans for message in self.proc.encode(list(lines), out_type="proto")]

    def decode_spans(self, ids: list[list[int]]) -> list[Located]:
        """Per id sequence, the text that `decode` writes and the byte span in it of each piece."""
        return [located(message) for message in self.proc.decode([self.to_spm(seq) for seq in ids], out_type="proto")]


def _vocabulary(proc: spm.SentencePieceProcessor, lines: list[str], min_freq: int) -> list[str]:
    """The special pieces, then every piece used at least `min_freq` times in `lines`, in SentencePiece order."""
    counts = collections.Counter(i for ids in proc.encode(list(lines)) for i in ids)
    return [proc.id_to_piece(i) for i in range(proc.get_piece_size())
            if i in (PAD, UNK, BOS, EOS) or counts[i] >= min_freq]


def _write(path: Path, blob: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(blob)
    tmp.replace(path)


class Tokenizer:
    """Source and target sides; with a joint model both read the same SentencePiece file."""

    def __init__(self, src: Side, tgt: Side, files: dict):
        self.src, self.tgt, self.files = src, tgt, files

    @property
    def src_vocab_size(self) -> int:
        return len(self.src)

    @property
    def tgt_vocab_size(self) -> int:
        return len(self.tgt)

    @classmethod
    def train(cls, src_lines: list[str], tgt_lines: list[str], cfg: TokenizerConfig, out_dir: Path):
        """Train on the training split and write the model file(s) and vocabularies into `out_dir`."""
        out_dir.mkdir(parents=True, exist_ok=True)
        if cfg.joint:
            blobs = {JOINT_FILE: _train_model([*src_lines, *tgt_lines], cfg)}
        else:
            blobs = {SRC_FILE: _train_model(src_lines, cfg), TGT_FILE: _train_model(tgt_lines, cfg)}
        for name, blob in blobs.items():
            _write(out_dir / name, blob)
        if cfg.min_freq:
            procs = [spm.SentencePieceProcessor(model_proto=blob) for blob in blobs.values()]
            for name, proc, lines in ((SRC_VOCAB, procs[0], src_lines), (TGT_VOCAB, procs[-1], tgt_lines)):
                _write(out_dir / name, "".join(f"{p}\n" for p in _vocabulary(proc, lines, cfg.min_freq)).encode())
        return cls.load(out_dir)

    @classmethod
    def load(cls, directory: Path):
        directory = Path(directory)
        names = [JOINT_FILE] if (directory / JOINT_FILE).exists() else [SRC_FILE, TGT_FILE]
        procs = [_load_model(directory / name, directory) for name in names]
        sides = [Side(proc, _load_vocabulary(directory / vocab, proc))
                 for proc, vocab in ((procs[0], SRC_VOCAB), (procs[-1], TGT_VOCAB))]
        files = {name: directory / name for name in [*names, SRC_VOCAB, TGT_VOCAB] if (directory / name).exists()}
        return cls(sides[0], sides[1], files)

    def copy_to(self, directory: Path) -> None:
        for name, path in self.files.items():
            shutil.copyfile(path, Path(directory) / name)

    def encode_src(self, lines: list[str]) -> list[list[int]]:
        return [ids + [EOS] for ids in self.src.encode(lines)]

    def encode_tgt(self, lines: list[str]) -> list[list[int]]:
        """Target pieces without BOS/EOS; `batching.collate` adds them for decoder input and output."""
        return self.tgt.encode(lines)

    def src_pieces(self, line: str) -> list[str]:
        return self.src.pieces(self.src.encode([line])[0]) + [EOS_PIECE]

    def tgt_pieces(self, ids: list[int]) -> list[str]:
        return self.tgt.pieces(ids)

    def decode(self, ids: list[list[int]]) -> list[str]:
        return self.tgt.decode(ids)


def _load_model(path: Path, directory: Path) -> spm.SentencePieceProcessor:
    if not path.exists():
        raise NmtError(f"{directory}: no SentencePiece model ({JOINT_FILE} or {SRC_FILE}+{TGT_FILE})")
    proc = spm.SentencePieceProcessor()
    try:
        proc.load(str(path))
    except (OSError, RuntimeError) as err:
        raise NmtError(f"{path}: not a SentencePiece model ({err})") from None
    return proc


def _load_vocabulary(path: Path, proc: spm.SentencePieceProcessor) -> list[int] | None:
    """SentencePiece ids of the pieces listed in `path`; None (every piece) when there is no such file."""
    if not path.exists():
        return None
    try:
        pieces = path.read_text(encoding="utf-8").removesuffix("\n").split("\n")
    except (OSError, UnicodeDecodeError) as err:
        raise NmtError(f"{path}: cannot read vocabulary ({err})") from None
    ids = [proc.piece_to_id(p) for p in pieces]
    if ids[:4] != [PAD, UNK, BOS, EOS]:
        raise NmtError(f"{path}: does not start with the SentencePiece model's pad, unk, bos and eos pieces")
    for line, (piece, i) in enumerate(zip(pieces, ids), 1):
        if i == UNK and line != UNK + 1:
            raise NmtError(f"{path}:{line}: {piece!r} is not a piece of the SentencePiece model beside it")
    return ids
