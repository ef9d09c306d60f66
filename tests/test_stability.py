"""Tests for trainer_client.stability: hand-computed values, gradients, edge cases."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainer_client.stability import (
    clamp_lora_delta_norm,
    clue_diversity_loss,
    init_stop_predictor_bias,
    lora_norm_regularization,
    soft_clamp_logits,
)


def _delta_with_norms(norms: list[float], d: int = 4) -> torch.Tensor:
    """(B, d, d) deltas whose per-sample Frobenius norms are exactly ``norms``."""
    base = torch.zeros(len(norms), d, d, dtype=torch.float64)
    base[:, 0, 0] = 0.6
    base[:, 1, 2] = -0.8  # unit norm
    return base * torch.tensor(norms, dtype=torch.float64)[:, None, None]


def _norms(x: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(x.flatten(1), dim=1)


# --- clamp_lora_delta_norm ---------------------------------------------------


def test_clamp_scales_large_and_keeps_small_identical() -> None:
    delta = _delta_with_norms([0.5, 3.0, 6.0, 30.0])
    out = clamp_lora_delta_norm(delta, max_norm=3.0)
    torch.testing.assert_close(_norms(out), torch.tensor([0.5, 3.0, 3.0, 3.0], dtype=torch.float64))
    assert torch.equal(out[0], delta[0])  # bit-identical, not just close
    assert torch.equal(out[1], delta[1])
    # direction preserved: 6.0 -> 3.0 is exactly half
    torch.testing.assert_close(out[2], delta[2] / 2)


def test_clamp_float32_random_norm_exact() -> None:
    torch.manual_seed(0)
    delta = torch.randn(8, 16, 16) * torch.tensor([0.01, 0.1, 1, 5, 10, 50, 100, 1e4])[:, None, None]
    out = clamp_lora_delta_norm(delta, max_norm=3.0)
    n_in, n_out = _norms(delta), _norms(out)
    big = n_in > 3.0
    assert big.sum() >= 4
    torch.testing.assert_close(n_out[big], torch.full_like(n_out[big], 3.0), rtol=1e-6, atol=0)
    assert torch.equal(out[~big], delta[~big])


def test_clamp_zero_delta_no_nan_and_finite_grads() -> None:
    delta = torch.zeros(3, 4, 4, requires_grad=True)
    out = clamp_lora_delta_norm(delta)
    assert torch.equal(out, torch.zeros(3, 4, 4))
    (grad,) = torch.autograd.grad(out.square().sum() + out.sum(), delta)
    assert torch.isfinite(grad).all()
    torch.testing.assert_close(grad, torch.ones(3, 4, 4))


def test_clamp_gradients_finite_and_projected() -> None:
    delta = _delta_with_norms([1.0, 10.0]).requires_grad_(True)
    out = clamp_lora_delta_norm(delta, max_norm=3.0)
    (grad,) = torch.autograd.grad(_norms(out).sum(), delta)
    assert torch.isfinite(grad).all()
    # clamped sample: output norm is constant -> zero gradient; free sample: d|x|/dx = x/|x|
    torch.testing.assert_close(grad[1], torch.zeros(4, 4, dtype=torch.float64))
    torch.testing.assert_close(grad[0], delta[0].detach() / 1.0)
    assert torch.autograd.gradcheck(lambda x: clamp_lora_delta_norm(x, 3.0), (delta,))


def test_clamp_bf16_keeps_dtype_and_rejects_bad_max_norm() -> None:
    delta = (torch.ones(2, 4, 4) * torch.tensor([0.1, 10.0])[:, None, None]).bfloat16()
    out = clamp_lora_delta_norm(delta, 3.0)
    assert out.dtype == torch.bfloat16
    assert abs(_norms(out.float())[1].item() - 3.0) < 0.02
    with pytest.raises(ValueError):
        clamp_lora_delta_norm(delta, 0.0)
    with pytest.raises(ValueError):
        clamp_lora_delta_norm(torch.ones(3), 1.0)


# --- soft_clamp_logits -------------------------------------------------------


def test_soft_clamp_identity_below_threshold() -> None:
    x = torch.linspace(-50.0, 50.0, 1001)
    assert torch.equal(soft_clamp_logits(x, 50.0, 100.0), x)


def test_soft_clamp_known_value_bounded_symmetric_monotonic() -> None:
    x = torch.tensor([60.0], dtype=torch.float64)
    expected = 50.0 + 50.0 * math.tanh(10.0 / 50.0)
    assert soft_clamp_logits(x).item() == pytest.approx(expected, rel=1e-12)
    xs = torch.linspace(-1e4, 1e4, 200_001, dtype=torch.float64)
    ys = soft_clamp_logits(xs)
    assert (ys.abs() < 100.0).all()
    assert torch.equal(soft_clamp_logits(-xs), -ys)
    assert (ys.diff() >= 0).all()
    core = (xs.abs() > 50) & (xs.abs() < 300)  # strictly increasing before tanh saturates
    assert (ys[core].diff() > 0).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_soft_clamp_strictly_below_max_in_low_precision(dtype: torch.dtype) -> None:
    y = soft_clamp_logits(torch.tensor([1e3, -1e4, float("inf"), float("-inf")], dtype=dtype))
    assert y.dtype == dtype
    assert (y.float().abs() < 100.0).all()
    assert (y.float().abs() > 99.0).all()


def test_soft_clamp_value_and_derivative_continuous_at_threshold() -> None:
    t, eps = 50.0, 1e-7
    x = torch.tensor([t - eps, t, t + eps, -t - eps, -t + eps], dtype=torch.float64, requires_grad=True)
    y = soft_clamp_logits(x, t, 100.0)
    (g,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(y.detach(), x.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(g, torch.ones_like(g), rtol=0, atol=1e-6)
    # derivative above threshold follows sech^2((|x|-t)/(m-t))
    x2 = torch.tensor([75.0], dtype=torch.float64, requires_grad=True)
    (g2,) = torch.autograd.grad(soft_clamp_logits(x2).sum(), x2)
    assert g2.item() == pytest.approx(1 - math.tanh(0.5) ** 2, rel=1e-12)


def test_soft_clamp_huge_and_inf_inputs_finite_grads() -> None:
    x = torch.tensor([1e30, -1e30, float("inf"), float("-inf"), 3.0], requires_grad=True)
    y = soft_clamp_logits(x)
    assert torch.isfinite(y).all()
    (g,) = torch.autograd.grad(y.sum(), x)
    assert torch.isfinite(g).all()
    assert g[-1].item() == 1.0
    assert torch.isnan(soft_clamp_logits(torch.tensor([float("nan")]))).all()


def test_soft_clamp_validates_arguments() -> None:
    with pytest.raises(ValueError):
        soft_clamp_logits(torch.zeros(2), threshold=100.0, max_val=100.0)
    with pytest.raises(ValueError):
        soft_clamp_logits(torch.zeros(2), threshold=-1.0, max_val=100.0)
    with pytest.raises(TypeError):
        soft_clamp_logits(torch.zeros(2, dtype=torch.long))


# --- init_stop_predictor_bias ------------------------------------------------


def test_init_bias_on_linear_and_on_last_linear_of_container() -> None:
    lin = nn.Linear(8, 1)
    init_stop_predictor_bias(lin)
    assert torch.equal(lin.bias.detach(), torch.full((1,), -2.0))
    head = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    first_bias = head[0].bias.detach().clone()
    init_stop_predictor_bias(head, bias=-3.5)
    assert torch.equal(head[2].bias.detach(), torch.full((4,), -3.5))
    assert torch.equal(head[0].bias.detach(), first_bias)  # earlier layers untouched
    assert head[2].bias.requires_grad and head[2].bias.grad is None


def test_init_bias_errors() -> None:
    with pytest.raises(ValueError, match="no nn.Linear"):
        init_stop_predictor_bias(nn.Sequential(nn.ReLU()))
    with pytest.raises(ValueError, match="no bias"):
        init_stop_predictor_bias(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 1, bias=False)))


# --- lora_norm_regularization ------------------------------------------------


def test_lora_norm_regularization_value_and_grad() -> None:
    delta = _delta_with_norms([0.0, 1.0, 3.0, 0.5]).requires_grad_(True)
    # |0-1| + |1-1| + |3-1| + |0.5-1| = 3.5 -> mean 0.875
    reg = lora_norm_regularization(delta, target=1.0, weight=0.001)
    assert reg.item() == pytest.approx(0.001 * 0.875, rel=1e-12)
    assert lora_norm_regularization(delta, target=2.0, weight=1.0).item() == pytest.approx(
        (2.0 + 1.0 + 1.0 + 1.5) / 4, rel=1e-12
    )
    (g,) = torch.autograd.grad(reg, delta)
    assert torch.isfinite(g).all()


# --- clue_diversity_loss -----------------------------------------------------


def test_diversity_zero_for_disjoint_one_hot_maps() -> None:
    att = torch.zeros(2, 4, 3, 3)
    for k in range(4):
        att[:, k].view(2, -1)[:, k] = 1.0
    assert clue_diversity_loss(att).item() == pytest.approx(0.0, abs=1e-7)


def test_diversity_one_for_identical_maps() -> None:
    torch.manual_seed(0)
    one = torch.rand(2, 1, 5, 5)
    att = one.expand(2, 3, 5, 5) / one.sum()
    assert clue_diversity_loss(att).item() == pytest.approx(1.0, abs=1e-6)
    # scale invariance: un-normalised maps give the same answer
    assert clue_diversity_loss(att * 7.0).item() == pytest.approx(1.0, abs=1e-6)


def test_diversity_hand_computed_partial_overlap() -> None:
    # clue 0 on pixels {0,1}, clue 1 on pixels {1,2}: cosine = 1/2; clue 2 disjoint.
    att = torch.zeros(1, 3, 1, 4)
    att[0, 0, 0, :2] = 0.5
    att[0, 1, 0, 1:3] = 0.5
    att[0, 2, 0, 3] = 1.0
    # off-diagonal sum = 2 * 0.5, over K*(K-1) = 6 entries
    assert clue_diversity_loss(att).item() == pytest.approx(1.0 / 6.0, rel=1e-6)


def test_diversity_k1_zero_maps_and_grad() -> None:
    assert clue_diversity_loss(torch.rand(3, 1, 4, 4)).item() == 0.0
    zeros = torch.zeros(2, 3, 4, 4, requires_grad=True)
    loss = clue_diversity_loss(zeros)
    assert loss.item() == 0.0
    att = torch.rand(2, 3, 4, 4, requires_grad=True)
    (g,) = torch.autograd.grad(clue_diversity_loss(att), att)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    with pytest.raises(ValueError):
        clue_diversity_loss(torch.rand(4, 4))
