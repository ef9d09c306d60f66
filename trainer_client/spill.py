"""On-disk spill of payloads the monitor could not take, replayed in order later.

Why: a training run outlives monitor restarts and network blips; diagnostics that
cannot be delivered are written as JSON lines instead of being lost, and replayed
(oldest first) once the service answers again -- also by the next process of the
same run (a resumed trainer), which adopts files whose writer has exited.

Each process writes its own file and holds an exclusive ``flock`` on it while it
lives, so two ranks of one run never share a file and a file is adopted by
exactly one successor. The total size of the files a process holds is bounded;
over the bound delivered lines are compacted away first, then the *oldest*
payloads are dropped (down to 90 % of the bound, so the file is rewritten rarely)
with a WARNING naming how many records were lost. Replay progress is incremental
(a cursor per file and delivered lines marked in place, see
:mod:`trainer_client.spill_file`): a failed probe during a long outage costs one
payload, never a rewrite of the spill. Each file starts with a header line holding the
run's PUT body (config, project, escalation start), so that ``python -m trainer_client
replay`` -- a process that knows only the run id -- recreates the run as the trainer
made it, not with an empty config.
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
from typing import Any, BinaryIO

from trainer_client.payload import Payload, payload_records
from trainer_client.spill_file import SpillFile

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


class SpillStore:
    """Bounded, ordered, crash-tolerant store of undeliverable payloads."""

    def __init__(self, directory: Path | str, max_bytes: int, run_id: str = "run",
                 run_body: dict[str, Any] | None = None) -> None:
        self.directory = Path(directory).expanduser()
        # The run's PUT body: what this process knows, completed by the adopted files' headers on open().
        self.run_body: dict[str, Any] = dict(run_body or {})
        self.max_bytes = int(max_bytes)
        self.prefix = _safe_name(run_id) + "@"  # '@' never occurs in a run id, so prefixes are unambiguous
        self.dropped_records = 0
        self._files: list[SpillFile] = []  # oldest first; the last one is ours
        self._own: SpillFile | None = None

    def open(self) -> None:
        """Create our own file and adopt orphaned files of exited processes (oldest first)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        orphans = self._adopt_orphans()
        for spill in reversed(orphans):  # newest first: its fields win over older files'
            for name, value in _header_body(spill).items():
                self.run_body.setdefault(name, value)
        name = f"{self.prefix}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}{SPILL_SUFFIX}"
        path = self.directory / name
        handle = open(path, "x+b", buffering=0)  # not "a": marks and compaction write in place
        _try_lock(handle)
        header = json.dumps(self.run_body, allow_nan=False, separators=(",", ":")).encode() if self.run_body else None
        self._own = SpillFile(path, handle, header)
        self._files = [*orphans, self._own]
        if orphans:
            logger.info("monitor spill: adopted %d file(s) from a previous process in %s (%d bytes)",
                        len(orphans), self.directory, sum(f.size for f in orphans))

    def _adopt_orphans(self) -> list[SpillFile]:
        """Lock every spill file nobody else holds; empty ones are removed.

        Files may vanish at any point (another rank drains and deletes one, a cleanup job
        runs): such a file is skipped, it never costs us the spill.
        """
        adopted: list[SpillFile] = []
        for path in self._orphan_paths():
            spill = _adopt(path)
            if spill is None:
                continue
            if spill.size == 0:
                self._remove(spill)
            else:
                adopted.append(spill)
        return adopted

    def _orphan_paths(self) -> list[Path]:
        """This run's spill files, oldest first; those gone by the time we look are left out."""
        dated: list[tuple[float, str, Path]] = []
        for path in self.directory.glob(glob.escape(self.prefix) + "*" + SPILL_SUFFIX):
            try:
                dated.append((path.stat().st_mtime, path.name, path))
            except OSError:
                continue
        return [path for _, _, path in sorted(dated)]

    @property
    def total_bytes(self) -> int:
        """Bytes on disk in the files we hold (after close: the files left for the next process)."""
        return sum(f.size for f in self._files)

    def pending(self) -> bool:
        """Whether anything waits for replay (after close: whether anything was left on disk)."""
        return any(f.pending() for f in self._files)

    def append(self, payload: Payload) -> bool:
        """Write one payload; drops the oldest payloads if the bound would be exceeded."""
        if self._own is None:
            self.open()
        line = json.dumps(payload, allow_nan=False, separators=(",", ":")).encode() + b"\n"
        if len(line) > self.max_bytes:
            self._count_dropped(payload_records(payload), "a single payload is larger than max_spill_bytes")
            return False
        self._make_room(len(line))
        assert self._own is not None
        try:
            self._own.append(line)
        except OSError as exc:
            self._count_dropped(payload_records(payload), f"cannot write to {self._own.path} ({exc})")
            return False
        return True

    def _make_room(self, needed: int) -> None:
        """Compact delivered lines away, then drop whole payloads, oldest first, to the low-water mark.

        Going down to 90 % of the bound keeps these rewrites rare.
        """
        if self.total_bytes + needed <= self.max_bytes:
            return
        target = max(int(self.max_bytes * LOW_WATER) - needed, 0)
        dropped = 0
        for spill in list(self._files):
            excess = self.total_bytes - target
            if excess <= 0:
                break
            lines = spill.unsent_lines()
            freed = spill.size - sum(len(line) + 1 for line in lines)  # delivered lines: free to reclaim
            while lines and freed < excess:
                line = lines.pop(0)
                freed += len(line) + 1
                dropped += _records_in_line(line)
            spill.rewrite(lines)
            if not lines and spill is not self._own:
                self._remove(spill)
        if dropped:
            self._count_dropped(dropped, f"spill directory {self.directory} reached max_spill_bytes="
                                         f"{self.max_bytes}; dropped the oldest records")

    def _count_dropped(self, records: int, why: str) -> None:
        self.dropped_records += records
        logger.warning("monitor spill: %s: %d record(s) dropped (%d in total)", why, records,
                       self.dropped_records)

    def replay(self, send: Callable[[Payload], Payload | None]) -> bool:
        """Send spilled payloads oldest first; True once everything is drained.

        ``send`` returns what of a payload is still undelivered: None when it was handled,
        the payload itself when not (replay stops there), or the records left over after
        a partial delivery (they replace the line in place, and replay stops). A failed
        attempt costs one payload: progress is a cursor, not a rewrite of the file.
        """
        for spill in list(self._files):
            while (line := spill.next_line()) is not None:
                payload = _parse(line, spill.path)
                left = send(payload) if payload is not None else None
                if left is not None:
                    if left is not payload:
                        spill.replace(line, json.dumps(left, allow_nan=False, separators=(",", ":")).encode())
                    return False
                spill.mark_sent(line)
            self._drained(spill)
        return True

    def _drained(self, spill: SpillFile) -> None:
        """Everything in ``spill`` was delivered: empty our own file, delete an adopted one."""
        if spill is self._own:
            spill.rewrite([])
        else:
            self._remove(spill)

    def _remove(self, spill: SpillFile) -> None:
        """Delete a drained file while we still hold its lock, then release it."""
        try:
            spill.path.unlink()
        except OSError:
            pass
        spill.handle.close()
        if spill in self._files:
            self._files.remove(spill)

    def close(self) -> None:
        """Release the locks; drained files are deleted, the others kept for the next process.

        The kept files stay listed (handles closed), so :attr:`total_bytes` and
        :meth:`pending` still say what waits on disk; a later :meth:`append` reopens.
        """
        kept: list[SpillFile] = []
        for spill in list(self._files):
            if spill.pending():
                spill.handle.close()
                kept.append(spill)
            else:
                self._remove(spill)
        self._files, self._own = kept, None


