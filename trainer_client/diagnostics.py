"""Per-batch health readings for the RLAN trainer, without a host sync per batch.

``.item()`` on each reading stalls the CPU until the GPU has finished the step,
once per reading. :class:`DiagnosticsCollector` instead reduces on the device (on a
side CUDA stream, so the reductions overlap the next step's kernels), stacks one
batch's readings into a single float32 vector, starts one ``non_blocking`` copy into
a recycled pinned buffer and records a CUDA event; ``poll`` hands readings out once
their event has completed. On an H200 this costs 0.2 % of the demo model's training
step, against 11 % for ``.item()`` readings (``benchmarks/README.md``). :func:`item_readings`
is the naive way: the overhead benchmark's baseline and the tests' oracle.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import torch
from torch import Tensor

from trainer_client.attention_readings import ATTENTION_READINGS, attention_readings

__all__ = [
    "READINGS", "lora_norm_stats", "lora_norm_readings", "stop_logit_variance", "stop_readings",
    "attention_stats", "attention_readings", "logit_range", "batch_accuracy", "nonfinite_count",
    "reading_tensors", "item_readings", "DiagnosticsCollector",
]

READINGS: tuple[str, ...] = (
    "lora_norm_mean", "lora_norm_max", "lora_norm_preclamp_mean", "lora_norm_preclamp_max",
    "stop_logit_var", "stop_logit_mean", "stop_logit_abs_mean", "stop_prob_mean", *ATTENTION_READINGS,
    "logit_min", "logit_max", "accuracy", "loss", "nan_count", "grad_norm",
)

Number = Tensor | float
LoraDeltas = Tensor | Mapping[str, object]
"""One ``(B, D, D)`` delta, or the dict RLAN's HyperLoRA returns (matrix entries are read, the rest skipped)."""
OnError = Callable[[str, Exception], None]


def _f32(t: Tensor) -> Tensor:
    """Detached float32 view: readings are reported in float32 whatever the compute dtype.

    Every reduction starts from a detached input, so none builds an autograd graph; that is
    why no function here wears ``torch.no_grad()`` (its decorator costs more CPU per call
    than the kernel launch it wraps, and this runs every batch).
    """
    return t.detach().float()


def _sample_norms(delta: Tensor) -> Tensor:
    """Per-sample Frobenius norm of a ``(B, ...)`` delta, float32."""
    return torch.linalg.vector_norm(_f32(delta).flatten(1), dim=1)


