"""Extra CLI subcommands, one module each, each exposing ``register(subparsers)``."""

COMMAND_MODULES = ("monitor.commands.backtest", "monitor.commands.report", "monitor.commands.retention",
                   "monitor.commands.rules")
