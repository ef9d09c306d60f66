"""The answer to an exception nothing else handled: a JSON 500 that says nothing more.

Why: Starlette's default is a plain-text "Internal Server Error", which breaks clients that
read every answer as JSON (a deep config's PUT answered so). The exception itself is
logged by the server (Starlette re-raises it after this answer); the client learns nothing
about our internals.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

INTERNAL_ERROR = {"detail": "internal error"}


async def internal_error(_request: Request, _exc: Exception) -> JSONResponse:
    """``{"detail": "internal error"}`` with status 500."""
    return JSONResponse(status_code=500, content=INTERNAL_ERROR)


def install_internal_error_handler(app: FastAPI) -> None:
    """Make ``app`` answer any unhandled exception with :func:`internal_error`."""
    app.add_exception_handler(Exception, internal_error)
