#!/usr/bin/env python
"""Where a beam search's time goes: torch.profiler with labelled scopes (docs/decoding.md).

    scripts/bench/profile_decode.py RUN_DIR [--dtype int8] [--lines 500] [--beam 5] [--threads 2]

Labels `## step`, `## encode`, `## attention`, `## cells`, `## quantize rows` and one `## int8 NAME`
per int8 layer; a scope's total includes the scopes inside it (the attention's includes its query
product, the cells' their recurrent product). The profiler's own cost inflates small operators.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from nmt.translate import int8
from common import MULTI30K
from nmt import Translator
from nmt.model.attention import BahdanauAttention
from nmt.model.cells import StackedCell
from nmt.translate.inference import InferenceModel

SRC = MULTI30K / "test_2016_flickr.de"


def scoped(label: str, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with record_function(label):
            return fn(*args, **kwargs)
    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--dtype", default="int8")
    parser.add_argument("--src", default=str(SRC))
    parser.add_argument("--lines", type=int, default=500)
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lines = Path(args.src).read_text(encoding="utf-8").splitlines()[:args.lines]
    translator = Translator.load(args.run_dir, device="cpu", dtype=args.dtype)
    translator.translate(lines[:64], beam_size=args.beam)  # warm-up
    InferenceModel.step = scoped("## step", InferenceModel.step)
    InferenceModel.encode = scoped("## encode", InferenceModel.encode)
    BahdanauAttention.forward = scoped("## attention", BahdanauAttention.forward)
    StackedCell.forward = scoped("## cells", StackedCell.forward)
    int8.quantize_rows = scoped("## quantize rows", int8.quantize_rows)
    for name, module in translator.decoding_model.named_modules():
        if isinstance(module, int8.Int8Linear):
            module.forward = scoped(f"## int8 {name}", module.forward)
    with profile(activities=[ProfilerActivity.CPU]) as prof, record_function("## search"):
        translator.translate(lines, beam_size=args.beam, batch_size=64)
    averages = prof.key_averages()
    print(averages.table(sort_by="self_cpu_time_total", row_limit=30))
    for row in averages:
        if row.key.startswith("##"):
            print(f"{row.key:48s} {row.cpu_time_total / 1e3:9.1f} ms total")


if __name__ == "__main__":
    main()
