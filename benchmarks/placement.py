"""Where the decision benchmark's processes may run: the service on some CPUs, clients on the rest.

On the 2-core dev box everything shares both cores, so the load generators and the probe
(stand-ins for trainers on other hosts) steal CPU from the service they measure. On a
bigger host, ``--service-cpus 0,1`` pins the service to two cores (the dev box's size) and
keeps every client off them: what a deployment with trainers on their own machines sees.
``--client-cpus`` narrows the clients further (to keep a PostgreSQL server's cores free).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass


def parse_cpus(text: str) -> frozenset[int]:
    """``"0,1"`` or ``"0-3,8"`` as a set of CPU numbers; must be CPUs this process may use."""
    cpus: set[int] = set()
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        low, _, high = part.partition("-")
        try:
            cpus.update(range(int(low), int(high or low) + 1))
        except ValueError:
            raise ValueError(f"not a CPU list: {text!r} (use e.g. 0,1 or 0-3)") from None
    usable = os.sched_getaffinity(0)
    if not cpus or not cpus <= usable:
        raise ValueError(f"CPUs {sorted(cpus)} are not all among the usable {sorted(usable)}")
    return frozenset(cpus)


@dataclass(frozen=True)
class Placement:
    """CPU sets for the service and for the clients (None: anywhere), and how many load processes."""

    service_cpus: frozenset[int] | None = None
    load_processes: int = 2
    only_client_cpus: frozenset[int] | None = None

    @property
    def client_cpus(self) -> frozenset[int] | None:
        """The CPUs given for clients, else every usable CPU the service does not get."""
        if self.only_client_cpus is not None:
            if self.service_cpus and self.only_client_cpus & self.service_cpus:
                raise ValueError("client and service CPUs overlap")
            return self.only_client_cpus
        if self.service_cpus is None:
            return None
        rest = frozenset(os.sched_getaffinity(0)) - self.service_cpus
        if not rest:
            raise ValueError("no CPU left for the clients: give the service fewer")
        return rest

    def describe(self) -> dict[str, object]:
        """For the results JSON."""
        clients = self.client_cpus
        return {"service_cpus": sorted(self.service_cpus) if self.service_cpus else "any",
                "client_cpus": sorted(clients) if clients else "any", "load_processes": self.load_processes}


def pinned_to(cpus: frozenset[int] | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that pins a child process (and what it forks later) to ``cpus``."""
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)
