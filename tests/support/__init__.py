"""Test helpers that start real things: the service, databases, receivers."""
