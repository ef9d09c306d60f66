"""Reading a run's closed epochs back: the summaries the epoch rules saw, extras included.

(Closing an epoch, ``POST /api/v1/runs/{run_id}/epochs``, is ingestion: ``monitor.api.diagnostics``.)
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from monitor.api.deps import DbDep, require_token
from monitor.api.paging import Limit, Offset
from monitor.api.runs import RunId
from monitor.store import runs
from monitor.store.epochs import epoch_to_json, list_epochs

router = APIRouter(prefix="/api/v1/runs", tags=["diagnostics"], dependencies=[Depends(require_token)])


@router.get("/{run_id}/epochs")
def read_epochs(
    run_id: RunId,
    db: DbDep,
    rank: Annotated[int | None, Query(ge=0, le=65535, description="One rank; default every rank")] = None,
    limit: Limit = 200,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Closed epochs in (epoch, rank) order, one page; NaN and Infinity spelled as strings."""
    with db.read_session() as session:
        runs.get_run(session, run_id)
        rows = list_epochs(session, run_id, rank=rank, limit=limit, offset=offset)
        epochs = [epoch_to_json(row) for row in rows]
    return {"run_id": run_id, "rank": rank, "limit": limit, "offset": offset, "epochs": epochs}