def _adopt(path: Path) -> SpillFile | None:
    """Open and lock a spill file of an exited process; None if it is held, gone or replaced."""
    try:
        handle = open(path, "r+b", buffering=0)
    except OSError:
        return None
    try:
        if _try_lock(handle) and _same_file(path, handle):
            return SpillFile(path, handle)
    except OSError:
        pass
    handle.close()  # a live process (another rank) owns it, or it was deleted meanwhile
    return None


def _same_file(path: Path, handle: BinaryIO) -> bool:
    """Whether ``path`` still names the inode we locked (a drained file may be unlinked under us)."""
    try:
        named, opened = os.stat(path), os.fstat(handle.fileno())
    except OSError:
        return False
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def _parse(line: bytes, path: Path) -> Payload | None:
    """One payload, or None (logged) for a torn/corrupt line."""
    try:
        payload = json.loads(line)
    except ValueError:
        logger.warning("monitor spill: skipping a corrupt line in %s (%d bytes)", path, len(line))
        return None
    return payload if isinstance(payload, dict) else None


def _header_body(spill: SpillFile) -> dict[str, Any]:
    """The run body in a spill file's header ({} for none or a corrupt one)."""
    if spill.header is None:
        return {}
    try:
        body = json.loads(spill.header)
    except ValueError:
        logger.warning("monitor spill: corrupt run header in %s; its run config is not replayed", spill.path)
        return {}
    return body if isinstance(body, dict) else {}


def _records_in_line(line: bytes) -> int:
    """Record count of a spilled line, for the drop warning."""
    payload = _parse(line, Path("<spill>"))
    return payload_records(payload) if payload else 0
