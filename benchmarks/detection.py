"""Detection quality (issue 19): the labelled corpus through the REAL service, and reference detectors.

    python -m benchmarks.detection [--subset fast] [--json PATH]

Each trace is sent over HTTP exactly as a trainer would: PUT the run with the trainer's YAML,
then per epoch E: ask ``GET /escalation/decision?run_id=X&epoch=E`` (the question at the start
of E), POST E's batch records, POST E's epoch summaries. Only the HTTP API is used, so the
harness measures whatever rules engine the service runs. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import secrets
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.corpus import CorpusTrace, corpus
from benchmarks.detection_refs import reference_detectors, verdicts
from benchmarks.detection_score import (EpochAnswer, TraceScore, comparison_table, rows_as_dicts, score_trace,
                                        summarize, trace_table)
from benchmarks.service import running_service, scratch_database
from tests.support.service import LiveService

OURS = "monitor (this service)"
CHUNK = 500  # records per POST: a trainer client batches like this


def _answer(epoch: int, body: dict[str, Any]) -> EpochAnswer:
    firing = [r for r in (body.get("reasons") or []) + (body.get("warnings") or [])]
    rules = tuple(sorted({str(r.get("rule")) for r in firing}))
    pausing = tuple(sorted({str(r.get("rule")) for r in body.get("reasons") or []}))
    return EpochAnswer(epoch, body.get("decision") == "pause", rules,
                       any(r.get("severity") == "pause" for r in firing), pausing)


def _post(service: LiveService, path: str, body: dict[str, Any]) -> None:
    """POST with NaN as the bare token (httpx's ``json=`` refuses NaN; NaN readings are data here)."""
    response = service.client.post(path, content=json.dumps(body), headers={"Content-Type": "application/json"})
    response.raise_for_status()


def drive(service: LiveService, trace: CorpusTrace, run_id: str) -> list[EpochAnswer]:
    """Replay ``trace`` through the service; the decision answers for epochs 0..asked_epochs."""
    http = service.client
    response = http.put(f"/api/v1/runs/{run_id}", json={
        "name": trace.name, "project": "detection-corpus", "config": trace.config,
        "escalation_start_epoch": trace.escalation_start_epoch})
    response.raise_for_status()
    by_epoch: dict[int, list[dict[str, Any]]] = {}
    for record in trace.records:
        by_epoch.setdefault(record["epoch"], []).append(record)
    answers = []
    for epoch in range(trace.asked_epochs + 1):
        decision = http.get("/escalation/decision", params={"run_id": run_id, "epoch": epoch})
        decision.raise_for_status()
        answers.append(_answer(epoch, decision.json()))
        records = by_epoch.get(epoch, [])
        for first in range(0, len(records), CHUNK):
            _post(service, f"/api/v1/runs/{run_id}/diagnostics", {"records": records[first:first + CHUNK]})
        for summary in trace.summaries_of(epoch):
            _post(service, f"/api/v1/runs/{run_id}/epochs", summary)
    return answers


def measure(traces: list[CorpusTrace], service: LiveService) -> list[TraceScore]:
    """Our service's score on every trace (one fresh run id each)."""
    scores = []
    for index, trace in enumerate(traces, 1):
        print(f"trace {index}/{len(traces)}: {trace.name} ({len(trace.records)} records)", file=sys.stderr, flush=True)
        answers = drive(service, trace, f"corpus-{trace.name}-{secrets.token_hex(3)}")
        scores.append(score_trace(trace, answers))
    return scores


def reference_scores(traces: list[CorpusTrace]) -> dict[str, list[TraceScore]]:
    """Each reference detector's score on every trace (offline, no service)."""
    out: dict[str, list[TraceScore]] = {}
    for detector in reference_detectors():
        rows = []
        for trace in traces:
            flags = verdicts(detector, trace)
            rows.append(score_trace(trace, [EpochAnswer(e, flag, (), flag, (detector.name,))
                                            for e, flag in enumerate(flags)]))
        out[detector.name] = rows
    return out


def run(subset: str | None, workdir: Path) -> dict[str, Any]:
    """Generate the corpus, score the service and the references; the whole result as JSON-able dict."""
    traces = corpus(subset)
    with scratch_database("sqlite", workdir) as url, running_service(url, workdir) as service:
        ours = measure(traces, service)
    refs = reference_scores(traces)
    summaries = {OURS: summarize(ours), **{name: summarize(rows) for name, rows in refs.items()}}
    return {"subset": subset or "full", "traces": len(traces), **summaries[OURS],
            "detectors": summaries, "per_trace": rows_as_dicts(ours),
            "per_trace_references": {name: rows_as_dicts(rows) for name, rows in refs.items()},
            "tables": {"traces": trace_table(ours), "comparison": comparison_table(summaries)}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", choices=["fast"], default=None, help="the CI subset (default: whole corpus)")
    parser.add_argument("--json", type=Path, default=None, help="write the result here")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind, so the service child is stopped too
    with tempfile.TemporaryDirectory(prefix="detection-") as tmp:
        result = run(args.subset, Path(tmp))
    print(result["tables"]["traces"])
    print()
    print(result["tables"]["comparison"])
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
