"""Bahdanau (additive) attention.

    score(q, k_j) = vᵀ tanh(W_q q + W_k k_j)
    α = softmax over the real (unpadded) source positions j
    context = Σ_j α_j k_j

The module is stateless: the caller projects the keys once per batch with `project_keys`
and passes them to every step, so the (B, S, 2H) x (2H, A) product is not repeated per step.
"""

from __future__ import annotations

import torch
from torch import nn


class BahdanauAttention(nn.Module):
    def __init__(self, query_size: int, key_size: int, hidden_size: int):
        super().__init__()
        self.key_proj = nn.Linear(key_size, hidden_size, bias=False)
        self.query_proj = nn.Linear(query_size, hidden_size, bias=False)
        self.v = nn.Linear(hidden_size, 1, bias=False)

    def project_keys(self, memory: torch.Tensor) -> torch.Tensor:
        return self.key_proj(memory)  # (B, S, A)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, memory: torch.Tensor,
                mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """query (B, Q), keys (B, S, A), memory (B, S, K), mask (B, S) -> context (B, K), weights (B, S)."""
        scores = self.v(torch.tanh(self.query_proj(query).unsqueeze(1) + keys)).squeeze(2)  # (B, S)
        # -inf, not a large negative number: padding must get exactly zero weight.
        weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
        context = torch.bmm(weights.unsqueeze(1).to(memory.dtype), memory).squeeze(1)
        return context, weights
