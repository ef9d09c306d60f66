"""Pydantic v2 request and response bodies of the public API."""
