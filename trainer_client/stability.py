"""Numerical-stability patches for the RLAN trainer.

RLAN combines three parts that can each blow up a run:

* HyperLoRA: a hyper-network emits per-sample LoRA deltas ``(B, D, D)``;
  an unbounded delta norm feeds back into the next recursion step and
  diverges.
* Dynamic Saliency Controller: ``K`` attention clue maps ``(B, K, H, W)``
  and stop logits ``(B, K)``; clues collapse onto one region, and an
  unbiased stop head halts recursion too early at initialisation.
* Recursive solver: class logits that grow without bound overflow
  softmax / cross-entropy in reduced precision.

Every function here is pure torch, differentiable where it matters, and
never reads tensor values on the host (no ``.item()``, no Python ``if`` on
tensor data), so it adds no host-device synchronisation to a training step.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = [
    "clamp_lora_delta_norm",
    "soft_clamp_logits",
    "init_stop_predictor_bias",
    "lora_norm_regularization",
    "clue_diversity_loss",
]


def _per_sample_norm(delta: Tensor) -> Tensor:
    """Frobenius norm of each sample (first dim), in at least float32.

    Reduced-precision inputs (bf16/fp16) are promoted so that the sum of
    squares neither overflows nor loses the digits the clamp depends on.
    """
    if delta.dim() < 2:
        raise ValueError(f"delta must be (B, ...) with >= 2 dims, got shape {tuple(delta.shape)}")
    acc_dtype = torch.promote_types(delta.dtype, torch.float32)
    return torch.linalg.vector_norm(delta.flatten(1), dim=1, dtype=acc_dtype)


def clamp_lora_delta_norm(delta: Tensor, max_norm: float = 3.0, *,
                          return_norms: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Scale each sample's LoRA delta down to Frobenius norm ``max_norm`` if it exceeds it.

    Why: a runaway hyper-network output grows the effective weight every
    recursion step. Samples already within the budget are returned bit-identical
    (scale is exactly 1); zero deltas are safe because the divisor is clamped to
    ``max_norm`` rather than to the norm itself, so there is no 0/0.

    With ``return_norms=True`` the result is ``(clamped, pre_clamp_norms)``: the
    per-sample norms *before* the clamp, detached, shape ``(B,)``. Pass them to
    ``DiagnosticsCollector.collect(lora_preclamp_norms=...)``: after the clamp a
    runaway delta reads exactly ``max_norm``, so only the pre-clamp norm shows the growth.
    Costs nothing extra (the norms are computed for the clamp anyway).
    """
    if max_norm <= 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm}")
    norms = _per_sample_norm(delta)
    scale = max_norm / norms.clamp_min(max_norm)  # == 1 where norm <= max_norm
    scale = scale.to(delta.dtype).reshape((-1,) + (1,) * (delta.dim() - 1))
    clamped = delta * scale
    return (clamped, norms.detach()) if return_norms else clamped


def soft_clamp_logits(x: Tensor, threshold: float = 50.0, max_val: float = 100.0) -> Tensor:
    """Identity on ``[-threshold, threshold]``, smooth saturation towards ``±max_val`` outside.

    Why: a hard clamp kills gradients and a plain ``tanh`` distorts healthy
    logits. Above the threshold ``y = t + (m - t) * tanh((|x| - t) / (m - t))``,
    whose value and first derivative (1) match the identity at ``|x| = t``; it
    is odd, monotonic and bounded. Because ``tanh`` rounds to exactly 1 in finite
    precision, the result is capped at the largest value of ``x.dtype`` below
    ``max_val`` so ``|y| < max_val`` holds numerically too (the gradient there is
    0, as the exact gradient already underflows). ``inf`` maps to that cap with a
    finite (zero) gradient; NaN stays NaN.
    """
    if not 0.0 <= threshold < max_val:
        raise ValueError(f"need 0 <= threshold < max_val, got threshold={threshold}, max_val={max_val}")
    if not x.is_floating_point():
        raise TypeError(f"soft_clamp_logits needs a floating tensor, got {x.dtype}")
    span = max_val - threshold
    mag = x.abs()
    # Below the threshold this branch is unused; tanh of a negative excess stays finite,
    # so where() passes no NaN into the gradient.
    soft = threshold + span * torch.tanh((mag - threshold) / span)
    # Computed on a CPU scalar: no device round-trip.
    cap = torch.nextafter(torch.tensor(max_val, dtype=x.dtype), torch.tensor(0.0, dtype=x.dtype)).item()
    soft = soft.clamp_max(cap)
    return torch.where(mag <= threshold, x, torch.copysign(soft, x))


def _last_linear(module: nn.Module) -> nn.Linear:
    """Return ``module`` itself if it is a Linear, else the last Linear it contains."""
    if isinstance(module, nn.Linear):
        return module
    last: nn.Linear | None = None
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            last = sub
    if last is None:
        raise ValueError(f"no nn.Linear found in {type(module).__name__}")
    return last


def init_stop_predictor_bias(layer: nn.Linear | nn.Module, bias: float = -2.0) -> None:
    """Set the stop predictor's output bias to a constant (default -2 -> P(stop) ~ 0.12).

    Why: with a zero bias the stop head starts at P(stop) = 0.5 and the solver
    halts after one or two recursion steps before it has learnt anything. Given a
    container, the *last* ``nn.Linear`` (the output layer) is used; if that layer
    has no bias we raise instead of silently editing an earlier layer.
    """
    linear = _last_linear(layer)
    if linear.bias is None:
        raise ValueError(
            f"the last nn.Linear of {type(layer).__name__} has no bias (bias=False); "
            "build the stop predictor's output layer with bias=True"
        )
    with torch.no_grad():
        linear.bias.fill_(bias)


def lora_norm_regularization(delta: Tensor, target: float = 1.0, weight: float = 0.001) -> Tensor:
    """``weight * mean_b |‖delta_b‖_F - target|``: keeps LoRA deltas near a healthy scale.

    Why: a soft pull complements the hard clamp; it keeps norms away from both
    the clamp (saturation) and zero (adapter switched off). L1 in the norm keeps
    the gradient magnitude bounded for outliers.
    """
    norms = _per_sample_norm(delta)
    return weight * (norms - target).abs().mean()


def clue_diversity_loss(attention: Tensor, eps: float = 1e-8) -> Tensor:
    """Mean off-diagonal cosine similarity between the ``K`` clue maps, averaged over the batch.

    Why: the saliency controller tends to put all ``K`` clues on the same
    region, wasting recursion steps. The loss is 0 for disjoint clues and 1 for
    identical ones. Maps are L2-normalised (cosine similarity is scale
    invariant, so un-normalised or not-summing-to-1 maps are fine); an all-zero
    map counts as dissimilar to everything. ``K == 1`` returns 0.
    """
    if attention.dim() < 3:
        raise ValueError(f"attention must be (B, K, H, W) or (B, K, N), got shape {tuple(attention.shape)}")
    batch, k = attention.shape[:2]
    if k < 2:
        return attention.new_zeros(())
    flat = attention.reshape(batch, k, -1)
    flat = flat.to(torch.promote_types(flat.dtype, torch.float32))
    unit = nn.functional.normalize(flat, p=2.0, dim=-1, eps=eps)
    sim = unit @ unit.transpose(1, 2)  # (B, K, K)
    off_diag = ~torch.eye(k, dtype=torch.bool, device=attention.device)
    per_batch = (sim * off_diag).sum(dim=(1, 2)) / (k * (k - 1))
    return per_batch.mean().to(attention.dtype)
