"""TensorBoard side: cost of one batch's 8 ``SummaryWriter.add_scalar`` calls, and event-file bytes.

Uses tensorboardX's SummaryWriter (the code torch.utils.tensorboard was copied from; same
event-file writer with a background thread), so the peers venv needs no torch.
"""

from __future__ import annotations

import argparse
import json
import random
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.stats import summarise_ns

TAGS = ("loss", "accuracy", "grad_norm", "lora_norm_mean", "lora_norm_max", "stop_logit_var",
        "attention_entropy", "logit_max")


def count_records(logdir: Path) -> tuple[int, int]:
    """Records and bytes in the TFRecord event files (length, crc, data, crc per record)."""
    records = size = 0
    for path in logdir.rglob("events.out.tfevents.*"):
        data = path.read_bytes()
        size += len(data)
        offset = 0
        while offset + 12 <= len(data):
            (length,) = struct.unpack_from("<Q", data, offset)
            offset += 12 + length + 4
            records += 1
    return records, size


def log_call(n: int, warmup: int = 1000) -> dict[str, Any]:
    """perf_counter_ns around each batch's 8 add_scalar calls; then verify what reached disk."""
    import tensorboardX

    rng = random.Random(0)
    values = [[rng.random() + i for i in range(len(TAGS))] for _ in range(n + warmup)]
    with tempfile.TemporaryDirectory(prefix="bench-tb-") as tmp:
        writer = tensorboardX.SummaryWriter(tmp)
        add, clock, samples = writer.add_scalar, time.perf_counter_ns, []
        for step in range(warmup):
            for tag, value in zip(TAGS, values[step]):
                add(tag, value, step)
        for step in range(warmup, warmup + n):
            row = values[step]
            t0 = clock()
            for tag, value in zip(TAGS, row):
                add(tag, value, step)
            samples.append(clock() - t0)
        start = time.perf_counter()
        writer.close()
        close_s = time.perf_counter() - start
        records, size = count_records(Path(tmp))
    readings = (n + warmup) * len(TAGS)
    return {"tensorboard": {**summarise_ns(samples), "close_s": close_s, "records_on_disk": records,
                            "readings_written": readings, "event_bytes": size,
                            "bytes_per_million_readings": size / readings * 1e6},
            "tensorboardX_version": tensorboardX.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=["log-call"])
    parser.add_argument("--n", type=int, default=100_000)
    args = parser.parse_args()
    print(f"[tensorboard] add_scalar x8: {args.n} batches", file=sys.stderr, flush=True)
    print(json.dumps(log_call(args.n)))


if __name__ == "__main__":
    main()
