"""A child process with asyncio pipes, spawned by the standard library so that ``close_fds`` holds.

Why not ``asyncio.create_subprocess_exec``: under uvicorn the event loop is uvloop, and
uvloop's spawn ignores ``close_fds`` (libuv has no such step), so every ingest worker
inherited each inheritable descriptor of its server process -- the listening socket
uvicorn marks inheritable for ``--workers N`` among them -- and an orphaned worker kept
the port bound. ``subprocess.Popen`` closes every descriptor but 0, 1 and 2 in the child,
before exec; the pipes are then attached to the running loop, whichever loop it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Sequence


class ChildProcess:
    """The parts of ``asyncio.subprocess.Process`` the ingest pool uses, over a ``Popen``."""

    def __init__(self, popen: subprocess.Popen[bytes], stdin: asyncio.StreamWriter,
                 stdout: asyncio.StreamReader) -> None:
        self._popen = popen
        self.stdin = stdin
        self.stdout = stdout

    @classmethod
    async def start(cls, argv: Sequence[str], env: dict[str, str]) -> "ChildProcess":
        """Spawn ``argv`` in a session of its own, stdin and stdout piped, no other descriptor inherited."""
        popen = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0,
                                 env=env, close_fds=True, start_new_session=True)
        assert popen.stdin is not None and popen.stdout is not None
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), popen.stdout)
        transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, popen.stdin)
        writer = asyncio.StreamWriter(transport, protocol, None, loop)
        return cls(popen, writer, reader)

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        """The exit code once the child has exited (reaped here, without blocking), else None."""
        return self._popen.poll()

    def kill(self) -> None:
        self._popen.kill()

    async def wait(self) -> int:
        """The exit code, waiting on a pidfd (Linux) or, elsewhere, in a thread."""
        if self.returncode is not None:
            return self._popen.returncode
        if not hasattr(os, "pidfd_open"):
            return await asyncio.get_running_loop().run_in_executor(None, self._popen.wait)
        exited = asyncio.Event()
        loop = asyncio.get_running_loop()
        pidfd = os.pidfd_open(self.pid)
        try:
            loop.add_reader(pidfd, exited.set)
            if self.returncode is None:
                await exited.wait()
        finally:
            with contextlib.suppress(Exception):
                loop.remove_reader(pidfd)
            os.close(pidfd)
        return self._popen.wait()
