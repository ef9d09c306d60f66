"""HTTP routes, one module per resource; no SQL here (see monitor.store)."""
