#!/usr/bin/env python3
"""Beam search's stopping rules on test_2016_flickr: hypothesis rows stepped, CPU time, BLEU, and how
many 1-bests differ between nbest 1 and 5.

    scripts/bench/bench_stopping.py RUN_DIR [--rules exact early] [--beam 5] [--threads 1]
"""

import argparse
import json
import statistics
import time

import torch

from common import MULTI30K
from nmt.evaluate import score
from nmt.translate.translator import Translator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--rules", nargs="+", default=["exact", "early"])
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lines = (MULTI30K / "test_2016_flickr.de").read_text().splitlines()
    refs = (MULTI30K / "test_2016_flickr.en").read_text().splitlines()
    translator = Translator.load(args.run_dir, device="cpu")
    rows, step = [0], translator.decoding_model.step

    def counting(tokens, state, source):  # every row the search steps, whatever the machine's speed
        rows[0] += tokens.numel()
        return step(tokens, state, source)

    translator.decoding_model.step = counting
    out = {}
    for rule in args.rules:
        def run(nbest):
            return translator.translate_hyps(lines, nbest=nbest, beam_size=args.beam, stopping=rule)

        rows[0] = 0
        one = run(1)
        stepped, times = rows[0], []
        for _ in range(args.repeats):
            start = time.process_time()
            run(1)
            times.append(time.process_time() - start)
        five = run(5)
        hyps = translator.tokenizer.decode([h[0].tokens for h in one])
        out[rule] = {"rows": stepped, "cpu_s": round(statistics.median(times), 3),
                     "bleu": round(score(hyps, refs)["bleu"], 2),
                     "differ_nbest1_vs_5": sum(a[0].tokens != b[0].tokens for a, b in zip(one, five))}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
