"""The three traces recorded from the real SCI-ARC trainer (tests/data/sciarc) as corpus entries.

Labels, from README-traces.txt and the recorded figures: ``healthy`` trains normally;
``lr_blowup`` (lr 5, no clipping) is a failure whose eval pixel accuracy falls at epoch 2
(0.716 -> 0.028); ``uniform_attention`` (DSC temperature 50) has collapsed attention from
epoch 0 (peak ratio ~1.05, entropy_norm ~0.9999) but its tiny tasks do not need attention,
so its accuracy never falls: a failure with onset 0 that no accuracy-based detector can see.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from benchmarks.corpus.trace import CorpusTrace, Label

DATA = Path(__file__).resolve().parents[2] / "tests" / "data" / "sciarc"
# name -> (config file, label, onset epoch, why)
RECORDED: dict[str, tuple[str, Label, int | None, str]] = {
    "healthy": ("tiny_stable.yaml", "healthy", None, "real RLAN tiny run, nothing wrong"),
    "lr_blowup": ("tiny_lr_blowup.yaml", "failure", 2, "lr 5, clip 0: eval pixel accuracy 0.716 -> 0.028 at epoch 2"),
    "uniform_attention": ("tiny_uniform_attention.yaml", "failure", 0,
                          "temperature 50: uniform attention from epoch 0, accuracy unaffected"),
}


def recorded_trace(name: str) -> CorpusTrace:
    """One recorded trace with its YAML config, label and onset."""
    config_file, label, onset, why = RECORDED[name]
    with open(DATA / config_file, encoding="utf-8") as handle:
        config: dict[str, Any] = yaml.safe_load(handle)
    records: list[dict[str, Any]] = []
    summaries: list[dict[str, Any]] = []
    with open(DATA / f"trace_{name}.jsonl", encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            row = json.loads(line)
            if "epoch_summary" in row:
                summaries.append({"rank": 0, **row["epoch_summary"]})
            else:
                records.append(row)
    clean = [float(s["eval_accuracy"]) for s in sorted(summaries, key=lambda s: s["epoch"])]
    epochs = len(clean)
    return CorpusTrace(f"recorded_{name}", f"recorded_{name}", label, onset, config, records, summaries, clean,
                       asked_epochs=epochs, notes=why, tags=("recorded",),
                       meta={"batches_per_epoch": len(records) // max(1, epochs), "ranks": 1, "source": str(DATA)})
