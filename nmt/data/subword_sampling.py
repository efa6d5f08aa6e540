"""Subword regularization: a training line's segmentation drawn anew every epoch (tokenizer.sampling).

SentencePiece draws unigram segmentations (Kudo 2018: `alpha`, `nbest_size`) and BPE-dropout
(Provilkov et al. 2020: `alpha`) from one random generator per thread. Each line's draw is made
under a seed of its own, a hash of (train.seed, epoch, side, line number), so that a line is cut the
same way whatever the order, the blocks or the worker processes that draw it, and a resumed run
draws what the first one did. The epoch's draw is tokenised into the data cache like any split
(nmt/data/prepare.py), so the length filter and the token budget see the sampled lengths.

A sampled segmentation may use pieces that the side's vocabulary (tokenizer.min_freq) left out;
they would read as <unk>. The sampling processor has those pieces marked unused, so it draws only
among segmentations into the vocabulary (the deterministic one of a training line always is one).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as model_pb2

from nmt.config import SamplingConfig
from nmt.vocab import UNK

# The lattice of a unigram model spells a character no kept piece covers as <unk> (with a penalty
# that a low alpha flattens away); such a draw would teach <unk> for a word the vocabulary can spell.
RETRIES, RETRY_STRIDE = 4, 0x9E3779B9
SIDES = {"none": (False, False), "source": (True, False), "target": (False, True), "both": (True, True)}
# splitmix64's constants (Steele et al. 2014): a line number's bits spread over the whole seed.
GOLDEN, MIX1, MIX2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


class Draw(NamedTuple):
    """One epoch's draw: the sides sampled, SentencePiece's settings, and what its seeds derive from."""
    src: bool
    tgt: bool
    alpha: float
    nbest_size: int
    seed: int
    epoch: int


def epoch_draw(cfg: SamplingConfig, seed: int, epoch: int) -> Draw | None:
    """The draw of `epoch` (0-based), or None when sampling is off."""
    src, tgt = SIDES[cfg.sides]
    return Draw(src, tgt, cfg.alpha, cfg.nbest_size, seed, epoch) if src or tgt else None


def line_seeds(draw: Draw, side: int, lines: np.ndarray) -> np.ndarray:
    """SentencePiece seeds (uint32) of `lines` (line numbers in the split) on `side` (0 source, 1 target)."""
    base = np.random.SeedSequence([draw.seed, draw.epoch, side]).generate_state(1, np.uint64)[0]
    z = base + (np.asarray(lines, dtype=np.uint64) + np.uint64(1)) * GOLDEN  # wraps modulo 2**64
    z = (z ^ (z >> np.uint64(30))) * MIX1
    z = (z ^ (z >> np.uint64(27))) * MIX2
    return ((z ^ (z >> np.uint64(31))) & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def vocabulary_only(proc: spm.SentencePieceProcessor, kept: np.ndarray) -> spm.SentencePieceProcessor:
    """A copy of `proc` whose normal pieces outside `kept` (SentencePiece ids) are unused: never drawn."""
    if len(kept) == proc.get_piece_size():
        return proc
    model = model_pb2.ModelProto()
    model.ParseFromString(proc.serialized_model_proto())
    keep = np.zeros(len(model.pieces), dtype=bool)
    keep[kept] = True
    for i, piece in enumerate(model.pieces):
        if not keep[i] and piece.type == model_pb2.ModelProto.SentencePiece.NORMAL:
            piece.type = model_pb2.ModelProto.SentencePiece.UNUSED
    return spm.SentencePieceProcessor(model_proto=model.SerializeToString())


def sample(proc: spm.SentencePieceProcessor, lines: list[str], seeds: np.ndarray, draw: Draw) -> list[list[int]]:
    """Each line's SentencePiece ids, drawn under its own seed; a draw with an <unk> that the line's
    plain segmentation has not is drawn again under the next seeds, and after RETRIES the plain one is taken."""
    out = []
    for line, seed in zip(lines, seeds.tolist()):
        for attempt in range(RETRIES):
            spm.set_random_generator_seed((seed + attempt * RETRY_STRIDE) & 0xFFFFFFFF)  # global, read per call
            ids = proc.encode(line, enable_sampling=True, alpha=draw.alpha, nbest_size=draw.nbest_size)
            if UNK not in ids:
                break
        else:
            plain = proc.encode(line)
            ids = plain if UNK not in plain else ids  # a line with its own <unk> keeps the draw
        out.append(ids)
    return out
