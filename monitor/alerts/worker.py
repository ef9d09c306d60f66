"""Placeholder: the webhook delivery worker is being written."""

from __future__ import annotations

from typing import Any


class DeliveryWorker:
    """Sends outbox rows (not yet implemented)."""

    def __init__(self, db: Any, settings: Any) -> None:
        self.db = db
        self.settings = settings

    def start(self) -> None:
        """Start the background thread."""

    def stop(self, timeout: float = 5.0) -> None:
        """Stop and join."""
