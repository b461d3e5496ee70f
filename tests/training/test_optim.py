"""Warm-up + cosine schedule, learning-rate scaling, optimizer construction and the LARS step."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from simclr.config.derived import scaled_lr
from simclr.errors import ConfigError
from simclr.training.optim import LARS, build_optimizer, warmup_cosine

# ---- schedule -------------------------------------------------------------------------------


@pytest.mark.parametrize("total, warmup, final", [(110, 10, 0.0), (1000, 100, 0.1), (55, 5, 0.5), (21, 1, 0.01)])
def test_warmup_cosine_key_points(total: int, warmup: int, final: float) -> None:
    assert warmup_cosine(0, total, warmup, final) == pytest.approx(1 / warmup)
    assert warmup_cosine(warmup - 1, total, warmup, final) == pytest.approx(1.0)
    assert warmup_cosine(warmup, total, warmup, final) == pytest.approx(1.0)
    assert (total - warmup) % 2 == 0
    midpoint = warmup + (total - warmup) // 2
    assert warmup_cosine(midpoint, total, warmup, final) == pytest.approx(final + (1 - final) / 2)
    assert warmup_cosine(total, total, warmup, final) == pytest.approx(final, abs=1e-12)
    assert warmup_cosine(total + 50, total, warmup, final) == pytest.approx(final, abs=1e-12)


def test_warmup_is_linear() -> None:
    values = [warmup_cosine(s, 100, 10) for s in range(10)]
    assert values == pytest.approx([(s + 1) / 10 for s in range(10)])


def test_cosine_part_follows_the_cosine_and_decreases() -> None:
    total, warmup, final = 200, 20, 0.05
    values = [warmup_cosine(s, total, warmup, final) for s in range(warmup, total + 1)]
    assert all(a > b for a, b in zip(values[:-1], values[1:], strict=True))
    step = warmup + 45  # a quarter of the way through the decay
    expected = final + (1 - final) * 0.5 * (1 + math.cos(math.pi / 4))
    assert warmup_cosine(step, total, warmup, final) == pytest.approx(expected)


def test_no_warmup_starts_at_the_peak() -> None:
    assert warmup_cosine(0, 100, 0) == pytest.approx(1.0)
    assert warmup_cosine(100, 100, 0) == pytest.approx(0.0, abs=1e-12)


# ---- learning-rate scaling ------------------------------------------------------------------


@pytest.mark.parametrize(
    "rule, batch, base, expected",
    [
        ("linear", 512, 256, 0.6),
        ("linear", 128, 256, 0.15),
        ("sqrt", 1024, 256, 0.6),
        ("sqrt", 64, 256, 0.15),
        ("none", 4096, 256, 0.3),
        ("linear", 256, 256, 0.3),
    ],
)
def test_scaled_lr_rules(rule: str, batch: int, base: int, expected: float) -> None:
    assert scaled_lr(0.3, rule, batch, base) == pytest.approx(expected)


@pytest.mark.parametrize("rule", ["cubic", "Linear", ""])
def test_scaled_lr_unknown_rule_raises_config_error(rule: str) -> None:
    with pytest.raises(ConfigError):
        scaled_lr(0.3, rule, 512, 256)


# ---- build_optimizer ------------------------------------------------------------------------


def small_model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))


def test_build_adam_with_hyperparameters() -> None:
    model = small_model()
    opt = build_optimizer(model, {"name": "adam", "weight_decay": 1e-6, "betas": [0.8, 0.99]}, lr=3e-3)
    assert type(opt) is torch.optim.Adam
    (group,) = opt.param_groups
    assert group["lr"] == 3e-3 and group["weight_decay"] == 1e-6 and tuple(group["betas"]) == (0.8, 0.99)
    assert len(group["params"]) == len(list(model.parameters()))


def test_build_adamw_with_hyperparameters() -> None:
    opt = build_optimizer(small_model(), {"name": "adamw", "weight_decay": 0.05}, lr=1e-3)
    assert type(opt) is torch.optim.AdamW
    assert opt.param_groups[0]["lr"] == 1e-3 and opt.param_groups[0]["weight_decay"] == 0.05


def test_build_sgd_with_hyperparameters() -> None:
    cfg = {"name": "sgd", "weight_decay": 5e-4, "momentum": 0.8, "nesterov": True}
    opt = build_optimizer(small_model(), cfg, lr=0.06)
    assert type(opt) is torch.optim.SGD
    group = opt.param_groups[0]
    assert group["lr"] == 0.06 and group["weight_decay"] == 5e-4
    assert group["momentum"] == 0.8 and group["nesterov"] is True


def test_build_lars_with_hyperparameters() -> None:
    cfg = {"name": "lars", "weight_decay": 1e-6, "momentum": 0.85, "trust_coefficient": 0.002}
    opt = build_optimizer(small_model(), cfg, lr=1.2)
    assert type(opt) is LARS
    group = opt.param_groups[0]
    assert group["lr"] == 1.2 and group["weight_decay"] == 1e-6
    assert group["momentum"] == 0.85 and group["trust_coefficient"] == 0.002 and group["lars_adapt"] is True


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "lars"])
def test_exclude_bias_and_norm_puts_1d_params_in_an_undecayed_unadapted_group(name: str) -> None:
    model = small_model()
    opt = build_optimizer(model, {"name": name, "weight_decay": 1e-4, "exclude_bias_and_norm": True}, lr=0.1)
    assert len(opt.param_groups) == 2
    decay, no_decay = opt.param_groups
    assert {id(p) for p in decay["params"]} == {id(p) for p in model.parameters() if p.ndim > 1}
    assert {id(p) for p in no_decay["params"]} == {id(p) for p in model.parameters() if p.ndim == 1}
    assert decay["weight_decay"] == 1e-4 and no_decay["weight_decay"] == 0.0
    assert no_decay["lars_adapt"] is False
    assert decay["lr"] == no_decay["lr"] == 0.1
    if name == "lars":
        assert decay["lars_adapt"] is True


def test_without_exclusion_every_param_is_in_one_decayed_group() -> None:
    model = small_model()
    opt = build_optimizer(model, {"name": "lars", "weight_decay": 1e-4}, lr=0.1)
    (group,) = opt.param_groups
    assert {id(p) for p in group["params"]} == {id(p) for p in model.parameters()}
    assert group["weight_decay"] == 1e-4


def test_frozen_parameters_are_left_out() -> None:
    model = small_model()
    model[0].weight.requires_grad_(False)
    opt = build_optimizer(model, {"name": "sgd"}, lr=0.1)
    assert all(p is not model[0].weight for g in opt.param_groups for p in g["params"])


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_cpu_parameters_take_the_fused_kernel(name: str) -> None:
    """One fused kernel per step on the CPU too (the quick start's device), and the same step as the loop's."""
    torch.manual_seed(0)
    a, b = nn.Linear(4, 3), nn.Linear(4, 3)
    b.load_state_dict(a.state_dict())
    cfg = {"name": name, "weight_decay": 1e-4, "momentum": 0.9}
    fused = build_optimizer(a, cfg, lr=0.1)
    assert fused.defaults["fused"] is True
    looped = torch.optim.SGD if name == "sgd" else {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
    extra = {"momentum": 0.9} if name == "sgd" else {}
    reference = looped(b.parameters(), lr=0.1, weight_decay=1e-4, foreach=False, **extra)
    x = torch.randn(8, 4)
    for _ in range(3):
        for model, opt in ((a, fused), (b, reference)):
            opt.zero_grad()
            model(x).square().sum().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q)


@pytest.mark.parametrize("name", ["rmsprop", "Adam", "lamb"])
def test_unknown_optimizer_raises_config_error(name: str) -> None:
    with pytest.raises(ConfigError):
        build_optimizer(small_model(), {"name": name}, lr=0.1)


# ---- LARS -----------------------------------------------------------------------------------


def test_lars_first_and_second_steps_match_hand_computation() -> None:
    lr, momentum, wd, eta = 0.5, 0.9, 0.01, 0.02
    w0 = torch.tensor([3.0, -4.0, 1.0], dtype=torch.float64)
    g1 = torch.tensor([0.5, 0.25, -1.0], dtype=torch.float64)
    g2 = torch.tensor([-0.3, 0.7, 0.2], dtype=torch.float64)
    w = nn.Parameter(w0.clone())
    opt = LARS([w], lr=lr, momentum=momentum, weight_decay=wd, trust_coefficient=eta)

    w.grad = g1.clone()
    opt.step()
    d1 = g1 + wd * w0
    buf1 = (eta * w0.norm() / d1.norm()) * d1
    w1 = w0 - lr * buf1
    torch.testing.assert_close(opt.state[w]["momentum_buffer"], buf1, rtol=1e-7, atol=1e-12)
    torch.testing.assert_close(w.detach(), w1, rtol=1e-7, atol=1e-12)

    w.grad = g2.clone()
    opt.step()
    d2 = g2 + wd * w1
    buf2 = momentum * buf1 + (eta * w1.norm() / d2.norm()) * d2
    torch.testing.assert_close(opt.state[w]["momentum_buffer"], buf2, rtol=1e-7, atol=1e-12)
    torch.testing.assert_close(w.detach(), w1 - lr * buf2, rtol=1e-7, atol=1e-12)


def test_lars_step_size_is_lr_times_trust_times_weight_norm() -> None:
    """The first update has norm lr * eta * ||w||, whatever the gradient's magnitude."""
    for scale in (1e-2, 1.0, 1e4):  # large enough that eps=1e-8 is negligible
        w = nn.Parameter(torch.tensor([[1.0, 2.0], [2.0, 4.0]], dtype=torch.float64))
        before = w.detach().clone()
        w.grad = scale * torch.tensor([[1.0, -1.0], [0.5, 2.0]], dtype=torch.float64)
        LARS([w], lr=0.1, weight_decay=0.0, trust_coefficient=0.01).step()
        assert float((w.detach() - before).norm()) == pytest.approx(0.1 * 0.01 * float(before.norm()), rel=1e-5)


def test_lars_unadapted_group_takes_plain_sgd_momentum_steps_without_decay() -> None:
    b = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = LARS([{"params": [b], "lars_adapt": False}], lr=0.1, momentum=0.9, weight_decay=0.5)
    b.grad = torch.tensor([0.2, 0.4], dtype=torch.float64)
    opt.step()
    torch.testing.assert_close(b.detach(), torch.tensor([0.98, -2.04], dtype=torch.float64))
    b.grad = torch.tensor([0.1, 0.0], dtype=torch.float64)
    opt.step()
    # buffer = 0.9 * (0.2, 0.4) + (0.1, 0) = (0.28, 0.36)
    torch.testing.assert_close(b.detach(), torch.tensor([0.952, -2.076], dtype=torch.float64))


def test_lars_zero_weights_fall_back_to_an_unscaled_step() -> None:
    w = nn.Parameter(torch.zeros(3, dtype=torch.float64))
    w.grad = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    LARS([w], lr=0.1, weight_decay=0.0).step()
    torch.testing.assert_close(w.detach(), torch.tensor([-0.1, -0.2, -0.3], dtype=torch.float64))


def test_lars_skips_parameters_without_gradient() -> None:
    w = nn.Parameter(torch.ones(3))
    opt = LARS([w], lr=1.0)
    opt.step()
    assert torch.equal(w.detach(), torch.ones(3)) and w not in opt.state


def test_lars_step_returns_the_closure_loss() -> None:
    w = nn.Parameter(torch.ones(2))
    opt = LARS([w], lr=0.1)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (w**2).sum()
        loss.backward()
        return loss

    assert float(opt.step(closure).detach()) == pytest.approx(2.0)
    assert (w.detach() < 1).all()


def test_lars_decreases_a_least_squares_loss() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 8, generator=g)
    y = x @ torch.randn(8, 1, generator=g) + 0.5
    model = nn.Linear(8, 1)
    opt = build_optimizer(
        model,
        {
            "name": "lars",
            "weight_decay": 1e-6,
            "momentum": 0.9,
            "trust_coefficient": 0.02,
            "exclude_bias_and_norm": True,
        },
        lr=0.5,
    )

    def loss_fn() -> torch.Tensor:
        return ((model(x) - y) ** 2).mean()

    initial = float(loss_fn().detach())
    for _ in range(200):
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
    assert float(loss_fn().detach()) < 0.1 * initial
