"""No precision that is slower than fp32 without saying so: a few milliseconds at load, on the model's
own products that run at every step (the output layer, the readout's state term, the query
projection, the recurrent matrices), before anything is decoded.

- `--dtype int8`: every int8 kernel that exists in this torch and sums exactly on this CPU
  (`nmt.translate.int8.KERNELS`) is timed as whole `Int8Linear` layers (quantizing the rows
  included) against fp32's products; the fastest is kept. Where even it is slower than fp32, loading
  stops in one line that names `--dtype fp32`. So does a model too small for int8 to pay: with a
  few dozen units, quantizing the rows costs more than the products.
- `--dtype bf16` on a CPU: the same products under bf16 autocast against fp32. Without bf16
  instructions (avx512_bf16, amx_bf16) oneDNN emulates it, several times slower than fp32: refused
  in one line.

Times are the fastest of a few repeats (another process on the machine can only slow a repeat
down), and a precision counts as slower only beyond SLOWER: what it is refused for is a trap
(12x slower int8, 5x slower bf16 on an AVX2 EPYC), not a few per cent.
"""

from __future__ import annotations

import logging
import time

import torch
from torch import nn

from nmt.errors import NmtError
from nmt.translate.int8 import KERNELS, Int8Linear, exact_on_this_cpu

log = logging.getLogger("nmt.translate")

SLOWER = 1.25  # a precision this many times fp32's time, or more, is refused
ROWS = 64  # hypothesis rows per timed product: a greedy batch, or a dozen sentences at beam 5
REPEATS = 7
HOPELESS = 4


def fastest_times(runs: dict, repeats: int = REPEATS) -> dict:
    """Seconds of one call of each of `runs` (name -> function, "fp32" among them): the fastest of
    `repeats`, taken in turns after one untimed call each, on one thread. In turns, a burst of other
    work on the machine slows them alike; on one thread, no call waits for a thread the machine took
    away. A run over HOPELESS times fp32's after a turn is not timed again (int_mm without VNNI
    takes 100x fp32's time: repeating it would make loading slow)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for run in runs.values():
            run()
        times, timing = {name: float("inf") for name in runs}, dict(runs)
        for _ in range(repeats):
            for name, run in timing.items():
                start = time.perf_counter()
                run()
                times[name] = min(times[name], time.perf_counter() - start)
            timing = {name: run for name, run in timing.items() if times[name] < HOPELESS * times["fp32"]}
    finally:
        torch.set_num_threads(threads)
    return times


def timed_rows(layers: list[nn.Linear]) -> list[torch.Tensor]:
    """(ROWS, K) inputs per layer like a step's: tanh outputs, in (-1, 1)."""
    generator = torch.Generator().manual_seed(0)
    return [torch.rand(ROWS, layer.in_features, generator=generator) * 2 - 1 for layer in layers]


def products(layers: list, inputs: list[torch.Tensor]):
    """One call that runs every layer on its input."""
    return lambda: [layer(x) for layer, x in zip(layers, inputs)]


def slower_than_fp32(dtype: str, ratio: float, detail: str) -> NmtError:
    return NmtError(f"--dtype {dtype}: its products take {ratio:.1f}x the time of fp32's on this CPU "
                    f"({detail}); use --dtype fp32")


def fastest_int8_kernel(layers: list[nn.Linear]):
    """The int8 kernel to decode `layers` with: the fastest among those that are exact here and take
    every layer's inputs; an NmtError where there is none, or where it is slower than fp32."""
    widest = max(layer.in_features for layer in layers)
    kernels = [k for k in KERNELS if k.fits(widest) and exact_on_this_cpu(k)]
    if not kernels:
        raise NmtError(f"--dtype int8: torch {torch.__version__} has no exact int8 matrix product on this "
                       "CPU (torch._int_mm and oneDNN's u8 x s8 product missing or saturating); use --dtype fp32")
    inputs = timed_rows(layers)
    with torch.inference_mode():
        runs = {k: products([Int8Linear(layer, k) for layer in layers], inputs) for k in kernels}
        times = fastest_times({"fp32": products(layers, inputs)} | runs)
    fp32 = times.pop("fp32")
    best = min(times, key=times.get)
    if times[best] >= SLOWER * fp32:
        raise slower_than_fp32("int8", times[best] / fp32, f"{best.name}, the fastest exact int8 kernel here: "
                               f"{times[best] * 1e3:.2f} ms against {fp32 * 1e3:.2f} ms for a step's products")
    log.info("int8 products on %s: %.2fx fp32's time (%s)", best.name, times[best] / fp32,
             ", ".join(f"{k.name} {t * 1e3:.2f} ms" for k, t in times.items()) + f", fp32 {fp32 * 1e3:.2f} ms")
    return best


def check_bf16_on_cpu(layers: list[nn.Linear]) -> None:
    """An NmtError where bf16 autocast makes `layers`' products slower than fp32 on this CPU."""
    inputs = timed_rows(layers)
    fp32 = products(layers, inputs)

    def bf16():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return products(layers, inputs)()

    with torch.inference_mode():
        times = fastest_times({"fp32": fp32, "bf16": bf16})
    if times["bf16"] >= SLOWER * times["fp32"]:
        raise slower_than_fp32("bf16", times["bf16"] / times["fp32"], "this CPU has no bf16 matrix instructions "
                               "such as avx512_bf16 or amx_bf16; --dtype int8 may be faster")
