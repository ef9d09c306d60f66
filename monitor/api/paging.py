"""Paging query parameters shared by the list endpoints."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

MAX_LIMIT = 1000
# Far beyond any real list, and well inside every database's integer (2**63 overflowed them: 500).
MAX_OFFSET = 2**31 - 1

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Items to skip.")]
