"""Health rules over RLAN training diagnostics: pure functions, no I/O.

Readings go through :class:`RuleEngine` (per-(rule, rank) states, ok -> pending ->
firing -> ok), :func:`decide` folds the states into the trainer's answer, and
:func:`backtest` replays a recorded run under other thresholds.
"""

from monitor.rules.backtest import BacktestResult, PausePoint, backtest
from monitor.rules.decision import Decision, decide
from monitor.rules.engine import RULES, RULES_BY_NAME, RuleEngine, state_for
from monitor.rules.state_machine import Observation, Rule, Span, advance
from monitor.rules.thresholds import DEFAULT_SEVERITY, RULE_NAMES, Thresholds
from monitor.rules.types import BatchReading, EpochReading, RuleState, RuleTransition

__all__ = [
    "DEFAULT_SEVERITY",
    "RULES",
    "RULES_BY_NAME",
    "RULE_NAMES",
    "BacktestResult",
    "BatchReading",
    "Decision",
    "EpochReading",
    "Observation",
    "PausePoint",
    "Rule",
    "RuleEngine",
    "RuleState",
    "RuleTransition",
    "Span",
    "Thresholds",
    "advance",
    "backtest",
    "decide",
    "state_for",
]
