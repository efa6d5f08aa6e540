#!/usr/bin/env python
"""Speed and memory of training and decoding for a config, against the bare recurrent layers' floor.

    scripts/bench/bench.py RECIPE.yaml [more.yaml] [--set k=v] [--steps 100] [--checkpoint RUN_DIR]
                           [--tokenizer RUN_DIR] [--decode-file FILE] [--json OUT.json]

1. training: target and source+target tokens/s over --steps updates after --warmup, peak memory;
2. decoding (with --checkpoint): sentences/s and output tokens/s, greedy and beam 5;
3. the floor (unless --no-floor): the same batches through bare nn.GRU/nn.LSTM/nn.RNN encoder and
   decoder layers plus the output projection and loss, forward and backward, so every figure reads as
   a ratio to what the hardware needs anyway. Ours and the floor take turns batch by batch, so that
   the ratio does not depend on when the machine ran fast.
The batches are training's own: the tokenizer and tokenised split from the data cache (`nmt.data.prepare`),
prepared now if missing, or with --tokenizer a run's tokenizer.
With --threads 1 every time is the process's CPU time, which other processes on a shared machine
disturb far less than the wall clock; with more threads, the wall clock.
It measures the `nmt` that Python imports: the installed one, or another checkout's with
`PYTHONPATH=OTHER_CHECKOUT` (bench_ab.py: the same instrument on the code before and after a change).
Speed targets live here, never in the tests. Prints one table; --json writes the figures.
compare.py runs the same measurements beside JoeyNMT 2.3.0 and OpenNMT-py 3.5.1 and prints all with ratios.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F

from common import clock, nmt_code
from nmt.config import Config, load_config
from nmt.data import batching, splits
from nmt.data.prepare import Prepared, prepare
from nmt.data.readers import read_lines
from nmt.data.tokenizer import PAD, Tokenizer
from nmt.errors import NmtError
from nmt.model.seq2seq import Seq2Seq, count_parameters
from nmt.precision import AUTOCAST_DTYPES, set_precision_policy
from nmt.train.cuda_graphs import capture_training, use_cuda_graphs
from nmt.train.optim import build_optimizer


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def training_batches(cfg: Config, ready: Prepared, count: int) -> list[batching.Batch]:
    """The first `count` batches of the first epoch, exactly as training (one process) sees them."""
    loader, _ = batching.make_loader(ready.train, cfg.train.max_tokens, cfg.train.seed, shuffle=True,
                                 rows=ready.train_rows)
    batches = []
    for batch in loader:
        batches.append(batch)
        if len(batches) == count:
            return batches
    return (batches * (count // len(batches) + 1))[:count]  # a small corpus: go round again


def rates(seconds: float, batches: list[batching.Batch]) -> dict:
    tgt = sum(int((b.tgt_out != PAD).sum()) for b in batches)
    src = sum(int(b.src_lengths.sum()) for b in batches)
    return {"seconds": round(seconds, 2), "tgt_tokens_per_s": round(tgt / seconds, 1),
            "src_tgt_tokens_per_s": round((src + tgt) / seconds, 1)}


def interleaved(steps: dict, batches: list[batching.Batch], device: torch.device) -> dict:
    """Seconds per step function over `batches`, taking turns batch by batch, so that a change in the
    machine's speed during the run (this 2-core VM drifts by up to 25%) weighs on all of them alike."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    seconds = dict.fromkeys(steps, 0.0)
    for batch in batches:
        for name, step in steps.items():
            sync()
            start = clock()
            step(batch)
            sync()
            seconds[name] += clock() - start
    return {name: rates(s, batches) for name, s in seconds.items()}


def autocast_dtype(cfg: Config) -> torch.dtype | None:
    return AUTOCAST_DTYPES[cfg.train.mixed_precision]


def autocast(cfg: Config, device: torch.device):
    """The training's autocast (off for mixed_precision: no)."""
    dtype = autocast_dtype(cfg)
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def training_step(cfg: Config, tokenizer: Tokenizer, device: torch.device):
    """Our training update (forward, loss, backward, clipping, Adam) as a function of a batch."""
    torch.manual_seed(cfg.train.seed)
    model = Seq2Seq(cfg.model, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size).to(device).train()
    set_precision_policy(model, device.type, autocast_dtype(cfg))  # as training does
    if use_cuda_graphs(cfg.train.cuda_graphs, device):  # as training does (train.cuda_graphs)
        capture_training(model)
    optimizer = build_optimizer(cfg.train, model.parameters())
    scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype(cfg) == torch.float16)

    def step(batch):
        batch = batching.Batch(*(t.to(device) for t in batch))
        with autocast(cfg, device):
            logits = model(batch.src, batch.src_lengths, batch.tgt_in)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), batch.tgt_out.flatten(), ignore_index=PAD,
                                   label_smoothing=cfg.train.label_smoothing)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.clip_norm or float("inf"))
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    return step, count_parameters(model)


