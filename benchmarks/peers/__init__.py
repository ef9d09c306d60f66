"""Peer-side benchmark code: runs inside ``benchmarks/.venv-peers`` and prints one JSON object on stdout."""