def lora_norm_stats(delta: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and max over the batch of the per-sample Frobenius norm of ``(B, D, D)`` deltas."""
    norms = _sample_norms(delta)
    return norms.mean(), norms.max()


def lora_matrices(deltas: LoraDeltas) -> dict[str, Tensor]:
    """The delta matrices of ``deltas``: a tensor as ``{"": t}``, or a dict's floating ``(B, D, D)`` entries.

    Why: RLAN's ``lora_deltas`` also holds ``context`` ``(B, D)`` and a scalar
    ``delta_reg_loss``; neither is a weight delta, so neither belongs in a delta norm.
    """
    if isinstance(deltas, Tensor):
        return {"": deltas}
    if not isinstance(deltas, Mapping):
        raise TypeError(f"lora_delta must be a tensor or a dict of tensors, got {type(deltas).__name__}")
    return {str(name): t for name, t in deltas.items()
            if isinstance(t, Tensor) and t.dim() >= 3 and t.is_floating_point()}


def lora_norm_readings(deltas: LoraDeltas) -> dict[str, Tensor]:
    """``lora_norm_mean``/``lora_norm_max`` over every (sample, delta) norm, plus ``lora_norm_<name>``.

    The per-(sample, delta) norm is what a per-delta clamp bounds, so the overall max is
    comparable with ``lora_max_norm``. ``lora_norm_<name>`` (dict input only) is the
    batch mean of that delta's norm; the client sends it as ``extra.lora_norm_<name>``.
    """
    matrices = lora_matrices(deltas)
    if not matrices:
        raise ValueError("lora_delta holds no (B, D, D) floating tensor")
    flat = [_f32(t).flatten(1) for t in matrices.values()]
    if len({t.shape for t in flat}) == 1:  # RLAN: four (B, D, D); one norm kernel for all of them
        norms = torch.linalg.vector_norm(torch.stack(flat), dim=2)  # (deltas, B)
        per_delta = list(norms.mean(dim=1).unbind()) if len(flat) > 1 else []
        every = norms.reshape(-1)
    else:
        parts = [torch.linalg.vector_norm(t, dim=1) for t in flat]
        per_delta = [part.mean() for part in parts]
        every = torch.cat(parts)
    out = {"lora_norm_mean": every.mean(), "lora_norm_max": every.max()}
    if not isinstance(deltas, Tensor):
        if len(flat) == 1:
            per_delta = [out["lora_norm_mean"]]
        for name, value in zip(matrices, per_delta):
            key = f"lora_norm_{name}"
            out[key if key not in READINGS else f"lora_norm_delta_{name}"] = value
    return out


def lora_preclamp_readings(norms: Tensor | Mapping[str, object]) -> dict[str, Tensor]:
    """Mean and max of the pre-clamp norms (from ``clamp_lora_delta_norm(..., return_norms=True)``)."""
    values = [norms] if isinstance(norms, Tensor) else [t for t in norms.values() if isinstance(t, Tensor)]
    if not values:
        raise ValueError("lora_preclamp_norms holds no tensor")
    every = torch.cat([_f32(t).reshape(-1) for t in values])
    return {"lora_norm_preclamp_mean": every.mean(), "lora_norm_preclamp_max": every.max()}


def stop_logit_variance(stop_logits: Tensor) -> Tensor:
    """Population variance (``correction=0``) over all elements of the ``(B, K)`` stop logits.

    Why: variance near 0 means the stop head ignores its input (dead controller).
    """
    return torch.var(_f32(stop_logits), correction=0)


def stop_readings(stop_logits: Tensor) -> dict[str, Tensor]:
    """Variance, mean, mean of ``|logit|`` and mean stop probability (sigmoid) of the stop logits.

    Why the mean as well: RLAN's stop head starts at bias -1, std 0.1, so a small
    variance is its healthy start; the documented failure is *mean* saturation (logit
    3.1, every clue stopping at once), which the mean and ``stop_prob_mean`` show.
    ``|stop_logit_mean|`` is ``abs(stop_logit_mean)`` in a rule; ``stop_logit_abs_mean``
    (mean of ``|x|``) also catches logits saturated in both directions at once.
    """
    x = _f32(stop_logits)
    var, mean = torch.var_mean(x, correction=0)
    return {"stop_logit_var": var, "stop_logit_mean": mean, "stop_logit_abs_mean": x.abs().mean(),
            "stop_prob_mean": torch.sigmoid(x).mean()}


def attention_stats(attn: Tensor) -> tuple[Tensor, Tensor]:
    """Max of the raw maps and mean (over B, K) entropy, in nats, of each normalised H*W map.

    Each map is divided by its sum; ``0 * log 0`` counts as 0. An all-zero map
    has entropy 0 (its divisor is clamped to the smallest normal float). See
    :func:`~trainer_client.attention_readings.attention_readings` for the size-free readings.
    """
    out = attention_readings(attn)
    return out["attention_max"], out["attention_entropy"]


def logit_range(logits: Tensor) -> tuple[Tensor, Tensor]:
    """Min and max of the logits (NaN propagates)."""
    return torch.aminmax(_f32(logits))


def batch_accuracy(logits: Tensor, targets: Tensor, class_dim: int = 1,
                   ignore_index: int | None = None) -> Tensor:
    """Fraction of argmax predictions over ``class_dim`` equal to ``targets``.

    ``ignore_index``: positions whose target equals it are excluded (ARC pads targets
    with -100, as ``torch.nn.CrossEntropyLoss(ignore_index=-100)`` does); if all are
    excluded the result is NaN (undefined, reported as data, not hidden as 0).
    ``class_dim``: 1 for ``(B, C, H, W)`` logits, -1 for ``(B, H, W, C)``.
    """
    pred = logits.detach().argmax(dim=class_dim)
    if pred.shape != targets.shape:
        raise ValueError(f"argmax over dim {class_dim} gives shape {tuple(pred.shape)}, "
                         f"targets have {tuple(targets.shape)} (class_dim=-1 for (B, H, W, C) logits)")
    correct = pred == targets
    if ignore_index is None:
        return torch.mean(correct, dtype=torch.float32)
    valid = targets != ignore_index
    return (correct & valid).sum().float() / valid.sum().float()


def nonfinite_count(*tensors: Tensor) -> Tensor:
    """Number of NaN/Inf elements across all given tensors, as a 0-dim float32 tensor.

    The inputs are flattened into one buffer and counted in one pass (``x - x`` is NaN
    exactly when ``x`` is not finite): four kernel launches whatever the number of
    tensors, where ``~isfinite`` per tensor costs five each. The copy is a few MB of
    device memory traffic, which a GPU does in microseconds; launches are what a
    launch-bound training step pays for. Integer tensors cannot hold NaN and are skipped.
    """
    if not tensors:
        raise ValueError("nonfinite_count needs at least one tensor")
    device = next((t.device for t in tensors if t.is_cuda), tensors[0].device)
    flat = [_on(t.detach().reshape(-1), device) for t in tensors if t.is_floating_point() or t.is_complex()]
    if not flat:
        return torch.zeros((), dtype=torch.float32, device=device)
    values = flat[0] if len(flat) == 1 else torch.cat(flat)
    return torch.isnan(values.sub(values)).sum(dtype=torch.float32)


def _on(t: Tensor, device: torch.device) -> Tensor:
    """``t`` on ``device``; the common same-device case skips the ``.to`` dispatch."""
    return t if t.device == device else t.to(device, non_blocking=True)


def _as_tensor_or_float(value: Number) -> Tensor | float:
    """Keep Python numbers on the host (no H2D copy); reduce tensors to a 0-dim float32."""
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(f"scalar reading expected, got shape {tuple(value.shape)}")
        return _f32(value).reshape(())
    return float(value)


def reading_tensors(lora_delta: LoraDeltas | None = None, stop_logits: Tensor | None = None,
                    attention: Tensor | None = None, logits: Tensor | None = None,
                    targets: Tensor | None = None, loss: Number | None = None,
                    grad_norm: Number | None = None, *, class_dim: int = 1,
                    ignore_index: int | None = None, attention_mask: Tensor | None = None,
                    lora_preclamp_norms: Tensor | Mapping[str, object] | None = None,
                    on_error: OnError | None = None) -> dict[str, Tensor | float]:
    """All readings of one batch, in :data:`READINGS` order, as device 0-dim tensors or floats.

    Missing inputs give missing keys. ``nan_count`` covers every tensor input except the
    (integer) targets and the mask. ``ignore_index``: target value excluded from
    ``accuracy`` (ARC pads targets with -100). ``attention_mask``: ``(B, H, W)`` valid
    cells of the attention maps. Per-delta norms (``lora_norm_<name>``) come after the
    built-in readings. With ``on_error``, a reading whose inputs are unusable is left out
    and reported as ``on_error(reading_group, exception)``; without it the error is raised.
    """
    groups: list[tuple[str, bool, Callable[[], dict[str, Tensor | float]]]] = [
        ("lora_norm", lora_delta is not None, lambda: lora_norm_readings(lora_delta)),
        ("lora_norm_preclamp", lora_preclamp_norms is not None,
         lambda: lora_preclamp_readings(lora_preclamp_norms)),
        ("stop_logit", stop_logits is not None, lambda: stop_readings(stop_logits)),
        ("attention", attention is not None, lambda: attention_readings(attention, attention_mask)),
        ("logit_range", logits is not None, lambda: dict(zip(("logit_min", "logit_max"), logit_range(logits)))),
        ("accuracy", logits is not None and targets is not None,
         lambda: {"accuracy": batch_accuracy(logits, targets, class_dim, ignore_index)}),
        ("loss", loss is not None, lambda: {"loss": _as_tensor_or_float(loss)}),
        ("nan_count", True, lambda: _nan_count(lora_delta, lora_preclamp_norms, stop_logits, attention,
                                               logits, loss, grad_norm)),
        ("grad_norm", grad_norm is not None, lambda: {"grad_norm": _as_tensor_or_float(grad_norm)}),
    ]
    found: dict[str, Tensor | float] = {}
    for name, present, compute in groups:
        if not present:
            continue
        try:
            found.update(compute())
        except Exception as exc:  # noqa: BLE001 - with on_error, an unusable input costs only its reading
            if on_error is None:
                raise
            on_error(name, exc)
    ordered = {key: found[key] for key in READINGS if key in found}
    ordered.update((key, value) for key, value in found.items() if key not in ordered)
    return ordered


def _tensors(*values: object) -> Iterator[Tensor]:
    """The tensors among ``values``, looking one level into dicts (RLAN's ``lora_deltas``)."""
    for value in values:
        if isinstance(value, Tensor):
            yield value
        elif isinstance(value, Mapping):
            yield from (t for t in value.values() if isinstance(t, Tensor))


def _nan_count(*inputs: object) -> dict[str, Tensor]:
    """``nan_count`` over every tensor input (none: no reading)."""
    checked = list(_tensors(*inputs))
    return {"nan_count": nonfinite_count(*checked)} if checked else {}


def item_readings(lora_delta: LoraDeltas | None = None, stop_logits: Tensor | None = None,
                  attention: Tensor | None = None, logits: Tensor | None = None,
                  targets: Tensor | None = None, loss: Number | None = None,
                  grad_norm: Number | None = None, *, class_dim: int = 1,
                  ignore_index: int | None = None, attention_mask: Tensor | None = None,
                  lora_preclamp_norms: Tensor | Mapping[str, object] | None = None) -> dict[str, float]:
    """Naive baseline: the same readings, each fetched with ``.item()`` (one host sync per reading)."""
    raw = reading_tensors(lora_delta, stop_logits, attention, logits, targets, loss, grad_norm,
                          class_dim=class_dim, ignore_index=ignore_index, attention_mask=attention_mask,
                          lora_preclamp_norms=lora_preclamp_norms)
    return {k: (v.item() if isinstance(v, Tensor) else v) for k, v in raw.items()}


def __getattr__(name: str) -> object:
    """``DiagnosticsCollector`` lives in :mod:`trainer_client.collector` (which imports this module)."""
    if name == "DiagnosticsCollector":
        from trainer_client.collector import DiagnosticsCollector

        return DiagnosticsCollector
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
