#!/usr/bin/env python
"""nmt against its peers (JoeyNMT 2.3.0, OpenNMT-py 3.5.1) on one machine, in one run, with one SentencePiece model.

    scripts/bench/compare.py --peer joeynmt opennmt [--epochs 3] [--out runs/compare] [--json FILE]

Trains ours once with recipes/multi30k_de_en/joeynmt_equiv.yaml, then each peer named, decodes
test_2016_flickr greedy and with beam 5 with each, and prints one table: a column per toolkit and
the ratio of ours to each peer. Every toolkit gets the same updates: JoeyNMT the same epochs (its
2 000-token batches make about as many updates per epoch as ours), OpenNMT-py `train_steps` equal
to the updates our run made, with its token batch size set so that an epoch takes as many updates as
ours (peer_batches.py). BLEU is computed here, the same way for all: sacreBLEU on each one's
detokenized output against the raw reference. Peers are installed by ../shared/peers/joeynmt/setup.sh
and peers/opennmt/setup.sh (beside this file). --train-lines/--test-lines make a small smoke run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import MULTI30K, REPO
from nmt.data.readers import read_lines
from peer_batches import PeerRows, onmt_batch_tokens

RECIPE = REPO / "recipes" / "multi30k_de_en" / "joeynmt_equiv.yaml"
JOEYNMT = REPO.parent / "shared" / "peers" / "joeynmt"
OPENNMT = Path(__file__).resolve().parent / "peers" / "opennmt"
PEERS = {"joeynmt": "JoeyNMT 2.3.0", "opennmt": "OpenNMT-py 3.5.1"}
SPLITS = ("train", "val", "test_2016_flickr")
LABELS = {"updates": "updates", "parameters": "parameters", "tgt_tokens_per_s": "training, target tokens/s",
          "train_wall_s": "training wall time, s (whole command)", "train_peak_gib": "peak training RSS, GiB",
          "greedy_sent_s": "greedy decoding, sentences/s", "beam5_sent_s": "beam 5 decoding, sentences/s",
          "bleu_greedy": "test BLEU, greedy", "bleu_beam5": "test BLEU, beam 5"}

PROBE = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
         "code = subprocess.call(sys.argv[2:], stdout=open(sys.argv[1], 'w'), stderr=subprocess.STDOUT); "
         "print(round(time.perf_counter() - t, 1), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)")


def fail(message: str) -> None:
    print(message, file=sys.stderr)
    sys.exit(2)


def run(cmd: list[str], log: Path, env: dict) -> tuple[float, float]:
    """Wall seconds and peak RSS (GiB) of a command and its children; its output goes to `log`."""
    out = subprocess.run([sys.executable, "-c", PROBE, str(log), *cmd], capture_output=True, text=True, env=env)
    wall, rss, code = out.stdout.split()
    if code != "0":
        fail(f"{' '.join(cmd)} failed; see {log}")
    return float(wall), int(rss) / 2**20


def timed_once(name: str, out: Path, cmd: list[str], env: dict) -> dict:
    """Runs a training command once per output folder (a rerun reuses it) -> {wall_s, peak_gib}."""
    done = out / f"{name}-train.json"
    if not done.exists():
        wall, rss = run(cmd, out / f"{name}-train.log", env)
        done.write_text(json.dumps({"wall_s": wall, "peak_gib": round(rss, 2)}))
    return json.loads(done.read_text())


def corpus(out: Path, train_lines: int, test_lines: int) -> Path:
    """The corpus folder all toolkits read: Multi30k, or the first lines of each split (a smoke run)."""
    if not (train_lines or test_lines):
        return MULTI30K
    folder = out / "data"
    folder.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        keep = train_lines if split == "train" else test_lines
        for lang in ("de", "en"):
            lines = (MULTI30K / f"{split}.{lang}").read_text(encoding="utf-8").splitlines(keepends=True)
            (folder / f"{split}.{lang}").write_text("".join(lines[:keep] if keep else lines), encoding="utf-8")
    return folder


def bleu(hyp_file: Path, data: Path) -> float:
    from nmt.evaluate import score

    return score(read_lines(hyp_file), read_lines(data / "test_2016_flickr.en"))["bleu"]


def ours(out: Path, data: Path, epochs: int, threads: int, repeats: int, device: str = "cpu") -> dict:
    import torch

    from bench import measure_decoding, measure_training
    from nmt.config import load_config
    from nmt.data.prepare import prepare
    from nmt.translate.translator import Translator

    run_dir = out / "nmt"
    overrides = [f"train.epochs={epochs}", f"train.threads={threads}", f"data.dir={data}"]
    exe = str(Path(sys.executable).with_name("nmt-train"))
    env = dict(os.environ, **({"CUDA_VISIBLE_DEVICES": ""} if device == "cpu" else {}))  # Accelerate takes a GPU it sees
    train = timed_once("nmt", out, [exe, str(RECIPE), "--run-dir", str(run_dir),
                                    *(x for o in overrides for x in ("--set", o))], env)
    steps = max(json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines())
    cfg = load_config(RECIPE, overrides)
    torch.set_num_threads(threads)
    ready = prepare(cfg, run_dir)
    speed = measure_training(cfg, ready, steps=100, warmup=10, device=torch.device(device))["training"]
    src = read_lines(data / "test_2016_flickr.de")
    decoding = measure_decoding(str(run_dir), src, torch.device(device), 64, repeats)
    translator = Translator.load(run_dir, device=device)
    for beam in (1, 5):
        (run_dir / f"compare.beam{beam}").write_text("\n".join(translator.translate(src, beam_size=beam)) + "\n")
    return {"updates": steps, "parameters": speed["parameters"], "tgt_tokens_per_s": speed["tgt_tokens_per_s"],
            "train_wall_s": train["wall_s"], "train_peak_gib": train["peak_gib"],
            "greedy_sent_s": decoding["beam1"]["sentences_per_s"], "beam5_sent_s": decoding["beam5"]["sentences_per_s"],
            "bleu_greedy": bleu(run_dir / "compare.beam1", data), "bleu_beam5": bleu(run_dir / "compare.beam5", data)}


def decode_repeats(cmd: list[str], log: Path, pattern: str, env: dict, repeats: int) -> list[float]:
    """Runs a peer's decoding `repeats` times; the last match of `pattern` in `log` each time."""
    found = []
    for _ in range(repeats):
        run(cmd, log.with_suffix(".run"), env)
        found.append(float(re.findall(pattern, log.read_text())[-1]))
    return found


