"""Length-prefixed pickle frames between a server process and its ingest workers.

Both ends are our own code, joined by a private pipe (the worker's stdin and stdout), so
pickle is safe here and keeps request bodies as plain bytes: no second JSON encoding
of a body the worker parses anyway. Each frame is an 8-byte big-endian length, then
that many bytes.
"""

from __future__ import annotations

import asyncio
import pickle
import struct
from typing import IO, Any

_LENGTH = struct.Struct(">Q")


def encode(message: Any) -> bytes:
    """One frame holding ``message``."""
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(payload)) + payload


def read_frame(stream: IO[bytes]) -> Any | None:
    """The next message from a blocking stream, or None at a clean end of stream."""
    header = stream.read(_LENGTH.size)
    if not header:
        return None
    if len(header) < _LENGTH.size:
        raise EOFError("stream ended inside a frame header")
    (size,) = _LENGTH.unpack(header)
    payload = stream.read(size)
    if len(payload) < size:
        raise EOFError("stream ended inside a frame")
    return pickle.loads(payload)


def write_frame(stream: IO[bytes], message: Any) -> None:
    """Send ``message`` on a blocking stream."""
    stream.write(encode(message))
    stream.flush()


async def read_frame_async(reader: asyncio.StreamReader) -> Any:
    """The next message; ``asyncio.IncompleteReadError`` when the other end is gone."""
    (size,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
    return pickle.loads(await reader.readexactly(size))
