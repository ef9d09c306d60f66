"""``python -m monitor rules check FILE`` and ``rules test FILE`` (like promtool's check/test rules)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``rules`` subcommand with ``check`` and ``test``."""
    parser = sub.add_parser("rules", help="validate rules files and run rule unit tests")
    rules_sub = parser.add_subparsers(dest="rules_command", required=True)
    check = rules_sub.add_parser("check", help="validate rules files; every bad field is named by its path")
    check.add_argument("files", nargs="+", type=Path)
    check.add_argument("--config", type=Path, help="a trainer YAML to resolve params from")
    check.set_defaults(handler=run_check)
    test = rules_sub.add_parser("test", help="run rule unit tests (input series and expected states)")
    test.add_argument("files", nargs="+", type=Path)
    test.set_defaults(handler=run_test)


def _errors(path: Path, exc: Exception) -> list[str]:
    from monitor.rules.errors import RuleError

    if isinstance(exc, RuleError):
        return [f"{path}: {'.'.join(str(p) for p in e['loc']) or '(file)'}: {e['msg']}" for e in exc.errors]
    return [f"{path}: {exc}"]


def run_check(args: argparse.Namespace) -> int:
    """Validate and compile each file's rules; exit 1 if any is bad."""
    from monitor.rules.errors import RuleError
    from monitor.rules.ruleset import load_rules_text
    from monitor.rules.testing import ruleset_for_files

    config = (yaml.safe_load(args.config.read_text()) or {}) if args.config else {}
    failed = False
    for path in args.files:
        try:
            own = load_rules_text(path.read_text())
            ruleset = ruleset_for_files([path], config)
        except (RuleError, OSError) as exc:
            failed = True
            print("\n".join(_errors(path, exc)), file=sys.stderr)
            continue
        disabled = len(own.rules) - len(ruleset.rules)
        print(f"{path}: SUCCESS: {len(ruleset.rules)} rules ({disabled} disabled), {len(own.params)} own params")
    return 1 if failed else 0


def run_test(args: argparse.Namespace) -> int:
    """Run each test file; print PASS/FAIL per test; exit 1 if any failed or a file is bad."""
    from monitor.rules.errors import RuleError
    from monitor.rules.testing import run_file

    failed = False
    for path in args.files:
        try:
            outcomes = run_file(path)
        except (RuleError, OSError) as exc:
            failed = True
            print("\n".join(_errors(path, exc)), file=sys.stderr)
            continue
        for outcome in outcomes:
            print(f"{path}: {'FAIL' if outcome.failures else 'PASS'}: {outcome.name}")
            for failure in outcome.failures:
                print(f"    {failure}")
            failed = failed or bool(outcome.failures)
    return 1 if failed else 0
