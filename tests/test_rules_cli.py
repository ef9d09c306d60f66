"""``python -m monitor rules check|test``: promtool-like tools for rules files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from monitor.rules.testing import expand

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data" / "rules"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "monitor", "rules", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize(("text", "values"), [
    ("1+0.5x4", [1.0, 1.5, 2.0, 2.5, 3.0]),
    ("3-1x2", [3.0, 2.0, 1.0]),
    ("0.1x2 _ 7", [0.1, 0.1, 0.1, None, 7.0]),
    ("_x3 NaN", [None, None, None, "nan"]),
])
def test_series_expansion(text: str, values: list) -> None:
    got = expand(text)
    assert [("nan" if v is not None and v != v else v) for v in got] == pytest.approx(values)


def test_check_accepts_the_shipped_and_example_files() -> None:
    done = cli("check", "monitor/rules/default_rules.yaml", str(DATA / "my_rules.yaml"))
    assert done.returncode == 0, done.stderr
    assert "default_rules.yaml: SUCCESS: 13 rules (1 disabled)" in done.stdout


def test_check_names_every_bad_field_by_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - {name: a, reading: loss, above: high}\n  - {name: b, reading: nope, below: 1}\n"
                   "  - {name: c, reading: loss, above: {param: missing}}\n")
    done = cli("check", str(bad))
    assert done.returncode == 1
    for path in ("rules.0.above", "rules.1.reading", "rules.2.above.param"):
        assert f"{bad}: {path}:" in done.stderr
    assert "high" not in done.stderr.replace(str(bad), "")


def test_test_runs_the_example_tests() -> None:
    done = cli("test", str(DATA / "my_rules_test.yaml"), str(DATA / "shipped_rules_test.yaml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("PASS") == 6 and "FAIL" not in done.stdout


def test_test_reports_a_failing_expectation(tmp_path: Path) -> None:
    test = tmp_path / "t.yaml"
    test.write_text("tests:\n  - name: wrong\n    input_series: [{series: epoch.max_nan_streak, values: '9'}]\n"
                    "    expected: [{rule: nan_streak, at_epoch: 0, status: ok}]\n")
    done = cli("test", str(test))
    assert done.returncode == 1
    assert "FAIL: wrong" in done.stdout and "expected ok, got firing" in done.stdout
