"""A trained model's scores on its corpus's splits: each split translated, then scored by sacreBLEU
overall and by source length (`nmt-evaluate RUN_DIR`, and the test splits at the end of training)."""

from __future__ import annotations

import time
from pathlib import Path

from nmt.data.splits import load_split
from nmt.evaluate import by_length
from nmt.translate.translator import Translator


def resolve_splits(cfg, names: list[str]) -> list[str]:
    """'test' -> the recipe's test splits, 'valid' -> its validation split, anything else as given."""
    out = []
    for name in names:
        out += cfg.data.test if name == "test" and cfg.data.test else [cfg.data.valid] if name == "valid" else [name]
    return out


def evaluate_checkpoint(path, splits: list[str], device, beam_size: int | None = None,
                        hyp_dir: Path | None = None, edges: list[int] | None = None,
                        threshold: int | None = None) -> dict:
    """Translate each split of the checkpoint's corpus and score it overall and by source length."""
    translator = Translator.load(path, device=None if device is None else str(device))
    cfg = translator.cfg
    edges, threshold = edges or cfg.eval.length_buckets, threshold or cfg.eval.short_long_threshold
    results = {}
    for split in resolve_splits(cfg, splits):
        ds = load_split(cfg.data, split)
        srcs, refs = list(ds["src"]), list(ds["tgt"])
        start = time.perf_counter()
        hyps = translator.translate(srcs, beam_size=beam_size)
        seconds = time.perf_counter() - start
        if hyp_dir is not None:
            (hyp_dir / f"{Path(split).name}.hyp").write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
        table = by_length(hyps, refs, srcs, edges, threshold, cfg.eval.tokenize)
        results[split] = {"beam_size": beam_size or cfg.decode.beam_size,
                          "sentences_per_s": round(len(srcs) / seconds, 1), **table}
    return results
