"""Ingestion work and where it runs: worker processes (the default) or worker threads.

The trainers' decision poll and ingestion share each server process. Ingestion is
CPU-bound Python (parse, validate, insert, evaluate the rules) and, run in a thread,
held the GIL about 80 % of the time under flat-out load, so every poll waited for it.
In the default ``process`` mode each server process hands ingestion to child processes
of its own (``monitor.ingest.process_pool``) and keeps its interpreter for serving.
"""
