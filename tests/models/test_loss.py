"""NT-Xent against a loop transcription of SimCLR's Algorithm 1, closed forms, invariances, dtypes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from simclr.errors import ConfigError
from simclr.models.loss import NTXentLoss


def reference_nt_xent(z1: np.ndarray, z2: np.ndarray, t: float) -> float:
    """Chen et al. (2020), Algorithm 1, in float64 loops: views 2k-1 and 2k (1-based) are image k's."""
    n = z1.shape[0]
    z = [None] * (2 * n)
    for k in range(n):
        z[2 * k], z[2 * k + 1] = z1[k].astype(np.float64), z2[k].astype(np.float64)

    def sim(u: np.ndarray, v: np.ndarray) -> float:
        return float(u @ v) / (math.sqrt(float(u @ u)) * math.sqrt(float(v @ v)))

    s = [[sim(z[i], z[j]) for j in range(2 * n)] for i in range(2 * n)]

    def ell(i: int, j: int) -> float:
        denominator = sum(math.exp(s[i][k] / t) for k in range(2 * n) if k != i)
        return -math.log(math.exp(s[i][j] / t) / denominator)

    return sum(ell(2 * k, 2 * k + 1) + ell(2 * k + 1, 2 * k) for k in range(n)) / (2 * n)


def randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize(
    "n, d, t",
    [(1, 3, 0.5), (2, 2, 1.0), (4, 8, 0.5), (8, 16, 0.1), (16, 4, 0.07), (5, 128, 2.0), (32, 32, 0.2)],
)
def test_matches_the_papers_algorithm(n: int, d: int, t: float) -> None:
    z1, z2 = randn(n, d, seed=n), randn(n, d, seed=100 + n)
    loss = NTXentLoss(t)(z1, z2)
    ref = reference_nt_xent(z1.numpy(), z2.numpy(), t)
    assert loss.shape == () and loss.dtype == torch.float32
    assert float(loss) == pytest.approx(ref, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("n, d, t", [(3, 5, 0.5), (16, 32, 0.1)])
def test_matches_the_papers_algorithm_in_float64(n: int, d: int, t: float) -> None:
    z1, z2 = randn(n, d, seed=7, dtype=torch.float64), randn(n, d, seed=8, dtype=torch.float64)
    loss = NTXentLoss(t)(z1, z2)
    assert loss.dtype == torch.float64
    assert float(loss) == pytest.approx(reference_nt_xent(z1.numpy(), z2.numpy(), t), rel=1e-12)


def test_correlated_views_give_a_lower_loss_than_unrelated_ones() -> None:
    z1 = randn(16, 32, seed=1)
    close = NTXentLoss(0.5)(z1, z1 + 0.1 * randn(16, 32, seed=2))
    unrelated = NTXentLoss(0.5)(z1, randn(16, 32, seed=3))
    assert close < unrelated


@pytest.mark.parametrize("n, t", [(1, 0.5), (2, 0.5), (4, 0.1), (8, 1.0), (3, 0.07)])
def test_identical_positives_with_orthogonal_negatives(n: int, t: float) -> None:
    eye = torch.eye(n, 2 * n + 1)
    loss = NTXentLoss(t)(eye, eye.clone())
    assert float(loss) == pytest.approx(math.log(1 + (2 * n - 2) * math.exp(-1 / t)), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("n, t", [(1, 0.5), (2, 0.5), (4, 0.1), (8, 1.0)])
def test_all_embeddings_orthogonal_gives_log_2n_minus_1(n: int, t: float) -> None:
    eye = torch.eye(2 * n)
    loss = NTXentLoss(t)(eye[:n], eye[n:])
    assert float(loss) == pytest.approx(math.log(2 * n - 1), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("n, t", [(2, 0.5), (4, 0.1), (8, 1.0)])
def test_all_embeddings_identical_gives_log_2n_minus_1(n: int, t: float) -> None:
    z = randn(1, 7, seed=4).expand(n, 7)
    loss = NTXentLoss(t)(z, z.clone())
    assert float(loss) == pytest.approx(math.log(2 * n - 1), rel=1e-5)


def test_is_symmetric_in_the_two_views() -> None:
    z1, z2 = randn(12, 16, seed=5), randn(12, 16, seed=6)
    loss = NTXentLoss(0.3)
    torch.testing.assert_close(loss(z1, z2), loss(z2, z1))


def test_is_invariant_to_permuting_the_pairs_jointly() -> None:
    z1, z2 = randn(12, 16, seed=7), randn(12, 16, seed=8)
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(9))
    loss = NTXentLoss(0.3)
    torch.testing.assert_close(loss(z1[perm], z2[perm]), loss(z1, z2))


def test_permuting_one_view_alone_changes_the_loss() -> None:
    z1 = randn(12, 16, seed=10)
    z2 = z1 + 0.2 * randn(12, 16, seed=11)
    loss = NTXentLoss(0.3)
    assert float(loss(z1, z2.roll(1, 0))) > float(loss(z1, z2)) + 0.5


def test_is_invariant_to_scaling_each_embedding() -> None:
    z1, z2 = randn(10, 8, seed=12), randn(10, 8, seed=13)
    scale = torch.rand(10, 1, generator=torch.Generator().manual_seed(14)) * 100 + 0.01
    loss = NTXentLoss(0.5)
    torch.testing.assert_close(loss(z1 * scale, 3.0 * z2), loss(z1, z2))


def test_temperature_is_used() -> None:
    z1, z2 = randn(8, 8, seed=15), randn(8, 8, seed=16)
    assert not torch.allclose(NTXentLoss(0.1)(z1, z2), NTXentLoss(1.0)(z1, z2))


def test_gradcheck_in_float64() -> None:
    z1 = randn(4, 5, seed=17, dtype=torch.float64).requires_grad_()
    z2 = randn(4, 5, seed=18, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(NTXentLoss(0.5), (z1, z2), eps=1e-6, atol=1e-6)


def test_gradients_are_finite_for_identical_embeddings() -> None:
    z = randn(1, 6, seed=19).expand(4, 6).clone().requires_grad_()
    NTXentLoss(0.1)(z, z.detach().clone()).backward()
    assert torch.isfinite(z.grad).all()


def test_bf16_inputs_give_a_finite_float32_loss_close_to_float32() -> None:
    z1, z2 = randn(64, 32, seed=20).bfloat16(), randn(64, 32, seed=21).bfloat16()
    loss = NTXentLoss(0.1)
    out = loss(z1, z2)
    assert out.dtype == torch.float32 and torch.isfinite(out)
    torch.testing.assert_close(out, loss(z1.float(), z2.float()), rtol=1e-5, atol=1e-5)


def test_under_bf16_autocast_the_loss_is_float32_and_close_to_float32() -> None:
    z1, z2 = randn(64, 32, seed=22), randn(64, 32, seed=23)
    loss = NTXentLoss(0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = loss(z1, z2)
    assert out.dtype == torch.float32 and torch.isfinite(out)
    torch.testing.assert_close(out, loss(z1, z2), rtol=1e-5, atol=1e-5)


def test_under_bf16_autocast_with_bf16_projections_the_gradient_flows() -> None:
    w = randn(16, 8, seed=24).requires_grad_()
    x1, x2 = randn(32, 16, seed=25), randn(32, 16, seed=26)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z1, z2 = x1 @ w, x2 @ w
        assert z1.dtype == torch.bfloat16
        out = NTXentLoss(0.2)(z1, z2)
    assert out.dtype == torch.float32
    out.backward()
    assert w.grad is not None and torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0
    ref = reference_nt_xent(z1.detach().float().numpy(), z2.detach().float().numpy(), 0.2)
    assert float(out.detach()) == pytest.approx(ref, rel=1e-4)


@pytest.mark.parametrize("temperature", [0.0, -0.5, float("nan")])
def test_non_positive_temperature_raises_config_error(temperature: float) -> None:
    with pytest.raises(ConfigError):
        NTXentLoss(temperature)


@pytest.mark.parametrize("shape1, shape2", [((4, 8), (5, 8)), ((4, 8), (4, 7)), ((4, 8, 1), (4, 8, 1)), ((8,), (8,))])
def test_mismatched_or_non_matrix_shapes_raise_value_error(shape1: tuple[int, ...], shape2: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        NTXentLoss(0.5)(torch.randn(*shape1), torch.randn(*shape2))
