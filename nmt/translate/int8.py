"""8-bit products whose every row is computed on its own: `Int8Linear`, built from an nn.Linear.

    y = s_x ⊙ (q(x) · q(W)ᵀ) ⊙ s_W + b        x (B, K), W (N, K) -> y (B, N)

- Weights: one scale per output row, s_W = max_k |W_nk| / 63, q(W) = round(W / s_W) in [-63, 63].
- Activations: one scale per input row (per token), s_x = max_k |x_bk| / 127, q(x) in [-127, 127],
  chosen on the fly from that row alone.
- The integer sums q(x) · q(W)ᵀ are exact whatever their order; the rescaling is one elementwise
  operation at a time.

So a row's output depends on that row and the weights only, bit for bit: not on the batch it is in
(dynamic quantization's single scale over the batch made one sentence's logits move with its
batch-mates), nor on which kernel summed it.

Two kernels give the same sums; `nmt/translate/speed_check.py` keeps the faster one on this CPU:
- `IntMM`: `torch._int_mm`, int8 x int8 -> int32. On CPUs without VNNI oneDNN runs it off its fast
  path (about 2 GFLOP/s on an AVX2 EPYC, against 75 for fp32's product).
- `OneDnnU8S8`: the activations shifted by 128 to unsigned bytes and oneDNN's u8 x s8 product with
  that zero point (`torch.ops.onednn.qlinear_pointwise`), the form AVX2's vpmaddubsw and AVX-512
  VNNI's vpdpbusd run natively: about twice fp32's speed on the AVX2 EPYC. It returns the sums as
  fp32, exact while K x 127 x 63 < 2^24 (K <= 2 096).

Why 7-bit weights: without VNNI, oneDNN multiplies u8 x s8 pairs into a saturating int16
(vpmaddubsw), and s8 activations are shifted to u8 first: with full-range weights a pair of weights
summing over 128 against two activations of 255 saturates, so the sums are wrong (for some shapes
only for batches of two rows or more). With |q(W)| <= 63 the largest pair, 2 x 255 x 63, fits int16:
every ISA gives the exact sum. Each kernel is probed for exact sums at those extremes before use.
"""

from __future__ import annotations

import torch
from torch import nn

from nmt.errors import NmtError

WEIGHT_MAX = 63  # the int16 pair bound above
ACTIVATION_MAX = 127
# A row whose largest |x| is below this is quantized as zeros (a normal float: its scale stays exact).
TINY = 1e-30


