"""Record encoding: queued readings -> the strict-JSON payloads the monitor accepts.

Why a module of its own: the encoded payload is both the wire format (POSTed by
:mod:`trainer_client.transport`) and the spill format (JSON lines written by
:mod:`trainer_client.spill`), so both sides must agree on it. Encoding runs in the
sender thread, not in ``MonitorClient.log()``, so that tensors are converted off the
training thread. Strict JSON has no NaN/Inf, yet those are exactly the readings a
diverging run produces, so they are spelled "NaN"/"Infinity"/"-Infinity" as the
server expects. Values the server would reject are dropped and counted here rather
than costing a round trip.
"""

from __future__ import annotations

import logging
import math
import operator
import os
import socket
import uuid
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger(__name__)

Payload = dict[str, Any]

READING_NAMES: frozenset[str] = frozenset((
    "lora_norm_mean", "lora_norm_max", "stop_logit_var", "attention_max", "attention_entropy",
    "logit_min", "logit_max", "accuracy", "loss", "nan_count", "grad_norm",
    # issue 18 (design_rules_data.md section 1): size-free attention, stop mean/prob, pre-clamp LoRA norm
    "attention_max_mean", "attention_peak_ratio", "attention_entropy_norm", "stop_logit_mean",
    "stop_logit_abs_mean", "stop_prob_mean", "lora_norm_preclamp_mean", "lora_norm_preclamp_max",
))
MAX_INDEX, MAX_RANK, MAX_EXTRA, MAX_NAME = 2**62, 65535, 64, 100
MAX_EPOCH_EXTRA, MAX_EPOCH_VECTOR = 64, 64
MAX_TREE_DEPTH = 32  # deeper config branches are sent as text (also ends reference cycles)
MAX_EXACT_INT = 2**53 - 1  # the monitor refuses larger config integers (JavaScript would round them)
_BAD = object()


def payload_records(payload: Payload) -> int:
    """How many diagnostic records a payload carries (an epoch summary counts as 0)."""
    return len(payload.get("records") or ())


def encode_record(item: tuple, counts: dict[str, int]) -> dict[str, Any] | None:
    """A queued ``(step, epoch, rank, timestamp, readings)`` as a strict-JSON record, or None.

    Runs in the sender thread, so tensors are converted here, not in ``log()``. Bad
    step/epoch/rank drop the record; unconvertible readings are skipped; both are counted.
    """
    step, epoch, rank, timestamp, readings = item
    if isinstance(step, Mapping):  # a whole record (DiagnosticsCollector sink)
        readings = {**step, **readings}
        step, epoch = readings.pop("step", None), readings.pop("epoch", epoch)
        rank = readings.pop("rank", rank)
        timestamp = _timestamp(readings.pop("timestamp", None), timestamp, counts)
    try:
        record: dict[str, Any] = {"step": _index(step, MAX_INDEX), "epoch": _index(epoch, MAX_INDEX),
                                  "rank": _index(rank, MAX_RANK), "timestamp": timestamp}
    except (TypeError, ValueError, OverflowError) as exc:
        counts["invalid"] += 1
        if counts["invalid"] % 1000 == 1:
            logger.warning("monitor client: dropped a record with step=%r epoch=%r rank=%r (%s); "
                           "%d invalid so far", step, epoch, rank, exc, counts["invalid"])
        return None
    extra: dict[str, Any] = {}
    for name, value in readings.items():
        if name == "extra" and isinstance(value, Mapping):
            for key, sub in value.items():
                _put_extra(extra, str(key), sub, counts)
        elif name in READING_NAMES:
            number = encode_float(value)
            if number is _BAD:
                counts["invalid_readings"] += 1
            else:
                record[name] = number
        else:
            _put_extra(extra, name, value, counts)
    if extra:
        record["extra"] = extra
    return record


