"""Small operator CLI for the trainer side.

    python -m trainer_client decision --url URL --token T --run-id ID
    python -m trainer_client replay   --url URL --token T --run-id ID [--spill-dir DIR]
    python -m trainer_client demo ...            (same as python -m trainer_client.demo)

``replay`` delivers what a crashed, never-resumed trainer left in its spill directory.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import asdict

from trainer_client.client import MonitorClient
from trainer_client.gate import EscalationGate


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=os.environ.get("MONITOR_URL", "http://127.0.0.1:8765"))
    parser.add_argument("--token", default=os.environ.get("MONITOR_TOKEN", ""))
    parser.add_argument("--run-id", required=True)


def cmd_decision(args: argparse.Namespace) -> int:
    """Print the gate's answer as JSON; exit 0 on continue, 3 on pause."""
    with EscalationGate(args.url, args.token, args.run_id, timeout=args.timeout) as gate:
        decision = gate.decision(refresh=True)
    print(json.dumps(asdict(decision), indent=2, default=str))
    return 0 if decision.escalate else 3


def cmd_replay(args: argparse.Namespace) -> int:
    """Adopt and deliver the spill of ``run_id``; exit 1 if anything is still pending at the timeout."""
    client = MonitorClient(args.url, args.token, args.run_id, spill_dir=args.spill_dir)
    deadline = time.monotonic() + args.timeout
    time.sleep(0.2)  # let the sender adopt the files
    while client.stats()["spill_pending"] and time.monotonic() < deadline:
        time.sleep(0.2)
    client.close()
    stats = client.stats()
    print(f"replayed {stats['replayed']} record(s); still pending: {stats['spill_pending']}")
    return 1 if stats["spill_pending"] else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["demo"]:
        from trainer_client.demo import main as demo_main  # torch only when the demo is asked for

        return demo_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m trainer_client", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    decision = sub.add_parser("decision", help="ask whether meta-escalation may continue")
    _common(decision)
    decision.add_argument("--timeout", type=float, default=5.0)
    decision.set_defaults(func=cmd_decision)
    replay = sub.add_parser("replay", help="deliver a run's spilled records")
    _common(replay)
    replay.add_argument("--spill-dir", default=None)
    replay.add_argument("--timeout", type=float, default=60.0)
    replay.set_defaults(func=cmd_replay)
    sub.add_parser("demo", help="run the demo trainer (see python -m trainer_client.demo --help)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