def quantize_rows(x: torch.Tensor, bound: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x (B, K) float -> (q (B, K) float holding integers in [-bound, bound], scale (B, 1)), x ≈ q * scale.

    Each operation is elementwise or a row's max, so a row's q and scale do not depend on the others.
    q stays float: each kernel casts it to the bytes it reads."""
    scale = x.abs().amax(-1, keepdim=True).clamp_(min=TINY) / bound  # (B, 1)
    # |x / scale| <= bound up to one rounding, so q fits int8.
    return torch.div(x, scale).round_(), scale


class IntMM:
    """Signed bytes times signed bytes on `torch._int_mm` (int32 sums)."""
    name = "int_mm"

    @staticmethod
    def fits(in_features: int) -> bool:
        return True

    @staticmethod
    def pack(weight: torch.Tensor) -> torch.Tensor:
        """q(W) (N, K) int8 -> (K, N) contiguous: oneDNN reads it faster than the transposed view."""
        return weight.t().contiguous()

    @staticmethod
    def sums(q: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
        """q (B, K) integer floats (consumed) -> (B, N) float32 exact sums."""
        exact = torch._int_mm(q.to(torch.int8), packed)  # (B, N) int32
        # The floats overwrite the int32 sums in place (each element converts where it lies): a fresh
        # (B, N) buffer per call cost more than the product itself at 320 x 4 000 (page faults).
        return exact.view(torch.float32).copy_(exact)


class OneDnnU8S8:
    """Unsigned bytes (q + 128) times signed bytes on oneDNN, the zero point 128 taken off in the sums."""
    name = "onednn_u8s8"
    SHIFT = 128
    MAX_IN = (1 << 24) // (ACTIVATION_MAX * WEIGHT_MAX)  # widest K whose sums fp32 holds exactly

    @classmethod
    def fits(cls, in_features: int) -> bool:
        return in_features <= cls.MAX_IN

    @classmethod
    def pack(cls, weight: torch.Tensor):
        n = weight.size(0)
        return (torch.ops.onednn.qlinear_prepack(weight.contiguous(), None), torch.ones(n), torch.zeros(n, dtype=torch.int32))

    @classmethod
    def sums(cls, q: torch.Tensor, packed) -> torch.Tensor:
        weight, ones, zeros = packed  # unit scales: oneDNN returns the integer sums themselves
        shifted = q.add_(cls.SHIFT).to(torch.uint8)  # in [1, 255]
        return torch.ops.onednn.qlinear_pointwise(shifted, 1.0, cls.SHIFT, weight, ones, zeros, None,
                                                  1.0, 0, torch.float32, "none", [], "")


KERNELS = (OneDnnU8S8, IntMM)


def exact_on_this_cpu(kernel) -> bool:
    """Whether `kernel` exists in this torch and sums exactly at the largest values Int8Linear gives
    it, for a batch of two rows (a saturating kernel is wrong there)."""
    signs = torch.tensor([1, -1, -1, 1, 1, 1, -1, 1], dtype=torch.float32)
    rows = (signs.repeat(8) * ACTIVATION_MAX).view(2, 32)  # (2, K)
    weight = (signs.repeat(4) * WEIGHT_MAX).view(32, 1).repeat(1, 8).t().to(torch.int8)  # (N, K)
    try:
        found = kernel.sums(rows.clone(), kernel.pack(weight))
    except (AttributeError, RuntimeError, NotImplementedError, TypeError):
        return False
    return torch.equal(found.long(), rows.long() @ weight.t().long())


class Int8Linear(nn.Module):
    """An nn.Linear's function on 8-bit weights and per-row 8-bit activations (module docstring)."""

    def __init__(self, linear: nn.Linear, kernel=IntMM):
        super().__init__()
        with torch.no_grad():
            weight, weight_scale = quantize_rows(linear.weight.detach().float(), WEIGHT_MAX)  # (N, K), (N, 1)
        self.kernel = kernel
        self.packed = kernel.pack(weight.to(torch.int8))  # the kernel's own layout: not a checkpoint's
        self.register_buffer("weight_scale", weight_scale.view(-1))  # (N,)
        bias = None if linear.bias is None else linear.bias.detach().float().clone()
        self.register_buffer("bias", bias)
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., K) -> (..., N)."""
        rows = x.reshape(-1, self.in_features)  # (B, K)
        q, scale = quantize_rows(rows.float(), ACTIVATION_MAX)
        y = self.kernel.sums(q, self.packed)  # (B, N)
        # One multiply or add per call, never a fused multiply-add: a fused and an unfused result can
        # differ in the last bit, and which one an element gets may depend on where a SIMD loop splits.
        y.mul_(self.weight_scale).mul_(scale)
        if self.bias is not None:
            y.add_(self.bias)
        return y.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"int8 weights and rows, {self.kernel.name}")


def quantize_linears(root: nn.Module, names: list[str], kernel=IntMM) -> None:
    """Replace the nn.Linear layers `names` (dotted paths under `root`) with Int8Linear, in place."""
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = root.get_submodule(parent_name) if parent_name else root
        layer = getattr(parent, child)
        if not isinstance(layer, nn.Linear):
            raise NmtError(f"int8: {name} is a {type(layer).__name__}, not an nn.Linear")
        setattr(parent, child, Int8Linear(layer, kernel))
