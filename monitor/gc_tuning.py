"""Garbage-collector settings for a service that allocates in bursts (ingest bodies).

With CPython's defaults, parsing 500-record bodies back to back promotes many short-lived
objects into the oldest generation, and its full collections then walk every object the
process holds, with the GIL held: measured under the decision benchmark (16 runs ingesting
flat out, 20 s), 17 full collections of 100-130 ms each, which froze every request and set
the decision latency's maximum to 145 ms. Freezing what start-up allocated (imports, app,
schemas) takes those objects out of every later collection, and a larger first-generation
threshold stops request-scoped objects from being promoted: after both, no collection took
over 5 ms in the same run, and the maximum fell to 21 ms.
"""

from __future__ import annotations

import gc


def tune_gc(gen0_threshold: int) -> None:
    """Collect once, freeze the survivors (start-up objects), and set the first generation's threshold."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)
