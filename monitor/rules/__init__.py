"""Health rules over RLAN training diagnostics, as data: a rules file, compiled; no I/O.

The shipped checklist is ``default_rules.yaml``; :meth:`RuleSet.from_run_config` merges a
run's ``monitor:`` section over it and resolves thresholds from the trainer's YAML.
Readings go through :class:`RuleEngine` (per-(rule, rank) states, ok -> pending ->
firing -> ok), :func:`decide` folds the states into the trainer's answer, and
:func:`backtest` replays a recorded run under other rules.
"""

from monitor.rules.backtest import BacktestResult, PausePoint, backtest
from monitor.rules.decision import Decision, decide
from monitor.rules.engine import RuleEngine, state_for
from monitor.rules.errors import RuleError
from monitor.rules.ruleset import RuleSet
from monitor.rules.state_machine import Observation, Span, advance
from monitor.rules.types import BatchReading, EpochReading, RuleState, RuleTransition

__all__ = [
    "BacktestResult",
    "BatchReading",
    "Decision",
    "EpochReading",
    "Observation",
    "PausePoint",
    "RuleEngine",
    "RuleError",
    "RuleSet",
    "RuleState",
    "RuleTransition",
    "Span",
    "advance",
    "backtest",
    "decide",
    "state_for",
]