def _put_extra(extra: dict[str, Any], name: str, value: Any, counts: dict[str, int]) -> None:
    """Add an extra reading if its name and the count fit the schema (else count it)."""
    number = encode_float(value)
    if number is _BAD or not 0 < len(name) <= MAX_NAME or len(extra) >= MAX_EXTRA:
        counts["invalid_readings"] += 1
    else:
        extra[name] = number


def _timestamp(value: Any, logged_at: float, counts: dict[str, int]) -> Any:
    """A record's own timestamp if it is a finite number, else the time it was logged.

    A NaN timestamp would make the whole batch unencodable (strict JSON); an unusable
    one is counted as an invalid reading. Finite values the server refuses (negative)
    are left for it to reject, so that the record is isolated and reported.
    """
    if value is None:
        return logged_at
    number = encode_float(value)
    if isinstance(number, float):
        return number
    counts["invalid_readings"] += 1
    return logged_at


def _index(value: Any, upper: int) -> int:
    """An int in ``[0, upper]`` from an int, integral float, numpy int or 0-dim tensor."""
    if isinstance(value, bool) or value is None:
        raise TypeError(f"not an index: {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        as_float = float(value)
        if not as_float.is_integer():
            raise ValueError(f"not an integer: {value!r}") from None
        number = int(as_float)
    if not 0 <= number <= upper:
        raise ValueError(f"{number} outside [0, {upper}]")
    return number


def encode_float(value: Any) -> Any:
    """None, a finite float, or "NaN"/"Infinity"/"-Infinity" (strict JSON); ``_BAD`` if unusable.

    Never raises: a reading too large for a double (``10**400``) is what a diverging run
    reports, so it becomes +/-Infinity rather than costing its batch.
    """
    if value is None:
        return None
    try:
        number = float(value)
    except OverflowError:
        return _overflowed(value)
    except Exception:  # noqa: BLE001 - any unconvertible object is one bad reading, never a lost batch
        return _BAD
    return number if math.isfinite(number) else non_finite_name(number)


def non_finite_name(number: float) -> str:
    """The strict-JSON spelling the monitor reads back as NaN/+Inf/-Inf."""
    if math.isnan(number):
        return "NaN"
    return "Infinity" if number > 0 else "-Infinity"


def _overflowed(value: Any) -> Any:
    """+/-Infinity for a number beyond the double range (by its sign), else ``_BAD``."""
    try:
        return "Infinity" if value > 0 else "-Infinity"
    except Exception:  # noqa: BLE001 - not even comparable: unusable
        return _BAD


def encode_tree(value: Any, non_finite: list[str] | None = None, path: str = "config", depth: int = 0) -> Any:
    """A JSON-safe copy of a user tree (the run config); never raises.

    Strict JSON has no NaN/Infinity and the monitor answers 422 to them inside a config,
    so non-finite floats are sent as the strings "NaN"/"Infinity"/"-Infinity" (their
    dotted paths are appended to ``non_finite`` for one warning). Integers beyond +-(2^53-1)
    are sent as their decimal text (the monitor refuses them: JavaScript reads them rounded).
    Keys become strings, numpy/torch scalars their Python value, and anything else ``str(value)``.
    """
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_EXACT_INT:
        return str(value)  # e.g. a 64-bit seed: as text, instead of the monitor refusing the run
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value)
        if non_finite is not None:
            non_finite.append(path)
        return non_finite_name(value)
    if depth >= MAX_TREE_DEPTH:
        return _text(value)
    if isinstance(value, Mapping):
        return {str(key): encode_tree(sub, non_finite, f"{path}.{key}", depth + 1) for key, sub in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode_tree(sub, non_finite, f"{path}[{index}]", depth + 1) for index, sub in enumerate(value)]
    scalar = _scalar(value)
    if scalar is not _BAD:
        return encode_tree(scalar, non_finite, path, depth + 1)
    return _text(value)


def _scalar(value: Any) -> Any:
    """The Python number of a numpy scalar or one-element tensor (``.item()``), else ``_BAD``."""
    item = getattr(value, "item", None)
    if not callable(item):
        return _BAD
    try:
        scalar = item()
    except Exception:  # noqa: BLE001 - not a scalar after all
        return _BAD
    return scalar if isinstance(scalar, (bool, int, float)) else _BAD


