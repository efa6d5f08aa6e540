#!/usr/bin/env python
"""nmt against JoeyNMT 2.3.0 on the same machine, in the same run, with the same SentencePiece model.

    scripts/compare_joeynmt.py [--epochs 3] [--out runs/compare]

Needs ../shared/peers/joeynmt/setup.sh to have run once. Trains both on Multi30k de→en with
recipes/multi30k_de_en/joeynmt_equiv.yaml and the peer's config.template.yaml, then decodes
test_2016_flickr greedy and with beam 5, and prints one table (and --json) with the ratios.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))
PEER = REPO.parent / "shared" / "peers" / "joeynmt"
RECIPE = REPO / "recipes" / "multi30k_de_en" / "joeynmt_equiv.yaml"
REPEATS = 3  # decoding passes per toolkit and beam size; the median is reported

PROBE = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
         "code = subprocess.call(sys.argv[2:], stdout=open(sys.argv[1], 'w'), stderr=subprocess.STDOUT); "
         "print(round(time.perf_counter() - t, 1), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)")


def run(cmd: list[str], log: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (GiB) of a command and its children; its output goes to `log`."""
    out = subprocess.run([sys.executable, "-c", PROBE, str(log), *cmd], capture_output=True, text=True)
    wall, rss, code = out.stdout.split()
    if code != "0":
        sys.exit(f"{' '.join(cmd)} failed; see {log}")
    return float(wall), int(rss) / 2**20


def ours(out: Path, epochs: int) -> dict:
    import torch

    from bench import measure_decoding, measure_training
    from nmt.config import load_config
    from nmt.data import read_lines
    from nmt.evaluate import score
    from nmt.tokenizer import Tokenizer

    run_dir = out / "nmt"
    if not (run_dir / "results.json").exists():
        exe = str(Path(sys.executable).with_name("nmt-train"))
        wall, rss = run([exe, str(RECIPE), "--run-dir", str(run_dir), "--set", f"train.epochs={epochs}"],
                        out / "nmt-train.log")
        (out / "nmt-train.json").write_text(json.dumps({"wall_s": wall, "peak_gib": rss}))
    train = json.loads((out / "nmt-train.json").read_text())
    cfg, tokenizer = load_config(RECIPE), Tokenizer.load(run_dir)
    torch.set_num_threads(2)
    speed = measure_training(cfg, tokenizer, steps=100, warmup=10, device=torch.device("cpu"))
    data_dir = REPO.parent / "shared" / "data" / "multi30k"
    src = read_lines(data_dir / "test_2016_flickr.de")
    refs = read_lines(data_dir / "test_2016_flickr.en")
    decoding = measure_decoding(str(run_dir), src, torch.device("cpu"), 64, REPEATS)
    from nmt.translate import Translator

    translator = Translator.load(run_dir, device="cpu")
    bleu = {b: score(translator.translate(src, beam_size=b), refs)["bleu"] for b in (1, 5)}
    return {"tgt_tokens_per_s": speed["tgt_tokens_per_s"], "train_wall_s": train["wall_s"],
            "train_peak_gib": round(train["peak_gib"], 2), "greedy_sent_s": decoding["beam1"]["sentences_per_s"],
            "beam5_sent_s": decoding["beam5"]["sentences_per_s"], "bleu_greedy": bleu[1], "bleu_beam5": bleu[5]}


def joeynmt(out: Path, spm_model: Path, epochs: int) -> dict:
    peer_out = out / "joeynmt"
    log = out / "joeynmt-train.log"
    if not (out / "joeynmt-train.json").exists():
        wall, rss = run([str(PEER / "run.sh"), "train", str(peer_out), str(spm_model), str(epochs)], log)
        (out / "joeynmt-train.json").write_text(json.dumps({"wall_s": wall, "peak_gib": rss}))
    train = json.loads((out / "joeynmt-train.json").read_text())
    speeds = [float(x) for x in re.findall(r"Tokens per Sec:\s*([\d.]+)", (peer_out / "model" / "train.log").read_text())]
    result = {"tgt_tokens_per_s": round(sum(speeds) / len(speeds), 1), "train_wall_s": train["wall_s"],
              "train_peak_gib": round(train["peak_gib"], 2)}
    for beam, name in ((1, "greedy"), (5, "beam5")):
        took = []
        for _ in range(REPEATS):  # the median, as for ours; each run decodes val, then test (the last figure)
            run([str(PEER / "run.sh"), "test", str(peer_out), str(beam)], out / f"joeynmt-test{beam}.log")
            text = (peer_out / f"test.beam{beam}.log").read_text()
            took.append(float(re.findall(r"Generation took\s*([\d.]+)", text)[-1]))
        result[f"{name}_sent_s"] = round(1000 / statistics.median(took), 1)
        result[f"bleu_{name}"] = float(re.findall(r"bleu:\s*([\d.]+)", text, re.I)[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "compare")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    a = ours(args.out, args.epochs)
    b = joeynmt(args.out, args.out / "nmt" / "spm.model", args.epochs)
    targets = {"tgt_tokens_per_s": 2.0, "greedy_sent_s": 2.0, "beam5_sent_s": 4.0}
    print("| figure | nmt | JoeyNMT 2.3.0 | ratio | target |\n|---|---|---|---|---|")
    for key in a:
        ratio = a[key] / b[key] if b.get(key) else float("nan")
        target = f">= {targets[key]}x" if key in targets else ("<= 1x" if "peak" in key else "")
        print(f"| {key} | {a[key]} | {b.get(key)} | {ratio:.2f}x | {target} |")
    print(f"\n({args.epochs} epochs each; {time.time() - start:.0f} s for this comparison)")
    if args.json:
        args.json.write_text(json.dumps({"nmt": a, "joeynmt": b, "epochs": args.epochs}, indent=1))


if __name__ == "__main__":
    main()