class Floor(torch.nn.Module):
    """Bare layers with our shapes: embeddings, bi-RNN encoder, decoder RNN, output projection."""

    def __init__(self, cfg: Config, src_vocab: int, tgt_vocab: int):
        super().__init__()
        m = cfg.model
        cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[m.cell]
        self.src_embed = torch.nn.Embedding(src_vocab, m.embed_size)
        self.tgt_embed = torch.nn.Embedding(tgt_vocab, m.embed_size)
        self.encoder = cls(m.embed_size, m.hidden_size, m.num_layers, batch_first=True, bidirectional=True)
        # The decoder's input is embedding + context, as in ours; the context is not computed here.
        self.decoder = cls(m.embed_size + 2 * m.hidden_size, m.decoder_hidden_size, m.num_layers, batch_first=True)
        self.out = torch.nn.Linear(m.decoder_hidden_size, tgt_vocab)
        self.context = 2 * m.hidden_size

    def forward(self, batch: batching.Batch) -> torch.Tensor:
        memory, _ = self.encoder(self.src_embed(batch.src))
        emb = self.tgt_embed(batch.tgt_in)
        context = memory.mean(1, keepdim=True).expand(-1, emb.size(1), -1)
        out, _ = self.decoder(torch.cat([emb, context], -1))
        return F.cross_entropy(self.out(out).flatten(0, 1), batch.tgt_out.flatten(), ignore_index=PAD)


def floor_step(cfg: Config, tokenizer: Tokenizer, device: torch.device):
    """The floor in the training's precision: under bf16/fp16, cuDNN's layers and the products run in it
    too (no loss scaling: its cost is a multiplication)."""
    floor = Floor(cfg, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size).to(device)

    def step(batch):
        batch = batching.Batch(*(t.to(device) for t in batch))
        with autocast(cfg, device):
            loss = floor(batch)
        loss.backward()
        floor.zero_grad(set_to_none=True)

    return step


def measure_training(cfg: Config, ready: Prepared, steps: int, warmup: int, device: torch.device,
                     with_floor: bool = False) -> dict:
    """{"training": speed}, from `steps` batches after `warmup`, with the peak memory over the warm-up
    (ours alone: the floor's layers are built after it). With the floor, both take turns on the same
    batches: then also {"floor": speed} and the training's `ratio_to_floor`."""
    batches = training_batches(cfg, ready, warmup + steps)
    ours, parameters = training_step(cfg, ready.tokenizer, device)
    for batch in batches[:warmup]:
        ours(batch)
    peak = round(peak_memory_mb(device))
    capture_s = None
    if use_cuda_graphs(cfg.train.cuda_graphs, device):  # every timed batch's bucket captured before timing
        start = clock()
        for batch in batches[warmup:]:
            ours(batch)
        torch.cuda.synchronize(device)
        capture_s, peak = round(clock() - start, 2), round(peak_memory_mb(device))
    timers = {"training": ours}
    if with_floor:
        timers["floor"] = floor_step(cfg, ready.tokenizer, device)
        for batch in batches[:warmup]:
            timers["floor"](batch)
    result = interleaved(timers, batches[warmup:], device)
    result["training"].update(parameters=parameters, peak_memory_mb=peak, cuda_graphs=capture_s is not None,
                              capture_pass_s=capture_s)
    if with_floor:
        result["training"]["ratio_to_floor"] = round(
            result["floor"]["tgt_tokens_per_s"] / result["training"]["tgt_tokens_per_s"], 2)
    return result


