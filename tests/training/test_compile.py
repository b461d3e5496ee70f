"""`model.compile=true` compiles the step's device work (two views, encoder, head, NT-Xent) and
changes nothing a user can measure: the same loss and gradients as the eager step, the same
checkpoint keys. Compiling the step on 2 CPU cores takes 30 s to a minute, so that comparison is a slow test;
the default run checks the wiring, and tests/views/test_augment.py compiles the augmentation, the part of the step
written for it (one graph, the eager values)."""

from __future__ import annotations

import pytest
import torch

from simclr.training.pretrain import SimCLRModule

# Inductor reorders float32 reductions (BatchNorm statistics, the NT-Xent softmax): compiled and
# eager results agree to rounding, far inside this, while a wrong view or a dropped term moves the
# loss by more than 1e-2 and the gradients entirely.
LOSS_ATOL = 1e-4
GRAD_ATOL = 1e-4


def _module(compile: bool) -> SimCLRModule:
    torch.manual_seed(0)  # same initial weights for both
    model = dict(arch="resnet_tiny", width=4, compile=compile, head=dict(hidden_dim=32, out_dim=16))
    return SimCLRModule(
        model=model,
        augmentation={},
        optimizer=dict(name="adam"),
        loss=dict(temperature=0.5),
        scheduler={},
        knn=dict(k=5, temperature=0.1),
        lr=1e-3,
    )


def test_compile_wraps_the_step_and_leaves_the_checkpoint_keys() -> None:
    eager, compiled = _module(False), _module(True)
    assert eager.views_loss == eager._views_loss and eager.pair_loss == eager._pair_loss  # the bound methods
    for wrapped, method in ((compiled.views_loss, compiled._views_loss), (compiled.pair_loss, compiled._pair_loss)):
        assert wrapped._torchdynamo_orig_callable == method  # what torch.compile returns for it
    assert eager.state_dict().keys() == compiled.state_dict().keys()


@pytest.mark.slow
def test_compiled_step_gives_the_eager_loss_and_gradients() -> None:
    eager, compiled = _module(False), _module(True)
    gen = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8, generator=gen)
    cpu = torch.device("cpu")
    first, second = (eager.augment.sample_params(8, 32, 32, cpu, gen) for _ in range(2))
    losses = []
    for module in (eager, compiled):
        loss = module.views_loss(images, first, second)
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[1], losses[0], atol=LOSS_ATOL, rtol=0)
    for (name, p_eager), p_compiled in zip(eager.named_parameters(), compiled.parameters(), strict=True):
        torch.testing.assert_close(p_compiled.grad, p_eager.grad, atol=GRAD_ATOL, rtol=1e-3, msg=name)
    # A different draw gives a different loss: the comparison above is not between constants.
    other = eager.views_loss(images, second, eager.augment.sample_params(8, 32, 32, cpu, gen))
    assert (other - losses[0]).abs() > 1e-3
