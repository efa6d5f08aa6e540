"""Bahdanau (additive) attention.

    e_j = vᵀ tanh(W_q s + W_k m_j)            score of source position j for query s
    α   = softmax(e) over the real (unpadded) positions
    c   = Σ_j α_j m_j                          the context vector

The module is stateless: the caller projects the keys W_k m once per batch with `project_keys`
and passes them to every step.
"""

from __future__ import annotations

import torch
from torch import nn


class BahdanauAttention(nn.Module):
    def __init__(self, query_size: int, key_size: int, hidden_size: int):
        super().__init__()
        self.key_proj = nn.Linear(key_size, hidden_size, bias=False)  # W_k
        self.query_proj = nn.Linear(query_size, hidden_size, bias=False)  # W_q
        self.v = nn.Linear(hidden_size, 1, bias=False)

    def project_keys(self, memory: torch.Tensor) -> torch.Tensor:
        return self.key_proj(memory)  # (B, S, A)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """query (B*K, Q), keys (B, S, A), values (B, S, M), mask (B, S) -> context (B*K, M), α (B*K, S).

        `values` is the memory, or any linear map of it (Σ_j α_j W m_j = W c: nmt/translate/inference.py).
        K consecutive query rows (one sentence's beams; K = 1 in training and greedy search) share
        their sentence's keys and values, so beam search never copies them K times.
        """
        B, S, A = keys.shape
        q = self.query_proj(query).view(B, -1, 1, A)  # (B, K, 1, A)
        scores = torch.add(q, keys.unsqueeze(1)).tanh_() @ self.v.weight[0]  # (B, K, S): vᵀ tanh(W_q s + W_k m_j)
        return weigh(scores, values, mask)


def weigh(scores: torch.Tensor, values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """scores (B, K, S) -> context (B*K, M) = Σ_j α_j values_j and α (B*K, S) = softmax over the real positions."""
    # -inf, not a large negative number: padding must get exactly zero weight.
    alpha = torch.softmax(scores.masked_fill(~mask.unsqueeze(1), float("-inf")), dim=-1)
    context = torch.matmul(alpha.to(values.dtype), values)  # (B, K, M)
    return context.flatten(0, 1), alpha.flatten(0, 1)
