"""The results table (stdout) and the JSON file: what a reader compares across runs."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks.common import REPO_ROOT, Result

HEADERS = ("benchmark", "metric", "ours", "peer", "peer value", "x better", "goal", "pass")


def fmt(value: float | None, unit: str = "") -> str:
    """Three significant figures, thousands separators for big numbers; '-' when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".rstrip()


def table_rows(results: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """One tuple of cells per row of ``Result.to_dict()``s (errors get a row of their own)."""
    rows: list[tuple[str, ...]] = []
    for result in results:
        if result["error"]:
            rows.append((result["name"], f"ERROR: {result['error'][:60]}", "", "", "", "", "", "FAIL"))
        for row in result["rows"]:
            passed = {True: "pass", False: "FAIL", None: "-"}[row["passed"]]
            ratio = fmt(row["ratio"], "x") if row["ratio"] else "-"
            rows.append((result["name"], row["metric"], fmt(row["ours"], row["unit"]), row["peer_name"] or "-",
                         fmt(row["peer"], row["unit"]), ratio, row["goal"] or "-", passed))
    return rows


def render_table(results: list[dict[str, Any]]) -> str:
    """A fixed-width text table."""
    rows = [HEADERS, *table_rows(results)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADERS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_markdown(results: list[dict[str, Any]]) -> str:
    """The same table in Markdown, for the README."""
    out = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    out += ["| " + " | ".join(cell.replace("|", "/") for cell in r) + " |" for r in table_rows(results)]
    return "\n".join(out)


def _git_commit() -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=10, check=False)
        return done.stdout.strip() or None
    except OSError:
        return None


def machine() -> dict[str, Any]:
    """Where the figures were taken (they mean nothing without it)."""
    model = ""
    try:
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "")
    except OSError:
        pass
    return {"host": platform.node(), "cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "platform": platform.platform(), "load_average_at_start": os.getloadavg()}


def write_json(path: Path, results: list[Result], meta: dict[str, Any]) -> None:
    """Write atomically (temp file + rename) so a killed run never leaves half a file."""
    body = {"meta": {**meta, "git_commit": _git_commit(), "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                     "load_average_at_end": os.getloadavg()},
            "benchmarks": {r.name: r.to_dict() for r in results}}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(body, indent=1, default=str) + "\n")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.report results.json [--markdown]``: re-print a saved run's table."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=main.__doc__)
    parser.add_argument("path", type=Path)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    body = json.loads(args.path.read_text())
    results = list(body["benchmarks"].values())
    print(render_markdown(results) if args.markdown else render_table(results))
    for result in results:
        for note in result["notes"]:
            print(f"\nnote [{result['name']}]: {note}" if args.markdown else f"note [{result['name']}]: {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
