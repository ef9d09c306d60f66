"""What a PyTorch trainer imports to report to the Training Health Monitor.

The HTTP side (:class:`MonitorClient`, :class:`EscalationGate`) needs only httpx;
the torch-based parts (:class:`DiagnosticsCollector`, the stability patches) are
imported lazily on first access, so ``import trainer_client`` works without torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from trainer_client.client import MonitorClient
from trainer_client.gate import EscalationGate, GateDecision

__all__ = [
    "MonitorClient", "EscalationGate", "GateDecision", "DiagnosticsCollector", "item_readings",
    "reading_tensors", "clamp_lora_delta_norm", "soft_clamp_logits", "init_stop_predictor_bias",
    "lora_norm_regularization", "clue_diversity_loss", "RLANMonitor", "load_rlan_config",
]

_LAZY: dict[str, str] = {
    "DiagnosticsCollector": "trainer_client.diagnostics",
    "item_readings": "trainer_client.diagnostics",
    "reading_tensors": "trainer_client.diagnostics",
    "clamp_lora_delta_norm": "trainer_client.stability",
    "soft_clamp_logits": "trainer_client.stability",
    "init_stop_predictor_bias": "trainer_client.stability",
    "lora_norm_regularization": "trainer_client.stability",
    "clue_diversity_loss": "trainer_client.stability",
    "RLANMonitor": "trainer_client.rlan",
    "load_rlan_config": "trainer_client.rlan",
}


def __getattr__(name: str) -> Any:
    """Import torch-dependent names on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'trainer_client' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
