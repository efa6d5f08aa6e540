"""No precision that is slower than fp32 without saying so: a fraction of a second at load, before
anything is decoded.

- `--dtype int8`: every int8 kernel that exists in this torch and sums exactly on this CPU
  (`nmt.translate.int8.KERNELS`) is timed on the model's own per-step products (the output layer,
  the readout's state term, the query projection, the recurrent matrices) as whole `Int8Linear`
  layers, quantizing the rows included; the fastest is kept.
- Then a whole decoding step in that precision (int8, or bf16 autocast on a CPU) is timed against
  fp32's, on the rows of a greedy batch (`decode.batch_size`) over sources of SOURCE_LENGTH pieces:
  the fewest rows a full batch has, where int8's gain is smallest (beam search's hypotheses
  multiply the rows, and the products' share of the step). Where it is slower, loading stops in
  one line that names `--dtype fp32`. The step, not the products: on an AVX2 EPYC int8's
  products run faster than fp32's while its step, half of which is attention, cells and quantizing,
  does not (docs/decoding.md); bf16 without bf16 instructions (avx512_bf16, amx_bf16) is emulated,
  several times slower.

The kernels' products are compared by the fastest of a few repeats taken in turns (another process
on the machine can only slow a repeat down). Steps are compared by the median over PAIRS of the
ratio of two back-to-back timings, in alternating order: the fastest of a few repeats of a step
swung from 0.84x to 1.22x fp32's time between loads on an idle AVX2 EPYC, the paired median by
0.87x-1.01x. Even so, a step that takes about fp32's time is sometimes measured a little over and
sometimes a little under it, so the decision has a band: at SLOWER of fp32's time or more the
precision is refused (it is slower, whatever the noise); from SAME to SLOWER it is kept with a
warning that it gains nothing; under SAME it is kept.
"""

from __future__ import annotations

import contextlib
import logging
import statistics
import time

import torch
from torch import nn

from nmt.errors import NmtError
from nmt.translate.int8 import KERNELS, Int8Linear, exact_on_this_cpu

log = logging.getLogger("nmt.translate")

SLOWER = 1.05  # a precision whose step takes this fraction of fp32's time, or more, is refused
SAME = 0.95  # from this fraction to SLOWER, kept with a warning: no faster than fp32
SOURCE_LENGTH = 16  # pieces per timed source: a Multi30k sentence's
SOURCES = 8  # distinct timed sources: their encoding is not timed
MAX_ROWS = 512  # a timed step's rows at most: a larger batch adds nothing to tell the two apart
ROWS = 64  # rows per timed product when choosing the int8 kernel
REPEATS = 7
PAIRS = 21  # timed pairs of steps: about 0.2 s for 64 rows of the demo model on an AVX2 EPYC
HOPELESS = 4


def fastest_times(runs: dict, repeats: int = REPEATS) -> dict:
    """Seconds of one call of each of `runs` (name -> function, "fp32" among them): the fastest of
    `repeats`, taken in turns after one untimed call each, on one thread. In turns, a burst of other
    work on the machine slows them alike; on one thread, no call waits for a thread the machine took
    away. A run over HOPELESS times fp32's after a turn is not timed again (int_mm without VNNI
    takes 100x fp32's time: repeating it would make loading slow)."""
    with one_thread():
        for run in runs.values():
            run()
        times, timing = {name: float("inf") for name in runs}, dict(runs)
        for _ in range(repeats):
            for name, run in timing.items():
                start = time.perf_counter()
                run()
                times[name] = min(times[name], time.perf_counter() - start)
            timing = {name: run for name, run in timing.items() if times[name] < HOPELESS * times["fp32"]}
    return times


@contextlib.contextmanager
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def timed_rows(layers: list[nn.Linear]) -> list[torch.Tensor]:
    """(ROWS, K) inputs per layer like a step's: tanh outputs, in (-1, 1)."""
    generator = torch.Generator().manual_seed(0)
    return [torch.rand(ROWS, layer.in_features, generator=generator) * 2 - 1 for layer in layers]


def products(layers: list, inputs: list[torch.Tensor]):
    """One call that runs every layer on its input."""
    return lambda: [layer(x) for layer, x in zip(layers, inputs)]


