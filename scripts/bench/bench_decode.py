#!/usr/bin/env python
"""Decoding at fp32 / bf16 / int8: speed, BLEU, memory, and the step against its bare products.

    scripts/bench/bench_decode.py RUN_DIR [--dtypes fp32 bf16 int8] [--src F --ref F] [--threads 2]
                                  [--workers 0] [--repeats 3] [--batch-size 64] [--cap-avx2] [--json OUT.json]

Each precision runs in a process of its own (so that its peak RSS is its own), and decodes --src
(default: Multi30k test_2016_flickr.de) greedy and with beam 5: sentences/s (median of --repeats
passes after a warm-up) and sacreBLEU against --ref, with decode.workers (default: the default, one
worker per thread on a CPU; --workers 1: one batch at a time on every thread). --cap-avx2 runs the
children with torch's and oneDNN's kernels capped at AVX2 (ATEN_CPU_CAPABILITY=avx2,
ONEDNN_MAX_CPU_ISA=AVX2) on an AVX-512 machine: a cap, not AVX2 hardware (the table says so).

The floor: one untimed pass records every step's shape (hypothesis rows R, source length S); the
same products are then replayed on random inputs through the decoding model's own layers (query
projection, recurrent and deeper input matrices, readout, output layer; int8 layers under int8)
plus the attention's score and context products. `step / products` says how much of a step is
anything but arithmetic; GFLOP/s is the products' work per second of search, against a bare
`torch.mm` of the output layer's shape (the largest product) as the machine's measured peak. The
products replay one batch at a time on --threads: `step / products` reads as a share with --workers 1.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from nmt.evaluate import score  # noqa: E402
from nmt.translate.translator import Translator, autocast  # noqa: E402

from common import MULTI30K as DATA

AVX2_CAP = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def record_shapes(translator: Translator, lines: list[str], beam: int, batch: int) -> list[tuple[int, int, int]]:
    """(R, b, S) of every decoding step of one pass: hypothesis rows, sentences, source length."""
    model, shapes = translator.decoding_model, []
    step = model.step

    def recording(tokens, state, source):
        shapes.append((tokens.size(0), source.values.size(0), source.values.size(1)))
        return step(tokens, state, source)

    model.step = recording
    try:
        translator.translate_hyps(lines, beam_size=beam, batch_size=batch)
    finally:
        del model.step
    return shapes


class Products:
    """The step's matrix products for given (R, b, S), on random inputs cut from buffers made once
    (so that the timed passes run products only)."""

    def __init__(self, model, shapes: list[tuple[int, int, int]]):
        dec, (R, b, S) = model.model.decoder, [max(x) for x in zip(*shapes)]
        self.model, self.dec = model, dec
        self.A, self.width = dec.attention.key_proj.out_features, model.table.size(1)
        self.h, self.o = torch.rand(R, dec.rnn.hidden_size), torch.rand(R, model.out.in_features)
        self.scores, self.alpha = torch.rand(R * S * self.A), torch.rand(R * S)
        self.values = torch.rand(b * S * self.width)

    def __call__(self, R: int, b: int, S: int) -> None:
        model, dec, h = self.model, self.dec, self.h[:R]
        model.state_out(h)
        model.out(self.o[:R])
        dec.attention.query_proj(h)
        for layer, U in enumerate(dec.rnn.recurrent):
            U(h)
            if layer:
                dec.rnn.input[layer](h)
        # Scores: σ(...) (R, S, A) @ v; context: (b, K, S) @ (b, S, M'), the beams sharing their sentence's values.
        torch.mv(self.scores[:R * S * self.A].view(R * S, self.A), dec.attention.v.weight[0])
        torch.bmm(self.alpha[:R * S].view(b, R // b, S), self.values[:b * S * self.width].view(b, S, self.width))


def flops(model, R: int, b: int, S: int) -> float:
    dec = model.model.decoder
    H, L = dec.rnn.hidden_size, len(dec.rnn.recurrent)
    gates, E = dec.rnn.recurrent[0].out_features, model.out.in_features
    A, width = dec.attention.key_proj.out_features, model.table.size(1)
    per_row = H * A + L * H * gates + (L - 1) * H * gates + H * E + E * model.out.out_features
    return 2.0 * R * (per_row + S * (A + width))


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def one_precision(args) -> dict:
    torch.set_num_threads(args.threads)
    lines = Path(args.src).read_text(encoding="utf-8").splitlines()
    refs = Path(args.ref).read_text(encoding="utf-8").splitlines()
    translator = Translator.load(args.run_dir, device="cpu", dtype=args.dtype)
    model, result = translator.decoding_model, {"dtype": args.dtype}
    for beam in (1, 5):
        seconds = timed(lambda: translator.translate_hyps(lines, beam_size=beam, batch_size=args.batch_size,
                                                          workers=args.workers), args.repeats)
        hyps = translator.translate(lines, beam_size=beam, batch_size=args.batch_size)
        shapes = record_shapes(translator, lines, beam, args.batch_size)
        with torch.inference_mode(), autocast(translator.device, args.dtype):
            replay = Products(model, shapes)
            bare = timed(lambda: [replay(*shape) for shape in shapes], args.repeats)
        work = sum(flops(model, *shape) for shape in shapes)
        result[f"beam{beam}"] = {"sentences_per_s": round(len(lines) / seconds, 1), "seconds": round(seconds, 2),
                                 "bleu": round(score(hyps, refs)["bleu"], 2), "steps": len(shapes),
                                 "products_s": round(bare, 2), "step_over_products": round(seconds / bare, 2),
                                 "gflops_per_s": round(work / seconds / 1e9, 1)}
    if args.alone:
        result["alone_differs"] = alone_differs(translator, lines[:args.alone], args.batch_size)
    result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return result


def alone_differs(translator: Translator, lines: list[str], batch: int) -> dict:
    """Beam 5: of `lines`, how many get another translation alone than in batches of `batch`, and
    the largest score difference."""
    batched = [h[0] for h in translator.translate_hyps(lines, beam_size=5, batch_size=batch)]
    alone = [translator.translate_hyps([line], beam_size=5)[0][0] for line in lines]
    return {"lines": len(lines), "tokens": sum(a.tokens != b.tokens for a, b in zip(alone, batched)),
            "max_score_diff": max(abs(a.score - b.score) for a, b in zip(alone, batched))}


def matmul_peak(threads: int, rows: int, cols: int, inner: int) -> float:
    """GFLOP/s of a bare fp32 torch.mm loop of one shape."""
    torch.set_num_threads(threads)
    x, w = torch.rand(rows, inner), torch.rand(inner, cols)
    seconds = timed(lambda: [torch.mm(x, w) for _ in range(50)], 3)
    return 2.0 * rows * cols * inner * 50 / seconds / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16", "int8"])
    parser.add_argument("--dtype", help=argparse.SUPPRESS)  # one precision, in a child process
    parser.add_argument("--src", default=str(DATA / "test_2016_flickr.de"))
    parser.add_argument("--ref", default=str(DATA / "test_2016_flickr.en"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0, help="decode.workers (0: the default)")
    parser.add_argument("--cap-avx2", action="store_true", help="cap torch's and oneDNN's kernels at AVX2")
    parser.add_argument("--alone", type=int, default=0,
                        help="also translate the first N lines alone (beam 5) and count those that differ from batched")
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.dtype:
        print(json.dumps(one_precision(args)))
        return
    rows = []
    for dtype in args.dtypes:
        child = [sys.executable, __file__, *sys.argv[1:], "--dtype", dtype]
        env = {**os.environ, **(AVX2_CAP if args.cap_avx2 else {})}
        out = subprocess.run(child, capture_output=True, text=True, env=env)
        if out.returncode:
            sys.exit(f"{dtype}: {out.stderr.strip().splitlines()[-1]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    translator = Translator.load(args.run_dir, device="cpu")
    out_layer = translator.decoding_model.out
    peak = matmul_peak(args.threads, 320, out_layer.out_features, out_layer.in_features)
    print(table(rows, peak, args))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "mm_peak_gflops": round(peak, 1),
                                               "threads": args.threads, "run_dir": args.run_dir}, indent=1))


def table(rows: list[dict], peak: float, args) -> str:
    cap = ", kernels capped at AVX2 on this CPU (not AVX2 hardware)" if args.cap_avx2 else ""
    head = (f"{args.run_dir}, {Path(args.src).name}, {args.threads} threads, workers {args.workers or 'default'}, "
            f"torch {torch.__version__}, CPU {torch.backends.cpu.get_cpu_capability()}{cap}; bare fp32 torch.mm "
            f"(320 rows x the output layer): {peak:.0f} GFLOP/s\n")
    lines = [head, "| precision | search | sentences/s | vs fp32 | BLEU | GFLOP/s | step / products | peak RSS MiB |",
             "|---|---|---|---|---|---|---|---|"]
    base = {b: r[b]["sentences_per_s"] for r in rows if r["dtype"] == "fp32" for b in ("beam1", "beam5")}
    for r in rows:
        for beam, name in (("beam1", "greedy"), ("beam5", "beam 5")):
            x = r[beam]
            ratio = f"{x['sentences_per_s'] / base[beam]:.2f}x" if base else ""
            lines.append(f"| {r['dtype']} | {name} | {x['sentences_per_s']} | {ratio} | {x['bleu']} | "
                         f"{x['gflops_per_s']} | {x['step_over_products']} | {r['peak_rss_mib']} |")
    for r in rows:
        if "alone_differs" in r:
            a = r["alone_differs"]
            lines.append(f"{r['dtype']}, beam 5: {a['tokens']} of {a['lines']} lines differ alone vs batched; "
                         f"scores by up to {a['max_score_diff']:.2g}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