def joeynmt(out: Path, data: Path, spm_model: Path, epochs: int, env: dict, repeats: int) -> dict:
    peer = out / "joeynmt"
    train = timed_once("joeynmt", out, [str(JOEYNMT / "run.sh"), "train", str(peer), str(spm_model), str(epochs)], env)
    log = (peer / "model" / "train.log").read_text()
    speeds = [float(x) for x in re.findall(r"Tokens per Sec:\s*([\d.]+)", log)]  # every 100 updates
    if not speeds:  # a run shorter than that: its epoch totals (target tokens, seconds without validation)
        totals = re.findall(r"num\. of tokens: (\d+), ([\d.]+)\[sec\]", log)  # seconds: cumulative
        speeds = [sum(int(tokens) for tokens, _ in totals) / float(totals[-1][1])]
    result = {"updates": int(os.readlink(peer / "model" / "latest.ckpt").split(".")[0]),
              "parameters": int(re.findall(r"Total params:\s*(\d+)", log)[-1]),
              "tgt_tokens_per_s": round(statistics.mean(speeds), 1), **train_figures(train)}
    lines = len((data / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines())
    for beam, name in ((1, "greedy"), (5, "beam5")):
        took = decode_repeats([str(JOEYNMT / "run.sh"), "test", str(peer), str(beam)], peer / f"test.beam{beam}.log",
                              r"Generation took\s*([\d.]+)", env, repeats)  # decodes val, then test (the last)
        result[f"{name}_sent_s"] = round(lines / statistics.median(took), 1)
        result[f"bleu_{name}"] = bleu(peer / f"hyp.beam{beam}.test", data)
    return result


def opennmt(out: Path, data: Path, spm_model: Path, steps: int, batch_tokens: int, env: dict, repeats: int) -> dict:
    peer = out / "opennmt"
    train = timed_once("opennmt", out, [str(OPENNMT / "run.sh"), "train", str(peer), str(spm_model), str(steps),
                                        str(batch_tokens)], env)
    log = (peer / "train.stdout").read_text()
    speeds = [float(x) for x in re.findall(r"\d+/\s*(\d+) tok/s", log)]  # source/target per report window
    result = {"updates": int(re.findall(r"model_step_(\d+)\.pt", log)[-1]),
              "parameters": int(re.findall(r"number of parameters:\s*(\d+)", log)[-1]),
              "tgt_tokens_per_s": round(statistics.mean(speeds), 1), **train_figures(train)}
    for beam, name in ((1, "greedy"), (5, "beam5")):
        ms = decode_repeats([str(OPENNMT / "run.sh"), "test", str(peer), str(beam)], peer / f"test.beam{beam}.log",
                            r"Average translation time \(ms\):\s*([\d.]+)", env, repeats)
        result[f"{name}_sent_s"] = round(1000 / statistics.median(ms), 1)
        result[f"bleu_{name}"] = bleu(peer / f"hyp.beam{beam}", data)
    return result


def train_figures(train: dict) -> dict:
    return {"train_wall_s": train["wall_s"], "train_peak_gib": train["peak_gib"]}


def ours_batches(out: Path, data: Path) -> PeerRows:
    """Our run's tokenized training pairs (its data as training read them), in the terms
    peer_batches.py counts batches in."""
    import numpy as np

    from nmt.config import load_config
    from nmt.data.batching import lengths, token_batches
    from nmt.data.prepare import prepare

    cfg = load_config(RECIPE, [f"data.dir={data}"])
    ready = prepare(cfg, out / "nmt")
    src_lens, tgt_lens = lengths(ready.train)
    rows = ready.train_rows
    ours = len(token_batches(src_lens[rows], tgt_lens[rows], cfg.train.max_tokens, cfg.train.seed, 0))
    return PeerRows(src_lens=np.asarray(src_lens) - 1, tgt_lens=np.asarray(tgt_lens),
                    sources=read_lines(data / "train.de"), batches=ours)


def table(results: dict, names: dict) -> str:
    """Markdown: a row per figure, a column per toolkit (ours first), then ours against each peer:
    a ratio, or for BLEU the difference in points."""
    peers = [p for p in results if p != "nmt"]
    head = ["figure", *(names[t] for t in results), *(f"nmt / {names[p].split()[0]}" for p in peers)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, label in LABELS.items():
        ours = results["nmt"][key]
        cells = [label, *(str(results[t].get(key, "")) for t in results)]
        for p in peers:
            theirs = results[p].get(key)
            if not theirs:
                cells.append("")
            elif key.startswith("bleu"):
                cells.append(f"{ours - theirs:+.2f}")
            else:
                cells.append(f"{ours / theirs:.2f}x")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def check_installed(peers: list[str]) -> None:
    """Fail before our training when a peer's environment is missing (each setup.sh leaves .ready)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nmt-peers"
    venvs = {"joeynmt": (os.environ.get("JOEY_VENV") or cache / "joeynmt-2.3.0", JOEYNMT / "setup.sh"),
             "opennmt": (os.environ.get("ONMT_VENV") or cache / "opennmt-3.5.1", OPENNMT / "setup.sh")}
    for peer in peers:
        venv, setup = venvs[peer]
        if not (Path(venv) / ".ready").exists():
            fail(f"{PEERS[peer]} is not installed in {venv}: run {setup} first")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer", nargs="+", choices=sorted(PEERS), default=["joeynmt"],
                        help="peers to run beside ours, each trained and measured in turn (default: joeynmt)")
    parser.add_argument("--epochs", type=int, default=3,
                        help="our train.epochs and JoeyNMT's epochs; OpenNMT-py makes as many updates as our run did")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "compare",
                        help="output folder; a rerun reuses the trainings already in it")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of every toolkit")
    parser.add_argument("--repeats", type=int, default=3, help="decoding passes per beam size (the median)")
    parser.add_argument("--train-lines", type=int, default=0, help="smoke run: the first N training pairs only")
    parser.add_argument("--test-lines", type=int, default=0, help="smoke run: the first N val and test pairs only")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda / cuda:N: ours and OpenNMT-py train and "
                                                        "decode on that GPU (its venv needs a CUDA torch; JoeyNMT's "
                                                        "harness stays on the CPU)")
    args = parser.parse_args()
    check_installed(args.peer)
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    data = corpus(args.out, args.train_lines, args.test_lines)
    gpu = args.device.partition(":")[2] or "0" if args.device.startswith("cuda") else "-1"
    env = dict(os.environ, DATA=str(data), OMP_NUM_THREADS=str(args.threads), ONMT_GPU=gpu)
    results = {"nmt": ours(args.out, data, args.epochs, args.threads, args.repeats, args.device)}
    spm_model = args.out / "nmt" / "spm.model"
    if "joeynmt" in args.peer:
        results["joeynmt"] = joeynmt(args.out, data, spm_model, args.epochs, env, args.repeats)
    if "opennmt" in args.peer:
        batch_tokens = onmt_batch_tokens(ours_batches(args.out, data))
        results["opennmt"] = opennmt(args.out, data, spm_model, results["nmt"]["updates"], batch_tokens, env,
                                     args.repeats)
        results["opennmt"]["batch_tokens"] = batch_tokens
    print(table(results, {"nmt": "nmt", **PEERS}))
    print(f"\n(epochs: {args.epochs}, data: {data}, threads: {args.threads}; "
          f"{time.time() - start:.0f} s for this comparison)")
    if args.json:
        args.json.write_text(json.dumps({**results, "epochs": args.epochs, "data": str(data),
                                         "threads": args.threads}, indent=1))


if __name__ == "__main__":
    main()
