"""Adapter for the RLAN trainer (github peymanrah/SCI-ARC, ``scripts/train_rlan.py``).

Why: the generic client takes named tensors; the RLAN trainer has a forward output dict
(``attention_maps`` (B, K, H, W), ``stop_logits`` (B, K), ``lora_deltas`` = a dict of
(B, D, D) deltas plus ``context`` and ``delta_reg_loss``, ``logits`` (B, C, H, W)),
targets padded with -100, input grids padded with colour 10, a global step that does
not advance over NaN-skipped batches, and epoch figures spread over several dicts. This
module makes that one call per batch (:meth:`RLANMonitor.batch`), one per epoch
(:meth:`RLANMonitor.epoch`) and one for the config (:func:`load_rlan_config`); the
patch is in docs/integrations/sci-arc.md. It reads only what the trainer hands it and
never imports the trainer.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from trainer_client.collector import DiagnosticsCollector
from trainer_client.rlan_epoch import epoch_fields

__all__ = ["RLANMonitor", "RLANRunConfig", "load_rlan_config", "ARC_IGNORE_INDEX", "ARC_PAD_COLOR"]

logger = logging.getLogger(__name__)

ARC_IGNORE_INDEX = -100  # target value of padded cells (the trainer's CrossEntropy ignore_index)
ARC_PAD_COLOR = 10  # input-grid value of padded cells


@dataclass(frozen=True)
class RLANRunConfig:
    """The trainer YAML as a dict, and the epoch meta-escalation starts at (None if not set)."""

    config: dict[str, Any]
    escalation_start_epoch: int | None

    def client_kwargs(self) -> dict[str, Any]:
        """``MonitorClient(..., **run.client_kwargs())``."""
        return {"config": self.config, "escalation_start_epoch": self.escalation_start_epoch}


def load_rlan_config(path: str | Path) -> RLANRunConfig:
    """Read the trainer's YAML (e.g. configs/rlan_stable_dev.yaml) as the run config to send.

    The whole file is sent as is: the monitor reads its thresholds from the trainer's own
    keys and says in the PUT answer which it used. The escalation start is
    ``training.meta_escalation.start_epoch`` (or the seed layout's ``meta_escalation.start_epoch``).
    """
    import yaml  # only the config loader needs it

    with open(path, encoding="utf-8") as handle:
        config = yaml.safe_load(handle) or {}
    if not isinstance(config, dict):
        raise ValueError(f"{path}: the trainer config must be a mapping at the top level")
    start = _get(config, "training.meta_escalation.start_epoch")
    if start is None:
        start = _get(config, "meta_escalation.start_epoch")
    return RLANRunConfig(config, int(start) if isinstance(start, (int, float)) and start >= 0 else None)


def _get(tree: Mapping[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


class RLANMonitor:
    """Per-batch and per-epoch reporting of one RLAN training process.

    ``client``: a :class:`~trainer_client.MonitorClient` (or anything with ``log`` and
    ``epoch_end``; None collects without sending). ``start_step``: the checkpoint's
    ``global_step`` on resume. The monitor's ``step`` counts every batch offered to
    :meth:`batch`, NaN-skipped ones included (the trainer's ``global_step`` repeats after
    a skip, which the monitor would drop as a duplicate); the trainer's value can be sent
    as ``extra={"trainer_global_step": global_step}``.
    """

    def __init__(self, client: Any | None, *, rank: int = 0, start_step: int = 0,
                 ignore_index: int | None = ARC_IGNORE_INDEX, pad_color: int | None = ARC_PAD_COLOR,
                 collector: DiagnosticsCollector | None = None) -> None:
        self.client = client
        self.rank = rank
        self.step = start_step
        self.pad_color = pad_color
        sink = client.log if client is not None else None
        self.collector = collector or DiagnosticsCollector(sink=sink, ignore_index=ignore_index)
        # Bounded: forwards without a batch() call (evaluation, TTA) must not grow it; epoch() clears it.
        self._preclamp: deque[Tensor] = deque(maxlen=64)
        self._left_out_said: set[str] = set()

    def watch_clamp(self, hyper_lora: nn.Module, method: str = "_clamp_delta_norm") -> None:
        """Record the per-sample pre-clamp norm of every delta the HyperLoRA clamp sees.

        Why: the model returns its deltas *after* the clamp, where a runaway norm reads
        exactly ``lora_max_norm``. This wraps the module's clamp method on this instance
        (the model's code is untouched); the norms stay on the device until :meth:`batch`
        sends them as ``lora_norm_preclamp_mean/max``.
        """
        original = getattr(hyper_lora, method)

        def recording(delta: Tensor, *args: Any, **kwargs: Any) -> Tensor:
            if isinstance(delta, Tensor) and delta.dim() >= 2:
                self._preclamp.append(torch.linalg.vector_norm(delta.detach().float().flatten(1), dim=1))
            return original(delta, *args, **kwargs)

        setattr(hyper_lora, method, recording)

    def batch(self, outputs: Mapping[str, Any] | None, targets: Tensor | None = None, *, epoch: int,
              loss: Any = None, grad_norm: Any = None, input_grid: Tensor | None = None,
              valid_mask: Tensor | None = None, delta_scale: float | None = None, lr: float | None = None,
              extra: Mapping[str, Any] | None = None) -> None:
        """Report one batch from the forward output dict as the model returned it; never raises.

        ``valid_mask`` (B, H, W) marks real cells of the attention maps; without it, cells
        of ``input_grid`` equal to the pad colour (10) are padding. ``delta_scale`` (the
        model's ``hyper_lora.delta_scale``) and ``lr`` go to ``extra.hyperlora_delta_scale``
        and ``extra.lr``. ``outputs`` None (a batch skipped before forward) still counts a step.
        """
        try:
            out = outputs if isinstance(outputs, Mapping) else {}
            preclamp = list(self._preclamp)
            self._preclamp.clear()
            extras = dict(extra or {})
            if delta_scale is not None:
                extras["hyperlora_delta_scale"] = delta_scale
            if lr is not None:
                extras["lr"] = lr
            self.collector.collect(
                self.step, epoch, rank=self.rank, lora_delta=out.get("lora_deltas"),
                stop_logits=out.get("stop_logits"), attention=out.get("attention_maps"),
                attention_mask=self._mask(valid_mask, input_grid), logits=out.get("logits"), targets=targets,
                loss=loss, grad_norm=grad_norm, extra=extras,
                lora_preclamp_norms={str(i): t for i, t in enumerate(preclamp)} if preclamp else None)
        except Exception:  # noqa: BLE001 - monitoring must never break training
            logger.exception("RLANMonitor.batch failed at step %s; batch not reported", self.step)
        finally:
            self.step += 1

    def _mask(self, valid_mask: Tensor | None, input_grid: Tensor | None) -> Tensor | None:
        """The attention maps' valid cells: given, or the input grid's non-pad cells."""
        if valid_mask is not None:
            return valid_mask
        if input_grid is not None and self.pad_color is not None and isinstance(input_grid, Tensor):
            return input_grid != self.pad_color
        return None

    def epoch(self, epoch: int, *, train_losses: Mapping[str, Any] | None = None,
              eval_metrics: Mapping[str, Any] | None = None, meta_escalation_state: Mapping[str, Any] | None = None,
              clamp_stats: Mapping[str, Any] | None = None, train_accuracy: float | None = None,
              extra: Mapping[str, Any] | None = None, wait: float | None = None) -> str | None:
        """Send the epoch summary from the trainer's own dicts; returns the run's decision (or None).

        ``train_losses``: what ``train_epoch`` returned first (with its ``diagnostics``);
        ``eval_metrics``: ``evaluate()``'s dict in an epoch that evaluated (pixel accuracy ->
        ``eval_accuracy``; task/fg/bg accuracy -> extras); ``meta_escalation_state``: the
        counters (grad explosions, LR backoffs, NaN streak of this epoch); ``clamp_stats``:
        ``model.hyper_lora.get_clamp_stats()``. Keys that cannot be sent are logged once each.
        """
        try:
            self.collector.drain()  # this epoch's batches reach the client before its summary
            self._preclamp.clear()  # norms of evaluation forwards are not a training batch's
            mapped = epoch_fields(train_losses=train_losses, eval_metrics=eval_metrics,
                                  meta_escalation_state=meta_escalation_state, clamp_stats=clamp_stats,
                                  train_accuracy=train_accuracy, extra=extra)
            new = {k: why for k, why in mapped.left_out.items() if k not in self._left_out_said}
            if new:
                self._left_out_said |= new.keys()
                logger.info("RLANMonitor: epoch keys not sent (said once each): %s",
                            "; ".join(f"{k} ({why})" for k, why in sorted(new.items())[:40]))
            if self.client is None:
                return None
            return self.client.epoch_end(epoch, self.rank, **mapped.fields, extra=mapped.extra, wait=wait)
        except Exception:  # noqa: BLE001 - monitoring must never break training
            logger.exception("RLANMonitor.epoch failed for epoch %s", epoch)
            return None

    def close(self) -> None:
        """Hand out the last readings (the client is closed by its owner)."""
        try:
            self.collector.drain()
        except Exception:  # noqa: BLE001
            logger.exception("RLANMonitor.close: draining the collector failed")
