"""``python -m monitor report``: one self-contained HTML file with charts, limits, spans, decisions."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from monitor.floats import encode_tree
from monitor.scenarios.traces import collapse_run
from tests.support.service import REPO_ROOT, LiveService

RUN_ID = "report-run"


def run_report(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitor", "report", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)


def test_report_is_self_contained(sqlite_service: LiveService, tmp_path: Path) -> None:
    trace = collapse_run(epochs=60, steps_per_epoch=25)
    client = sqlite_service.client
    assert client.put(f"/api/v1/runs/{RUN_ID}", json={"name": "Report <demo>", "config": trace.config}).is_success
    for start in range(0, len(trace.batches), 500):
        body = {"records": encode_tree(trace.batches[start:start + 500])}
        assert client.post(f"/api/v1/runs/{RUN_ID}/diagnostics", json=body).status_code == 200

    output = tmp_path / "report.html"
    done = run_report(RUN_ID, "-o", str(output), "--database-url", sqlite_service.database_url)
    assert done.returncode == 0, done.stderr
    assert "reading" in done.stderr and "wrote" in done.stderr and done.stdout == ""

    html = output.read_text()
    assert not re.search(r"""<(script|link|img|iframe)[^>]+(src|href)=["']?(https?:)?//""", html, re.I)
    assert "<script src=" not in html and 'rel="stylesheet"' not in html
    assert "plotly.js v" in html  # the library itself, inlined
    assert RUN_ID in html and "Report &lt;demo&gt;" in html and "Report <demo>" not in html
    state = json.loads(re.search(r'<script type="application/json" id="dashboard-state">(.*?)</script>',
                                 html, re.S).group(1))
    assert state["live"] is False and state["run_id"] == RUN_ID
    attention = state["figures"]["attention_max"]
    assert len(attention["data"][0]["x"]) > 1000
    names = [shape["name"] for shape in attention["layout"]["shapes"]]
    assert "threshold:attention_collapse_threshold" in names and "span:attention_collapse:0" in names
    assert "attention_collapse" in html and "Effective thresholds" in html and "Decision timeline" in html
    # The rules table (issue 17/18): each threshold with the trainer key it came from, or default.
    assert "hyper_lora.lora_max_norm" in html and "(default)" in html and "Defaults in force" in html


def test_report_unknown_run_fails_cleanly(sqlite_service: LiveService, tmp_path: Path) -> None:
    done = run_report("missing-run", "-o", str(tmp_path / "r.html"), "--database-url", sqlite_service.database_url)
    assert done.returncode == 1
    assert "missing-run" in done.stderr and "not found" in done.stderr
    assert not (tmp_path / "r.html").exists()