def fastest_int8_kernel(layers: list[nn.Linear]):
    """The int8 kernel to decode `layers` with: the fastest among those that are exact here and take
    every layer's inputs; an NmtError where there is none."""
    widest = max(layer.in_features for layer in layers)
    kernels = [k for k in KERNELS if k.fits(widest) and exact_on_this_cpu(k)]
    if not kernels:
        raise NmtError(f"--dtype int8: torch {torch.__version__} has no exact int8 matrix product on this "
                       "CPU (torch._int_mm and oneDNN's u8 x s8 product missing or saturating); use --dtype fp32")
    if len(kernels) == 1:
        return kernels[0]
    inputs = timed_rows(layers)
    with torch.inference_mode():
        times = fastest_times({"fp32": products(layers, inputs)}
                              | {k: products([Int8Linear(layer, k) for layer in layers], inputs) for k in kernels})
    fp32 = times.pop("fp32")
    best = min(times, key=times.get)
    log.debug("int8 products on %s: %.2fx fp32's time (%s)", best.name, times[best] / fp32,
             ", ".join(f"{k.name} {t * 1e3:.2f} ms" for k, t in times.items()) + f", fp32 {fp32 * 1e3:.2f} ms")
    return best


def one_step(member, rows: int, autocast_dtype: torch.dtype | None = None):
    """One call that runs a decoding step of `member` (an InferenceModel) on `rows` hypotheses, under
    `autocast_dtype` where given: SOURCES random sources of SOURCE_LENGTH pieces, each shared by its
    share of the rows as a sentence's hypotheses share it in beam search."""
    generator = torch.Generator().manual_seed(0)
    src = torch.randint(member.model.encoder.embed.num_embeddings, (SOURCES, SOURCE_LENGTH), generator=generator)
    tokens = torch.randint(member.vocab_size, (rows,), generator=generator)  # (B,)
    rows_source = torch.arange(rows) % SOURCES  # (B,)
    with torch.inference_mode():  # in fp32: the encoding is not timed
        source = member.encode(src, torch.full((SOURCES,), SOURCE_LENGTH)).select(rows_source)
        state = member.init_state(source)

    def step():
        with torch.inference_mode(), torch.autocast("cpu", dtype=autocast_dtype, enabled=autocast_dtype is not None):
            return member.step(tokens, state, source)
    return step


def paired_ratio(fp32, run, pairs: int = PAIRS) -> dict:
    """Seconds of `run` over seconds of `fp32` (two functions), as the median over `pairs` of two
    back-to-back calls, taken in alternating order after one untimed call each, on one thread; and
    each one's fastest call. A run over HOPELESS times fp32's in its first pair is not timed again."""
    def timed(call) -> float:
        start = time.perf_counter()
        call()
        return time.perf_counter() - start

    with one_thread():
        fp32(), run()
        ratios, fastest = [], {"fp32": float("inf"), "run": float("inf")}
        for pair in range(pairs):
            if pair % 2:
                seconds_fp32, seconds_run = timed(fp32), timed(run)
            else:
                seconds_run, seconds_fp32 = timed(run), timed(fp32)
            ratios.append(seconds_run / seconds_fp32)
            fastest = {"fp32": min(fastest["fp32"], seconds_fp32), "run": min(fastest["run"], seconds_run)}
            if ratios[0] > HOPELESS:
                break
    return {"ratio": statistics.median(ratios), **fastest}


def check_step(dtype: str, fp32_member, member, rows: int, autocast_dtype: torch.dtype | None = None) -> None:
    """An NmtError in one line where `member`'s step in `dtype` is slower than `fp32_member`'s on
    this CPU, a warning where it is about as fast (the module docstring)."""
    rows = min(rows, MAX_ROWS)
    with one_thread():  # the sources' encoding too: two threads on a busy machine can stall for seconds
        fp32, run = one_step(fp32_member, rows), one_step(member, rows, autocast_dtype)
    timed = paired_ratio(fp32, run)
    said = (f"--dtype {dtype}: a decoding step takes {timed['ratio']:.2f}x fp32's time on this CPU "
            f"({timed['run'] * 1e3:.2f} ms against {timed['fp32'] * 1e3:.2f} ms for {rows} rows)")
    if timed["ratio"] >= SLOWER:
        raise NmtError(f"{said}; use --dtype fp32")
    if timed["ratio"] >= SAME:
        log.warning("%s: no faster, and rounded; --dtype fp32 decodes as fast, exactly", said)
    else:
        log.info("%s", said)
