"""SQLAlchemy models and the queries the API and workers use (no HTTP here)."""
