"""Deterministic synthetic training traces (healthy and collapsing RLAN runs)."""

from monitor.scenarios.traces import Trace, collapse_run, healthy_run, to_readings

__all__ = ["Trace", "collapse_run", "healthy_run", "to_readings"]
