"""Weighted k-nearest-neighbour classification of features, the standard SSL monitor (Wu et al., 2018)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def knn_predict(
    query: torch.Tensor,
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    chunk: int = 1024,
) -> torch.Tensor:
    """Predicted classes (Q,) for query features (Q, D) given a bank (N, D) with labels (N,).

    Cosine similarity; each of the k nearest neighbours votes for its class with weight
    exp(similarity / temperature). Queries are processed in chunks to bound memory at chunk x N.
    A k larger than the bank is an error, not a silent clamp: it would be a different classifier.
    """
    if not 1 <= k <= bank.shape[0]:
        raise ValueError(f"k={k} neighbours must lie in 1..{bank.shape[0]}, the size of the bank")
    bank = F.normalize(bank.float(), dim=1)
    preds = []
    for q in F.normalize(query.float(), dim=1).split(chunk):
        sim, idx = (q @ bank.T).topk(k, dim=1)
        weights = (sim / temperature).exp()
        votes = torch.zeros(q.shape[0], num_classes, device=q.device, dtype=weights.dtype)
        votes.scatter_add_(1, bank_labels[idx], weights)
        preds.append(votes.argmax(dim=1))
    return torch.cat(preds)
