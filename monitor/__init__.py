"""Training Health Monitor: stores per-batch training diagnostics, evaluates health rules,
and answers the trainer's meta-escalation question (pause or continue)."""

__version__ = "0.1.0"
