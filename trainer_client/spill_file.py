"""One spill file: JSON lines, a replay cursor, and delivered lines marked in place.

Why a cursor and marks instead of rewriting the file after each replay: during a long
outage the client re-probes every few seconds, and a probe that fails must cost one
payload, not a read and rewrite of a spill of hundreds of megabytes. The cursor is the
offset of the first line not yet delivered (kept in memory); a delivered line gets its
first byte overwritten with ``#`` (JSON lines start with ``{``), so a successor process
that adopts the file after a crash skips what was delivered. The file is truncated or
deleted (by :class:`~trainer_client.spill.SpillStore`) once drained, and compacted only
when the size bound is reached.

All I/O is unbuffered and positional (seek, then read/write on a raw file), so an
in-place write is never hidden by a stale read buffer; one thread uses a file at a time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

SENT_MARK = b"#"
READ_CHUNK = 64 * 1024
HEADER_MARK = b"#run "  # first line: the run's PUT body; starts with the sent mark, so replay passes it by


def unsent(line: bytes) -> bool:
    """Whether a line still holds a payload to deliver (not blank, not marked delivered)."""
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith(SENT_MARK)


class SpillFile:
    """One locked JSON-lines file: its size on disk and the cursor of its first unsent line."""

    def __init__(self, path: Path, handle: BinaryIO, header: bytes | None = None) -> None:
        self.path = path
        self.handle = handle  # raw (buffering=0), opened without O_APPEND so in-place writes land in place
        self.size = os.fstat(handle.fileno()).st_size
        self.cursor = 0
        # The run's PUT body (JSON), written before the first payload, so a replay by another
        # process recreates the run with its config, project and escalation start.
        self.header = header if header is not None else self._read_header()

    def _read_header(self) -> bytes | None:
        """The JSON of an existing file's header line, if it has one."""
        first = self._line_at(0)
        if first.startswith(HEADER_MARK) and first.endswith(b"\n"):
            return first[len(HEADER_MARK):].rstrip(b"\n")
        return None

    def pending(self) -> bool:
        """Whether anything past the cursor may still wait for delivery."""
        return self.size > self.cursor

    def unsent_lines(self) -> list[bytes]:
        """Undelivered lines past the cursor, without newlines (a torn last line is kept as is)."""
        data = self._read_at(self.cursor, self.size - self.cursor)
        return [line for line in data.split(b"\n") if unsent(line)]

    def next_line(self) -> bytes | None:
        """The first undelivered line (newline included) at or after the cursor; None when drained.

        Delivered and blank lines on the way are passed over (the cursor moves past them).
        """
        while self.cursor < self.size:
            line = self._line_at(self.cursor)
            if not line:  # the file is shorter than we knew (should not happen): nothing more to read
                self.size = self.cursor
                return None
            if unsent(line):
                return line
            self.cursor += len(line)
        return None

    def mark_sent(self, line: bytes) -> None:
        """Flag the line at the cursor as delivered (one byte, durable for a successor) and pass it."""
        self._write_at(self.cursor, SENT_MARK)
        self.cursor += len(line)

    def replace(self, line: bytes, shorter: bytes) -> None:
        """Overwrite the line at the cursor with ``shorter`` (JSON), space-padded to the same length.

        Used when part of a payload was delivered: the rest stays in place, in order. A
        replacement that does not fit leaves the line as it was (it is resent whole; the
        server deduplicates).
        """
        body = line.rstrip(b"\n")
        if len(shorter) <= len(body):
            self._write_at(self.cursor, shorter.ljust(len(body)))

    def append(self, line: bytes) -> None:
        """Write a line at the end (an empty file gets the header first); no torn line remains on failure."""
        if self.size == 0 and self.header is not None:
            line = HEADER_MARK + self.header + b"\n" + line
        try:
            self._write_at(self.size, line)
        except OSError:
            try:
                os.ftruncate(self.handle.fileno(), self.size)
            except OSError:
                pass
            raise
        self.size += len(line)

    def rewrite(self, lines: list[bytes]) -> None:
        """Replace the content with ``lines`` (we hold the lock on this inode); the cursor restarts."""
        data = b"".join(line + b"\n" for line in lines)
        os.ftruncate(self.handle.fileno(), 0)
        self.size = self.cursor = 0
        if data:
            self.append(data)

    def _line_at(self, offset: int) -> bytes:
        """The line starting at ``offset``, newline included (none for a torn last line)."""
        parts: list[bytes] = []
        while offset < self.size:
            chunk = self._read_at(offset, min(READ_CHUNK, self.size - offset))
            if not chunk:
                break
            cut = chunk.find(b"\n")
            if cut >= 0:
                parts.append(chunk[:cut + 1])
                break
            parts.append(chunk)
            offset += len(chunk)
        return b"".join(parts)

    def _read_at(self, offset: int, count: int) -> bytes:
        self.handle.seek(offset)
        parts: list[bytes] = []
        while count > 0:
            chunk = self.handle.read(count)
            if not chunk:
                break
            parts.append(chunk)
            count -= len(chunk)
        return b"".join(parts)

    def _write_at(self, offset: int, data: bytes) -> None:
        self.handle.seek(offset)
        view = memoryview(data)
        while view:
            written = self.handle.write(view)
            if not written:
                raise OSError(f"no progress writing {self.path}")
            view = view[written:]
