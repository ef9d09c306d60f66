"""The labelled corpus: which traces exist, with what variation, and the fast subset CI runs."""

from __future__ import annotations

from functools import partial
from typing import Any

from benchmarks.corpus import levels
from benchmarks.corpus.recorded import RECORDED, recorded_trace
from benchmarks.corpus.render import Spec, render
from benchmarks.corpus.trace import CorpusTrace

MIXED_GRIDS = ((3, 3), (5, 7), (10, 10), (15, 12), (21, 21), (30, 30))


def _failing(fn: Any, **kw: Any) -> Any:
    """Levels of a failure on collapsing ranks, healthy levels on the others."""
    return lambda config, t, bad: fn(config, t, **kw) if bad else levels.healthy(config, t)


def _healthy(**kw: Any) -> Any:
    return lambda config, t, bad: levels.healthy(config, t, **kw)


def _start(onset: int) -> dict[str, Any]:
    """Escalation starts at 25 as in stable_dev, earlier only when the failure starts before it."""
    return {"start_epoch": min(25, max(2, onset - 15))}


def _seed(name: str, onset: int = 55, speed: float = 1.0, epochs: int = 80, seed: int = 0, **kw: Any) -> Spec:
    fn = _failing(levels.seed_collapse, onset=onset, speed=speed)
    return Spec(f"seed_collapse_{name}", "seed_collapse", "collapse", onset, fn, epochs=epochs, seed=100 + seed,
                config_kw={"max_norm": 3.0, **_start(onset)}, tags=("documented",), **kw)


def _sciarc(name: str, onset: int = 41, speed: float = 1.0, epochs: int = 70, seed: int = 0, **kw: Any) -> Spec:
    fn = _failing(levels.sciarc_collapse, onset=onset, speed=speed)
    return Spec(f"sciarc_collapse_{name}", "sciarc_collapse", "collapse", onset, fn, epochs=epochs, seed=200 + seed,
                config_kw=_start(onset), tags=("documented",), **kw)


def _failure(kind: str, fn: Any, onset: int, seed: int, **kw: Any) -> Spec:
    return Spec(kind, kind.rsplit("_", 1)[0] if kind.endswith("_grid4") else kind, "failure", onset,
                _failing(fn, onset=onset), epochs=kw.pop("epochs", 70), seed=300 + seed,
                config_kw=_start(onset), **kw)


def _ok(name: str, seed: int, fn: Any = None, **kw: Any) -> Spec:
    return Spec(f"healthy_{name}", f"healthy_{name}", "healthy", None, fn or _healthy(), seed=400 + seed, **kw)


SPECS: tuple[Spec, ...] = (
    _seed("base"), _seed("onset40", onset=40, seed=1), _seed("onset70", onset=70, epochs=100, seed=2),
    _seed("fast", speed=2.0, seed=3), _seed("slow", speed=0.6, seed=4), _seed("noisy", noise=3.0, seed=5),
    _seed("grid10", grids=((10, 10),), seed=6), _seed("grid_mixed", grids=MIXED_GRIDS, seed=7),
    _seed("batches8", batches=8, seed=8), _seed("batches60", batches=60, seed=9),
    _seed("rank4_one", ranks=4, bad_ranks=(2,), batches=10, seed=10),
    _sciarc("base"), _sciarc("onset30", onset=30, epochs=60, seed=1), _sciarc("onset55", onset=55, epochs=85, seed=2),
    _sciarc("fast", speed=1.5, seed=3), _sciarc("slow", speed=0.7, epochs=90, seed=4),
    _sciarc("noisy", noise=3.0, seed=5), _sciarc("grid5", grids=((5, 5),), seed=6),
    _sciarc("grid_mixed", grids=MIXED_GRIDS, seed=7), _sciarc("batches10", batches=10, seed=8),
    _sciarc("rank2_one", ranks=2, bad_ranks=(1,), batches=10, seed=9),
    _failure("lr_blowup", levels.lr_blowup, 40, 0),
    _failure("lr_blowup_grid4", levels.lr_blowup, 30, 1, grids=((4, 4),), batches=10),
    _failure("nan_bursts", levels.nan_bursts, 45, 2),
    _failure("stop_saturation", levels.stop_saturation, 45, 3),
    Spec("stale_reporter", "stale_reporter", "failure", 40, _healthy(), epochs=70, seed=304, stop_after=40,
         config_kw=_start(40), notes="records and summaries stop at epoch 40; the trainer keeps asking the gate"),
    _ok("ramp", 0, notes="designed delta-scale ramp 0.005 -> 0.05 -> 0.2, LoRA norms proportional"),
    _ok("ramp_grid10", 1, grids=((10, 10),)), _ok("ramp_grid3", 2, grids=((3, 3),)),
    _ok("ramp_grid_mixed", 3, grids=MIXED_GRIDS),
    _ok("lr_warmup", 4, fn=_healthy(lr_warmup_epochs=5)),
    _ok("noisy_eval", 5, eval_size=40, notes="eval on a small eval set: +-7 points of noise"),
    _ok("loss_spikes", 6, loss_spikes=0.01, notes="1 % of batches: loss x6, grad x3, recovering at once"),
    _ok("nan_skips", 7, nan_skips=0.01, notes="isolated NaN-skipped batches, streak 1 (gate allows 3)"),
    _ok("low_stop_var", 8, fn=_healthy(stop_var_end=0.03), notes="stop bias -1, std 0.1: variance ~0.01-0.03"),
    _ok("rank4", 9, ranks=4, batches=10), _ok("long", 10, epochs=120, batches=10),
)
RECORDED_NAMES = tuple(f"recorded_{name}" for name in RECORDED)
FAST_SUBSET: tuple[str, ...] = (
    "seed_collapse_batches8", "sciarc_collapse_batches10", "lr_blowup_grid4", "stale_reporter",
    "healthy_long", "healthy_rank4", *RECORDED_NAMES,
)


def names() -> list[str]:
    """Every trace name, generated ones first."""
    return [spec.name for spec in SPECS] + list(RECORDED_NAMES)


def build(name: str) -> CorpusTrace:
    """One trace by name (generated deterministically, or loaded from the recordings)."""
    if name.startswith("recorded_"):
        return recorded_trace(name.removeprefix("recorded_"))
    for spec in SPECS:
        if spec.name == name:
            return render(spec)
    raise KeyError(name)


def corpus(subset: str | None = None) -> list[CorpusTrace]:
    """All traces, or the ``fast`` subset."""
    chosen = names() if subset is None else list(FAST_SUBSET) if subset == "fast" else None
    if chosen is None:
        raise ValueError(f"unknown subset {subset!r} (known: fast)")
    return [build(name) for name in chosen]
