"""A small RLAN-like model and synthetic grid tasks for the demo (CPU friendly).

The structure mirrors what the monitor watches in the real trainer: a hyper-network
emits per-sample LoRA deltas ``(B, D, D)`` on a base linear layer (clamped with
:func:`clamp_lora_delta_norm`), a saliency controller emits ``K`` softmax clue maps
``(B, K, H, W)`` plus stop logits ``(B, K)`` (bias initialised to -2), and a recursive
solver applies one shared block a few times before per-cell class logits pass
through :func:`soft_clamp_logits`. :meth:`RLANLike.induce_collapse` reproduces the
documented failure: unclamped, amplified LoRA deltas and flattened (collapsed) attention.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from trainer_client.stability import clamp_lora_delta_norm, init_stop_predictor_bias, soft_clamp_logits


@dataclass
class ModelConfig:
    """Sizes and stability knobs (mirrored into the run config sent to the monitor)."""

    colours: int = 5
    grid: int = 8
    dim: int = 32
    clues: int = 3
    lora_rank: int = 4
    solver_steps: int = 3
    lora_max_norm: float = 3.0
    lora_scale: float = 0.25
    logit_clamp_threshold: float = 50.0
    attention_temperature: float = 0.05


@dataclass
class Forward:
    """Everything one forward pass produces that the loss and the diagnostics need."""

    logits: Tensor  # (B, C, H, W), soft-clamped
    lora_delta: Tensor  # (B, D, D)
    attention: Tensor  # (B, K, H, W), each map sums to 1
    stop_logits: Tensor  # (B, K)


class RLANLike(nn.Module):
    """HyperLoRA + saliency controller + recursive solver, in miniature."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, r = cfg.dim, cfg.lora_rank
        self.encoder = nn.Conv2d(cfg.colours + 1, d, 3, padding=1)  # +1: the task-flag plane
        self.hyper = nn.Sequential(nn.Linear(d, 64), nn.GELU(), nn.Linear(64, 2 * d * r))
        self.base = nn.Linear(d, d)
        self.saliency = nn.Conv2d(d, cfg.clues, 1)
        self.stop_head = nn.Sequential(nn.Linear(d, 32), nn.GELU(), nn.Linear(32, 1))
        self.block = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))
        self.head = nn.Linear(d, cfg.colours)
        nn.init.normal_(self.stop_head[-1].weight, std=0.5)  # spread, so the stop head is not dead
        # Start the adapter near its working scale (as a pretrained hyper-net would), so the
        # healthy run shows no early "LoRA norm growth" from a near-zero start.
        nn.init.normal_(self.hyper[-1].bias, std=2.0)
        init_stop_predictor_bias(self.stop_head, -2.0)
        self.clamp_lora = True
        self.hyper_gain = 1.0
        self.logit_gain = 1.0
        self.temperature = cfg.attention_temperature

    def forward(self, x: Tensor) -> Forward:
        """``x``: (B, colours + 1, H, W) one-hot grid plus task flag."""
        feats = self.encoder(x)
        b, d, h, w = feats.shape
        r = self.cfg.lora_rank
        # tanh bounds each factor entry by lora_scale, so a healthy delta stays below the clamp.
        factors = torch.tanh(self.hyper(feats.mean(dim=(2, 3)))) * self.cfg.lora_scale * self.hyper_gain
        delta = factors[:, : d * r].view(b, d, r) @ factors[:, d * r:].view(b, r, d) / r
        if self.clamp_lora:
            delta = clamp_lora_delta_norm(delta, self.cfg.lora_max_norm)
        cells = feats.flatten(2).transpose(1, 2)  # (B, HW, D)
        cells = self.base(cells) + cells @ delta
        attention = (self.saliency(feats).flatten(2) / self.temperature).softmax(dim=-1)  # (B, K, HW)
        clue_feats = attention @ cells  # (B, K, D)
        stop_logits = self.stop_head(clue_feats).squeeze(-1)
        keep = torch.sigmoid(-stop_logits).unsqueeze(-1)  # P(continue) weights each clue
        context = (keep * clue_feats).sum(dim=1, keepdim=True)
        for _ in range(self.cfg.solver_steps):  # shared block, applied recursively
            cells = cells + self.block(cells + context)
        logits = self.head(cells).transpose(1, 2).reshape(b, -1, h, w) * self.logit_gain
        logits = soft_clamp_logits(logits, self.cfg.logit_clamp_threshold)
        return Forward(logits, delta, attention.view(b, -1, h, w), stop_logits)

    def induce_collapse(self) -> None:
        """The documented failure: LoRA clamp off, hyper-net output amplified, attention flattened."""
        self.clamp_lora = False
        self.hyper_gain = 12.0
        self.logit_gain = 4.0
        self.temperature = 200.0


class GridTasks:
    """Synthetic ARC-like tasks: recolour the objects of an 8x8 grid.

    Easy samples use one colour permutation, hard ones another (a flag plane says
    which); ``difficulty`` is the fraction of hard samples, which meta-escalation
    raises. Each grid has 1-3 rectangles on background 0 (a varying number of clues).
    """

    def __init__(self, colours: int = 5, grid: int = 8, seed: int = 0) -> None:
        self.colours, self.grid = colours, grid
        self.generator = torch.Generator().manual_seed(seed)
        shift = torch.arange(1, colours)
        self.easy = torch.cat([torch.zeros(1, dtype=torch.long), (shift % (colours - 1)) + 1])
        self.hard = torch.cat([torch.zeros(1, dtype=torch.long), ((shift + 1) % (colours - 1)) + 1])

    def batch(self, size: int, difficulty: float) -> tuple[Tensor, Tensor, Tensor]:
        """(inputs (B, C+1, H, W), targets (B, H, W), hard mask (B,))."""
        g, n = self.generator, self.grid
        grids = torch.zeros(size, n, n, dtype=torch.long)
        for i in range(size):
            for _ in range(int(torch.randint(1, 4, (1,), generator=g))):
                top, left = torch.randint(0, n - 1, (2,), generator=g).tolist()
                hgt, wid = torch.randint(1, 4, (2,), generator=g).tolist()
                colour = int(torch.randint(1, self.colours, (1,), generator=g))
                grids[i, top:top + hgt, left:left + wid] = colour
        hard = torch.rand(size, generator=g) < difficulty
        targets = torch.where(hard[:, None, None], self.hard[grids], self.easy[grids])
        onehot = F.one_hot(grids, self.colours).permute(0, 3, 1, 2).float()
        flag = hard.float()[:, None, None, None].expand(size, 1, n, n)
        return torch.cat([onehot, flag], dim=1), targets, hard
