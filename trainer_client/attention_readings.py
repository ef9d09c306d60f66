"""Attention-map readings that mean the same at 3x3 and at 30x30, with padding left out.

Why a module of its own: raw readings of a clue map depend on the grid. A uniform
map has max ``1 / (H*W)`` (0.11 at 3x3, 0.0011 at 30x30) and entropy ``ln(H*W)``,
so one threshold cannot serve ARC's mixed grid sizes, and padded cells (ARC grids are
padded to the batch's largest) count as cells unless masked. Besides the raw readings
(``attention_max``: global max; ``attention_max_mean``: the mean over (B, K) of each
map's max, which is what the RLAN trainer itself watches; ``attention_entropy``), two
size-free readings compare each map with the uniform map over its own valid cells:

* ``attention_peak_ratio``: mean over maps of ``max(p) * valid_cells`` (1.0 = uniform,
  ``valid_cells`` = one-hot),
* ``attention_entropy_norm``: mean over maps of ``entropy(p) / ln(valid_cells)``
  (1.0 = uniform, 0.0 = one-hot; a single-cell map counts 0: nothing can spread),

where ``p`` is the map renormalised over its valid cells. Maps with no valid cell are
left out of every mean. All reductions stay on the device (no host sync).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["ATTENTION_READINGS", "attention_readings"]

ATTENTION_READINGS: tuple[str, ...] = (
    "attention_max", "attention_max_mean", "attention_peak_ratio", "attention_entropy", "attention_entropy_norm",
)
_TINY = torch.finfo(torch.float32).tiny


def attention_readings(attention: Tensor, valid_mask: Tensor | None = None) -> dict[str, Tensor]:
    """The five attention readings of ``(B, K, H, W)`` maps (or ``(B, K, N)``), as 0-dim tensors.

    ``valid_mask``: ``(B, H, W)`` (or ``(B, N)``, or ``(B, K, H, W)``) with nonzero/True
    on real grid cells; without it every cell is valid.
    """
    if attention.dim() < 3:
        raise ValueError(f"attention must be (B, K, H, W) or (B, K, N), got shape {tuple(attention.shape)}")
    flat = attention.detach().float().flatten(2)  # (B, K, N)
    if valid_mask is None:
        return _unmasked(flat)
    return _masked(flat, _mask_like(valid_mask, attention))


def _mask_like(valid_mask: Tensor, attention: Tensor) -> Tensor:
    """The mask as bool ``(B, 1 or K, N)`` matching the flattened maps (ValueError if it cannot)."""
    mask = valid_mask.detach()
    if mask.dim() == attention.dim() - 1:  # (B, H, W) for (B, K, H, W): one mask for all K clues
        mask = mask.unsqueeze(1)
    if mask.dim() != attention.dim() or mask.shape[0] != attention.shape[0] or mask.shape[2:] != attention.shape[2:]:
        raise ValueError(f"valid_mask of shape {tuple(valid_mask.shape)} does not fit attention of shape "
                         f"{tuple(attention.shape)}: expected (B, H, W) or (B, K, H, W)")
    if mask.device != attention.device:
        mask = mask.to(attention.device, non_blocking=True)
    return (mask != 0).flatten(2)


def _unmasked(flat: Tensor) -> dict[str, Tensor]:
    """Every cell valid: the cell count is a Python number, so no masking kernels run."""
    cells = flat.shape[-1]
    map_max = flat.amax(dim=-1)  # (B, K)
    p = flat / flat.sum(dim=-1, keepdim=True).clamp_min(_TINY)
    entropy = torch.special.entr(p).sum(dim=-1)  # entr(p) = -p log p, entr(0) = 0
    peak = p.amax(dim=-1) * cells
    norm = 1.0 / math.log(cells) if cells > 1 else 0.0
    means = torch.stack((map_max, peak, entropy, entropy * norm), dim=-1).mean(dim=(0, 1))  # one reduction for four
    return _named(map_max.max(), means)


def _named(global_max: Tensor, means: Tensor) -> dict[str, Tensor]:
    """The five readings from the global max and the stacked means (max, peak, entropy, entropy_norm)."""
    max_mean, peak, entropy, entropy_norm = means.unbind()
    return {"attention_max": global_max, "attention_max_mean": max_mean, "attention_peak_ratio": peak,
            "attention_entropy": entropy, "attention_entropy_norm": entropy_norm}


def _masked(flat: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """Padded cells excluded from max, normalisation and cell count; empty maps excluded from means."""
    cells = mask.sum(dim=-1, dtype=torch.float32)  # (B, 1 or K)
    map_max = flat.masked_fill(~mask, -math.inf).amax(dim=-1)  # (B, K); -inf for an empty map
    kept = flat * mask  # NaN in a valid cell stays NaN: it is data
    p = kept / kept.sum(dim=-1, keepdim=True).clamp_min(_TINY)
    entropy = torch.special.entr(p).sum(dim=-1)
    peak = p.amax(dim=-1) * cells
    entropy_norm = entropy / torch.log(cells).clamp_min(_TINY)  # one cell: 0 / tiny = 0
    per_map = torch.stack((map_max, peak, entropy, entropy_norm), dim=-1)  # (B, K, 4)
    has_cells = (cells > 0).unsqueeze(-1)  # (B, 1 or K, 1)
    kept_maps = torch.where(has_cells, per_map, 0.0).sum(dim=(0, 1))
    count = has_cells.expand(*map_max.shape, 1).sum(dtype=torch.float32)
    return _named(map_max.max(), kept_maps / count)
