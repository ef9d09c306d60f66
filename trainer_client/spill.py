"""On-disk spill of payloads the monitor could not take, replayed in order later.

Why: a training run outlives monitor restarts and network blips; diagnostics that
cannot be delivered are written as JSON lines instead of being lost, and replayed
(oldest first) once the service answers again -- also by the next process of the
same run (a resumed trainer), which adopts files whose writer has exited.

Each process writes its own file and holds an exclusive ``flock`` on it while it
lives, so two ranks of one run never share a file and a file is adopted by
exactly one successor. The total size of the files a process holds is bounded;
over the bound the *oldest* payloads are dropped (down to 90 % of the bound, so
the file is rewritten rarely) with a WARNING naming how many records were lost.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import socket
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from trainer_client.payload import Payload, payload_records

try:  # POSIX only; without it, orphan adoption is best-effort (no cross-process lock).
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

SPILL_SUFFIX = ".jsonl"
# When full, drop down to this fraction of the bound (whole payloads, oldest first).
LOW_WATER = 0.9


def _safe_name(run_id: str) -> str:
    """A run id usable as a file name (run ids are already restricted; this is defence in depth)."""
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in run_id).lstrip(".") or "run"


def default_spill_dir(run_id: str) -> Path:
    """``$XDG_CACHE_HOME/training-monitor/<run_id>`` (``~/.cache`` by default)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "training-monitor" / _safe_name(run_id)


def _try_lock(handle: BinaryIO) -> bool:
    """Non-blocking exclusive lock; True if we own the file now."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


class _SpillFile:
    """One locked JSON-lines file and its current size."""

    def __init__(self, path: Path, handle: BinaryIO) -> None:
        self.path = path
        self.handle = handle
        self.size = path.stat().st_size

    def lines(self) -> list[bytes]:
        """All complete lines (a torn last line from a crash is kept as is and skipped on parse)."""
        self.handle.seek(0)
        return [line for line in self.handle.read().splitlines() if line.strip()]

    def rewrite(self, lines: list[bytes]) -> None:
        """Replace the content in place (we hold the lock on this inode)."""
        self.handle.seek(0)
        self.handle.truncate()
        for line in lines:
            self.handle.write(line + b"\n")
        self.handle.flush()
        self.size = self.handle.tell()


class SpillStore:
    """Bounded, ordered, crash-tolerant store of undeliverable payloads."""

    def __init__(self, directory: Path | str, max_bytes: int, run_id: str = "run") -> None:
        self.directory = Path(directory).expanduser()
        self.max_bytes = int(max_bytes)
        self.prefix = _safe_name(run_id) + "@"  # '@' never occurs in a run id, so prefixes are unambiguous
        self.dropped_records = 0
        self._files: list[_SpillFile] = []  # oldest first; the last one is ours
        self._own: _SpillFile | None = None

    def open(self) -> None:
        """Create our own file and adopt orphaned files of exited processes (oldest first)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        orphans = self._adopt_orphans()
        name = f"{self.prefix}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}{SPILL_SUFFIX}"
        path = self.directory / name
        handle = open(path, "a+b")
        _try_lock(handle)
        self._own = _SpillFile(path, handle)
        self._files = [*orphans, self._own]
        if orphans:
            logger.info("monitor spill: adopted %d file(s) from a previous process in %s (%d bytes)",
                        len(orphans), self.directory, sum(f.size for f in orphans))

    def _adopt_orphans(self) -> list[_SpillFile]:
        """Lock every spill file nobody else holds; empty ones are removed."""
        adopted: list[_SpillFile] = []
        pattern = glob.escape(self.prefix) + "*" + SPILL_SUFFIX
        paths = sorted(self.directory.glob(pattern), key=lambda p: (p.stat().st_mtime, p.name))
        for path in paths:
            try:
                handle = open(path, "r+b")
            except OSError:
                continue
            if not _try_lock(handle):
                handle.close()  # a live process (another rank) owns it
                continue
            spill = _SpillFile(path, handle)
            if spill.size == 0:
                self._remove(spill)
            else:
                adopted.append(spill)
        return adopted

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self._files)

    def pending(self) -> bool:
        """Whether anything waits for replay."""
        return any(f.size for f in self._files)

    def append(self, payload: Payload) -> bool:
        """Write one payload; drops the oldest payloads if the bound would be exceeded."""
        if self._own is None:
            self.open()
        line = json.dumps(payload, allow_nan=False, separators=(",", ":")).encode()
        if len(line) + 1 > self.max_bytes:
            self._count_dropped(payload_records(payload), "a single payload is larger than max_spill_bytes")
            return False
        self._make_room(len(line) + 1)
        assert self._own is not None
        self._own.handle.seek(0, os.SEEK_END)
        self._own.handle.write(line + b"\n")
        self._own.handle.flush()
        self._own.size += len(line) + 1
        return True

    def _make_room(self, needed: int) -> None:
        """Drop whole payloads, oldest first, down to the low-water mark so rewrites stay rare."""
        if self.total_bytes + needed <= self.max_bytes:
            return
        target = int(self.max_bytes * LOW_WATER) - needed
        dropped = 0
        for spill in list(self._files):
            excess = self.total_bytes - max(target, 0)
            if excess <= 0:
                break
            lines, freed = spill.lines(), 0
            while lines and freed < excess:
                line = lines.pop(0)
                freed += len(line) + 1
                dropped += _records_in_line(line)
            spill.rewrite(lines)
            if not lines and spill is not self._own:
                self._remove(spill)
        self._count_dropped(dropped, f"spill directory {self.directory} reached max_spill_bytes="
                                     f"{self.max_bytes}; dropped the oldest records")

    def _count_dropped(self, records: int, why: str) -> None:
        self.dropped_records += records
        logger.warning("monitor spill: %s: %d record(s) dropped (%d in total)", why, records,
                       self.dropped_records)

    def replay(self, send: Callable[[Payload], bool]) -> int:
        """Send spilled payloads in order until ``send`` returns False; returns records replayed."""
        replayed = 0
        for spill in list(self._files):
            lines = spill.lines()
            for index, line in enumerate(lines):
                payload = _parse(line, spill.path)
                if payload is None:
                    continue
                if not send(payload):
                    spill.rewrite(lines[index:])
                    return replayed
                replayed += payload_records(payload)
            spill.rewrite([])
            if spill is not self._own:
                self._remove(spill)
        return replayed

    def _remove(self, spill: _SpillFile) -> None:
        """Delete a drained file while we still hold its lock, then release it."""
        try:
            spill.path.unlink()
        except OSError:
            pass
        spill.handle.close()
        if spill in self._files:
            self._files.remove(spill)

    def close(self) -> None:
        """Release the locks; our file is deleted if empty, otherwise kept for the next process."""
        for spill in list(self._files):
            if spill.size == 0:
                self._remove(spill)
            else:
                spill.handle.close()
        self._files = []
        self._own = None


def _parse(line: bytes, path: Path) -> Payload | None:
    """One payload, or None (logged) for a torn/corrupt line."""
    try:
        payload = json.loads(line)
    except ValueError:
        logger.warning("monitor spill: skipping a corrupt line in %s (%d bytes)", path, len(line))
        return None
    return payload if isinstance(payload, dict) else None


def _records_in_line(line: bytes) -> int:
    """Record count of a spilled line, for the drop warning."""
    payload = _parse(line, Path("<spill>"))
    return payload_records(payload) if payload else 0
