"""The weighted kNN monitor against a plain Python transcription of weighted kNN voting."""

from __future__ import annotations

import math

import pytest
import torch

from simclr.evaluation.knn import knn_predict


def brute_force(query: list[list[float]], bank: list[list[float]], labels: list[int], classes: int, k: int, t: float):
    """Cosine similarity to every bank row; the k most similar vote exp(sim / t) for their class."""

    def cosine(a: list[float], b: list[float]) -> float:
        dot = sum(x * y for x, y in zip(a, b, strict=True))
        return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))

    predictions = []
    for q in query:
        sims = [cosine(q, b) for b in bank]
        nearest = sorted(range(len(bank)), key=lambda i: -sims[i])[: min(k, len(bank))]
        votes = [0.0] * classes
        for i in nearest:
            votes[labels[i]] += math.exp(sims[i] / t)
        predictions.append(max(range(classes), key=lambda c: votes[c]))
    return predictions


@pytest.mark.parametrize("k, temperature, chunk", [(20, 0.1, 7), (5, 0.5, 1024), (300, 0.07, 16)])
def test_knn_predict_equals_the_loop(k: int, temperature: float, chunk: int) -> None:
    gen = torch.Generator().manual_seed(k)
    query, bank = torch.randn(60, 16, generator=gen), torch.randn(300, 16, generator=gen)
    labels = torch.randint(0, 10, (300,), generator=gen)
    got = knn_predict(query, bank, labels, 10, k=k, temperature=temperature, chunk=chunk)
    expected = brute_force(query.double().tolist(), bank.double().tolist(), labels.tolist(), 10, k, temperature)
    assert got.tolist() == expected
    assert len(set(expected)) > 3  # random features: the votes are not all one class


def test_votes_are_weighted() -> None:
    """The loop above can tell weighted from unweighted voting on these features (so the check can fail)."""
    gen = torch.Generator().manual_seed(0)
    query, bank = torch.randn(60, 16, generator=gen), torch.randn(300, 16, generator=gen)
    labels = torch.randint(0, 10, (300,), generator=gen)
    weighted = knn_predict(query, bank, labels, 10, k=50, temperature=0.05).tolist()
    uniform = brute_force(query.double().tolist(), bank.double().tolist(), labels.tolist(), 10, 50, 1e6)
    assert weighted != uniform


@pytest.mark.parametrize("k", [0, 301])
def test_k_outside_the_bank_is_refused_not_clamped(k: int) -> None:
    bank = torch.randn(300, 16)
    with pytest.raises(ValueError, match=rf"k={k} neighbours must lie in 1\.\.300"):
        knn_predict(torch.randn(4, 16), bank, torch.zeros(300, dtype=torch.long), 10, k=k)
