"""Where reduced precision is decided: which parts of a model may follow autocast on this device.

Autocast picks a dtype per operation, and for recurrent layers two backends get it wrong:

- CUDA under bf16: PyTorch's autocast rule for cuDNN RNNs (aten/src/ATen/cudnn/AutocastRNN.cpp)
  casts weights and input to fp16 whatever the autocast dtype, so the encoder would run in fp16 with
  no loss scaling. In fp32 instead, cuDNN uses TF32 on Ampere and later, so this costs little.
- A CPU without bf16 instructions (neither avx512_bf16 nor amx_bf16): oneDNN has no bf16 LSTM
  there (a packed batch whose sentences all have one length fails to build its primitive), and any
  cell's bf16 is emulated, slower than fp32.

There the encoder's recurrent layers run in fp32 (`Encoder.recurrent_in_fp32`); everything else
follows autocast. Training and `Translator` call `set_precision_policy` once they know the device
and the dtype, so that the model code itself knows nothing of devices or CPUs.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

# A precision's name (train.mixed_precision, --dtype) -> its autocast dtype; absent or None: no autocast.
AUTOCAST_DTYPES = {"no": None, "fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@functools.cache
def cpu_lacks_bf16() -> bool:
    """True where /proc/cpuinfo shows neither avx512_bf16 nor amx_bf16 (False where it cannot tell).
    There bf16 arithmetic is emulated, slower than fp32, and oneDNN has no bf16 LSTM."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" not in flags and "amx_bf16" not in flags


def recurrent_in_fp32(device_type: str, autocast_dtype: torch.dtype | None) -> bool:
    """Whether the encoder's recurrent layers must leave autocast on `device_type` under
    `autocast_dtype` (None: no autocast)."""
    if autocast_dtype in (None, torch.float32):
        return False
    if device_type == "cuda":
        return autocast_dtype != torch.float16
    return device_type == "cpu" and cpu_lacks_bf16()


def set_precision_policy(model, device_type: str, autocast_dtype: torch.dtype | None) -> None:
    """Tell `model` (a Seq2Seq) which of its parts run outside autocast on this device and dtype."""
    model.encoder.recurrent_in_fp32 = recurrent_in_fp32(device_type, autocast_dtype)