def _text(value: Any) -> str:
    """``str(value)``, or a placeholder for objects whose ``__str__`` fails."""
    try:
        return str(value)
    except Exception:  # noqa: BLE001
        return f"<unprintable {type(value).__name__}>"


def encode_epoch(epoch: Any, rank: Any, eval_accuracy: Any, train_accuracy: Any, grad_explosion_events: Any,
                 lr_backoff_events: Any, max_nan_streak: Any, extra: Mapping[str, Any] | None = None,
                 dropped: list[str] | None = None) -> dict[str, Any]:
    """The ``/epochs`` body; raises ValueError/TypeError on unusable values (caller logs).

    ``extra``: the trainer's further epoch figures, numbers or short sequences of numbers
    (1-D tensors and numpy arrays too). An unusable extra costs only itself: its name is
    appended to ``dropped`` (the caller says it), never the whole summary.
    """
    body: dict[str, Any] = {"epoch": _index(epoch, MAX_INDEX), "rank": _index(rank, MAX_RANK)}
    for name, value in (("eval_accuracy", eval_accuracy), ("train_accuracy", train_accuracy)):
        number = encode_float(value)
        if number is _BAD:
            raise ValueError(f"{name}={value!r} is not a number")
        if number is not None:
            body[name] = number
    for name, value in (("grad_explosion_events", grad_explosion_events),
                        ("lr_backoff_events", lr_backoff_events), ("max_nan_streak", max_nan_streak)):
        if value is not None:
            body[name] = _index(value, MAX_INDEX)
    if extra:
        encoded = encode_epoch_extra(extra, dropped if dropped is not None else [])
        if encoded:
            body["extra"] = encoded
    return body


def encode_epoch_extra(extra: Mapping[str, Any], dropped: list[str]) -> dict[str, Any]:
    """Epoch extras as numbers or lists of numbers (strict JSON); the names of unusable ones go to ``dropped``."""
    out: dict[str, Any] = {}
    for key, value in extra.items():
        name = str(key)
        encoded = _epoch_value(value)
        if encoded is _BAD or not 0 < len(name) <= MAX_NAME or len(out) >= MAX_EPOCH_EXTRA:
            dropped.append(name)
        elif encoded is not None:
            out[name] = encoded
    return out


def _epoch_value(value: Any) -> Any:
    """A number, a list of at most MAX_EPOCH_VECTOR numbers, None, or ``_BAD``."""
    tolist = getattr(value, "tolist", None)
    if callable(tolist) and getattr(value, "ndim", 0) >= 1:  # tensors and numpy arrays
        try:
            value = tolist()
        except Exception:  # noqa: BLE001 - an unreadable array is one bad extra
            return _BAD
    if isinstance(value, (list, tuple)):
        numbers = [encode_float(v) for v in value]
        if len(numbers) > MAX_EPOCH_VECTOR or any(n is _BAD or n is None or isinstance(n, list) for n in numbers):
            return _BAD
        return numbers
    if isinstance(value, (str, bytes, Mapping)):
        return _BAD
    return encode_float(value)


def session_id(session: bool | str) -> str | None:
    """The record ``session``: made here once per client (host, pid, random), given, or none."""
    if session is False or session is None:
        return None
    if isinstance(session, str) and session:
        return session[:100]
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


def run_body(run_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The run's PUT body as strict JSON (a snapshot taken at construction; never raises)."""
    non_finite: list[str] = []
    body = {name: encode_tree(value, non_finite, name) for name, value in fields.items() if value is not None}
    if non_finite:
        logger.warning('monitor client %s: NaN/Infinity in the run config at %s; sent as the strings "NaN", '
                       '"Infinity", "-Infinity" (strict JSON has no such numbers)', run_id,
                       ", ".join(non_finite[:20]))
    return body
