"""8-bit products whose every row is computed on its own: `Int8Linear`, built from an nn.Linear.

    y = s_x ⊙ (q(x) · q(W)ᵀ) ⊙ s_W + b        x (B, K), W (N, K) -> y (B, N)

- Weights: one scale per output row, s_W = max_k |W_nk| / 63, q(W) = round(W / s_W) in [-63, 63].
- Activations: one scale per input row (per token), s_x = max_k |x_bk| / 127, q(x) in [-127, 127],
  chosen on the fly from that row alone.
- The product q(x) · q(W)ᵀ runs on `torch._int_mm` (int8 x int8 -> int32; oneDNN on x86), whose
  integer sums are exact whatever their order; the rescaling is one elementwise operation at a time.

So a row's output depends on that row and the weights only, bit for bit: not on the batch it is in
(dynamic quantization's single scale over the batch made one sentence's logits move with its
batch-mates). Why 7-bit weights: on x86 CPUs without VNNI (AVX2, AVX-512 before Cascade Lake)
oneDNN adds 128 to the activations and multiplies u8 x s8 pairs into a saturating int16 (vpmaddubsw):
with full-range weights a pair of weights summing over 128 against two activations of 127 saturates,
so the sums are wrong, and for some shapes only for batches of two rows or more (a row alone then got
another answer than in a batch). With |q(W)| <= 63 the largest pair, 2 x 255 x 63, fits int16: every
ISA gives the exact sum (checked with ONEDNN_MAX_CPU_ISA=AVX2 and =AVX512_CORE, docs/decoding.md).
"""

from __future__ import annotations

import torch
from torch import nn

from nmt.errors import NmtError

WEIGHT_MAX = 63  # the int16 pair bound above
ACTIVATION_MAX = 127
# A row whose largest |x| is below this is quantized as zeros (a normal float: its scale stays exact).
TINY = 1e-30


def check_backend() -> None:
    """One line instead of a traceback where this torch has no CPU int8 matrix product, or one whose
    sums are not exact at the largest values Int8Linear gives it (a saturating kernel)."""
    signs = torch.tensor([1, -1, -1, 1, 1, 1, -1, 1], dtype=torch.int8)
    rows = (signs.repeat(8) * ACTIVATION_MAX).view(2, 32)  # (2, K): two rows, as a batch
    weight_t = (signs.repeat(4) * WEIGHT_MAX).view(32, 1).repeat(1, 8)  # (K, N)
    try:
        exact = torch.equal(torch._int_mm(rows, weight_t).long(), rows.long() @ weight_t.long())
    except (AttributeError, RuntimeError, NotImplementedError, TypeError) as err:
        raise NmtError(f"--dtype int8 needs torch._int_mm on the CPU, which torch {torch.__version__} lacks "
                       f"({str(err).splitlines()[0]}); use --dtype fp32") from None
    if not exact:
        raise NmtError(f"--dtype int8: torch {torch.__version__}'s int8 product saturates on this CPU; use --dtype fp32")


def quantize_rows(x: torch.Tensor, bound: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x (B, K) float -> (q (B, K) int8 in [-bound, bound], scale (B, 1)) with x ≈ q * scale.

    Each operation is elementwise or a row's max, so a row's q and scale do not depend on the others."""
    scale = x.abs().amax(-1, keepdim=True).clamp_(min=TINY) / bound  # (B, 1)
    # |x / scale| <= bound up to one rounding, so round() stays within int8.
    return torch.div(x, scale).round_().to(torch.int8), scale


class Int8Linear(nn.Module):
    """An nn.Linear's function on 8-bit weights and per-row 8-bit activations (module docstring)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        with torch.no_grad():
            weight, weight_scale = quantize_rows(linear.weight.detach().float(), WEIGHT_MAX)  # (N, K), (N, 1)
        # (K, N) contiguous: oneDNN's int8 product reads it faster than the transposed view (M = 320: 1.9 vs 4.6 ms).
        self.register_buffer("weight_t", weight.t().contiguous())
        self.register_buffer("weight_scale", weight_scale.view(-1))  # (N,)
        bias = None if linear.bias is None else linear.bias.detach().float().clone()
        self.register_buffer("bias", bias)
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., K) -> (..., N)."""
        rows = x.reshape(-1, self.in_features)  # (B, K)
        q, scale = quantize_rows(rows.float(), ACTIVATION_MAX)
        exact = torch._int_mm(q, self.weight_t)  # (B, N) int32
        # The floats overwrite the int32 sums in place (each element converts where it lies): a fresh
        # (B, N) buffer per call cost more than the product itself at 320 x 4 000 (page faults).
        y = exact.view(torch.float32).copy_(exact)  # (B, N)
        # One multiply or add per call, never a fused multiply-add: a fused and an unfused result can
        # differ in the last bit, and which one an element gets may depend on where a SIMD loop splits.
        y.mul_(self.weight_scale).mul_(scale)
        if self.bias is not None:
            y.add_(self.bias)
        return y.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weights and rows"


def quantize_linears(root: nn.Module, names: list[str]) -> None:
    """Replace the nn.Linear layers `names` (dotted paths under `root`) with Int8Linear, in place."""
    check_backend()
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = root.get_submodule(parent_name) if parent_name else root
        layer = getattr(parent, child)
        if not isinstance(layer, nn.Linear):
            raise NmtError(f"int8: {name} is a {type(layer).__name__}, not an nn.Linear")
        setattr(parent, child, Int8Linear(layer))