def measure_decoding(run_dir: str, lines: list[str], device: torch.device, batch_size: int,
                     repeats: int = 3, dtype: str = "fp32", refs: list[str] | None = None) -> dict:
    """Sentences/s and output tokens/s over `lines`, the median of `repeats` passes after a warm-up;
    with `refs`, the BLEU of each search."""
    import sacrebleu

    from nmt.translate.translator import Translator

    translator = Translator.load(run_dir, device=str(device), dtype=dtype)
    results = {}
    for beam in (1, 5):
        translator.translate(lines[:batch_size], beam_size=beam, batch_size=batch_size)  # warm-up
        times = []
        for _ in range(repeats):
            start = clock()
            hyps = translator.translate_hyps(lines, beam_size=beam, batch_size=batch_size)
            times.append(clock() - start)
        seconds = statistics.median(times)
        tokens = sum(len(h[0].tokens) + 1 for h in hyps)
        results[f"beam{beam}"] = {"sentences_per_s": round(len(lines) / seconds, 1),
                                  "output_tokens_per_s": round(tokens / seconds, 1), "seconds": round(seconds, 2)}
        if refs:
            text = translator.tokenizer.decode([h[0].tokens for h in hyps])
            results[f"beam{beam}"]["bleu"] = round(sacrebleu.corpus_bleu(text, [refs]).score, 2)
    results["batch_size_sentences"], results["dtype"] = batch_size, dtype
    results["peak_memory_mb"] = round(peak_memory_mb(device))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="+")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--tokenizer", metavar="RUN_DIR",
                        help="a run's tokenizer (default: the data cache's for this config, trained if missing)")
    parser.add_argument("--no-floor", action="store_true", help="time our training only")
    parser.add_argument("--checkpoint", help="run directory to time decoding with")
    parser.add_argument("--decode-file", help="source file to decode (default: the recipe's first test split)")
    parser.add_argument("--ref", help="reference of --decode-file, for BLEU (default: the recipe's, with its file)")
    parser.add_argument("--decode-dtypes", nargs="+", default=["fp32"], help="fp32 bf16 fp16 int8")
    parser.add_argument("--batch-size", type=int, default=64, help="decoding batch size in sentences")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg, device = load_config(args.config, args.overrides), torch.device(args.device)
    if args.tokenizer:
        Tokenizer.load(args.tokenizer)  # a folder without one fails here; `prepare` would copy one into it
    ready = prepare(cfg, Path(args.tokenizer) if args.tokenizer else None)
    report = {"config": args.config, "overrides": args.overrides, "device": str(device),
              "threads": torch.get_num_threads(), "torch": torch.__version__, "code": nmt_code(),
              "clock": "process CPU time" if torch.get_num_threads() == 1 else "wall"}
    report.update(measure_training(cfg, ready, args.steps, args.warmup, device, with_floor=not args.no_floor))
    if args.checkpoint:
        stem = splits.resolve_root(cfg.data) / cfg.data.dir / cfg.data.test[0]
        path = args.decode_file or f"{stem}.{cfg.data.src_lang}"
        ref = args.ref or (None if args.decode_file else f"{stem}.{cfg.data.tgt_lang}")
        lines, refs = read_lines(Path(path)), ref and read_lines(Path(ref))
        report["decoding"] = []
        for dtype in args.decode_dtypes:
            try:
                report["decoding"].append(measure_decoding(args.checkpoint, lines, device, args.batch_size,
                                                           dtype=dtype, refs=refs))
            except NmtError as err:  # a precision this device lacks: say so in the table, time the others
                report["decoding"].append({"dtype": dtype, "error": str(err)})
    print(table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


def table(report: dict) -> str:
    """The figures as one Markdown table."""
    train, floor = report["training"], report.get("floor")
    rows = [("training, target tokens/s", train["tgt_tokens_per_s"]),
            ("training, source+target tokens/s", train["src_tgt_tokens_per_s"])]
    if floor:
        rows += [("floor (bare layers), target tokens/s", floor["tgt_tokens_per_s"]),
                 ("floor / training (target <= 1.5)", train["ratio_to_floor"])]
    rows += [("parameters", train["parameters"]), ("peak memory over the warm-up updates, MB", train["peak_memory_mb"])]
    for dec in report.get("decoding", []):
        if "error" in dec:
            rows.append((f"{dec['dtype']} decoding", dec["error"]))
            continue
        for beam, name in (("beam1", "greedy"), ("beam5", "beam 5")):
            name = f"{dec['dtype']} {name} decoding"
            rows += [(f"{name}, sentences/s (batches of {dec['batch_size_sentences']})",
                      dec[beam]["sentences_per_s"]),
                     (f"{name}, output tokens/s", dec[beam]["output_tokens_per_s"])]
            rows += [(f"{name}, BLEU", dec[beam]["bleu"])] if "bleu" in dec[beam] else []
        rows.append((f"peak memory after {dec['dtype']} decoding, MB", dec["peak_memory_mb"]))
    head = (f"{report['device']}, {report['threads']} threads ({report['clock']}), torch {report['torch']}, "
            f"{' '.join(report['config'])} {' '.join(report['overrides'])}")
    return "\n".join([head, "", "| figure | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])



if __name__ == "__main__":
    main()
