"""Benchmarks against peers (MLflow, TensorBoard) and the GPU overhead of monitoring.

Run everything with ``python -m benchmarks.run``; see ``benchmarks/README.md``.
"""
