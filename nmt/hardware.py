"""What this machine's CPU can do, where it changes how the model should run."""

from __future__ import annotations

import functools
from pathlib import Path


@functools.cache
def cpu_lacks_bf16() -> bool:
    """True where /proc/cpuinfo shows neither avx512_bf16 nor amx_bf16 (False where it cannot tell).
    There bf16 arithmetic is emulated, slower than fp32, and oneDNN has no bf16 LSTM."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" not in flags and "amx_bf16" not in flags
