"""Products with tensors that every step of a time loop reads, and their gradients summed once per loop.

In teacher forcing the decoder reads the same recurrent weights and the same projected memory at
each of T steps. Autograd treats these as T separate uses: in backward it computes T small
gradient products for the shared tensor (for a weight, (N, B) x (B, K) each) and adds them up one
by one. Their sum is one product over all steps ((N, T*B) x (T*B, K)), which runs at full speed
and writes the result once. `Loop` gets it that way: each step's backward computes the gradient of
its own input as usual and leaves its factors behind; the loop's first read of a tensor, whose
backward autograd runs last (everything later depends on it), multiplies them all at once.

`DIRECT` offers the same two products with no bookkeeping, for decoding and single steps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class Direct:
    """Plain products: what a loop with no shared gradients uses (decoding, one step)."""

    @staticmethod
    def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        return F.linear(x, weight, bias)

    @staticmethod
    def bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.bmm(a, b)


DIRECT = Direct()


class Loop:
    """One unrolled loop's reads of shared tensors (one instance per forward pass)."""

    def __init__(self):
        self.factors: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}

    def _first_read(self, shared: torch.Tensor) -> bool:
        key = id(shared)
        first = key not in self.factors
        if first:
            self.factors[key] = []
        return first

    def linear(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, K) @ weight (N, K)ᵀ + bias (N,), weight and bias shared by every step."""
        return _SharedLinear.apply(x, weight, bias, self, self._first_read(weight))

    def bmm(self, a: torch.Tensor, shared: torch.Tensor) -> torch.Tensor:
        """a (B, M, S) @ shared (B, S, D), `shared` read by every step (e.g. the projected memory)."""
        return _SharedBmm.apply(a, shared, self, self._first_read(shared))

    def collect(self, shared: torch.Tensor, a: torch.Tensor, grad: torch.Tensor, first: bool):
        """Keep one step's factors; at the first read, return all of them (the loop's backward is over)."""
        factors = self.factors[id(shared)]
        factors.append((a, grad))
        if not first:
            return None
        self.factors[id(shared)] = []
        return factors


class _SharedLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, loop, first):
        ctx.save_for_backward(x, weight)
        ctx.loop, ctx.first, ctx.has_bias = loop, first, bias is not None
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = grad @ weight.to(grad.dtype)
        factors = ctx.loop.collect(weight, x, grad, ctx.first)
        if factors is None:
            return grad_x, None, None, None, None
        xs = torch.cat([f[0] for f in factors]).to(weight.dtype)  # (T*B, K)
        grads = torch.cat([f[1] for f in factors]).to(weight.dtype)  # (T*B, N)
        grad_bias = grads.sum(0) if ctx.has_bias else None
        return grad_x, grads.t() @ xs, grad_bias, None, None


class _SharedBmm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, shared, loop, first):
        ctx.save_for_backward(a, shared)
        ctx.loop, ctx.first = loop, first
        return torch.bmm(a, shared)

    @staticmethod
    def backward(ctx, grad):
        a, shared = ctx.saved_tensors
        grad_a = torch.bmm(grad, shared.transpose(1, 2).to(grad.dtype))
        factors = ctx.loop.collect(shared, a, grad, ctx.first)
        if factors is None:
            return grad_a, None, None, None
        a_all = torch.cat([f[0] for f in factors], 1).to(shared.dtype)  # (B, T*M, S)
        grads = torch.cat([f[1] for f in factors], 1).to(shared.dtype)  # (B, T*M, D)
        return grad_a, torch.bmm(a_all.transpose(1, 2), grads), None, None
