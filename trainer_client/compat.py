"""Fields an older monitor does not know yet: found from its 422, then left out (said once).

Why: the client and the service are upgraded separately. A newer client sends readings
(``attention_peak_ratio``...), a record ``session`` or epoch ``extra`` that an older
service refuses as ``extra_forbidden``; without this every batch would be rejected
whole. When a 422 names *only* such unknown fields, the transport calls
:meth:`RefusedFields.learn`, resends the payload without them, and from then on leaves
them out of every payload. Numeric readings are not lost: they move into the record's
``extra`` (which every version accepts), so an old service still stores them. Each
field is logged once at WARNING and counted (``MonitorClient.stats()["refused_fields"]``).
"""

from __future__ import annotations

import logging
from typing import Any

from trainer_client.payload import MAX_EXTRA, Payload

logger = logging.getLogger(__name__)


class RefusedFields:
    """The top-level record/epoch fields this service refused, and how to send without them."""

    def __init__(self, run_id: str, base_url: str) -> None:
        self.run_id = run_id
        self.base_url = base_url
        self.fields: set[str] = set()

    def learn(self, body: Any) -> bool:
        """Remember the fields a 422 refused as unknown; False unless the 422 was only that (and new)."""
        found = unknown_fields(body)
        if not found - self.fields:
            return False
        for field in sorted(found - self.fields):
            logger.warning("monitor client %s: the monitor at %s does not know the field %r (an older service); "
                           "sending without it%s", self.run_id, self.base_url, field,
                           " (numeric readings go to extra)" if field != "session" else "")
        self.fields |= found
        return True

    def apply(self, payload: Payload) -> Payload:
        """``payload`` without the refused fields (the same object when nothing needs leaving out)."""
        if not self.fields:
            return payload
        if "records" in payload:
            return {**payload, "records": [_record_without(r, self.fields) for r in payload["records"]]}
        return {k: v for k, v in payload.items() if k not in self.fields}


def unknown_fields(body: Any) -> set[str]:
    """Field names of a 422 whose every error is ``extra_forbidden`` at the top of a record or epoch body."""
    detail = body.get("detail") if isinstance(body, dict) else None
    if not isinstance(detail, list) or not detail:
        return set()
    found: set[str] = set()
    for error in detail:
        loc = error.get("loc") if isinstance(error, dict) else None
        if error.get("type") != "extra_forbidden" or not isinstance(loc, list):
            return set()
        top = loc == ["body", loc[-1]] or (len(loc) == 4 and loc[:2] == ["body", "records"])
        if not top or not isinstance(loc[-1], str):
            return set()
        found.add(loc[-1])
    return found


def _record_without(record: dict[str, Any], fields: set[str]) -> dict[str, Any]:
    """A record with refused fields removed; numeric ones moved into ``extra`` while there is room."""
    if not fields & record.keys():
        return record
    out = {k: v for k, v in record.items() if k not in fields}
    extra = dict(out.get("extra") or {})
    for name in fields & record.keys():
        value = record[name]
        numeric = value is None or isinstance(value, (int, float)) or value in ("NaN", "Infinity", "-Infinity")
        if numeric and name not in extra and len(extra) < MAX_EXTRA and not isinstance(value, bool):
            extra[name] = value
    if extra:
        out["extra"] = extra
    return out
