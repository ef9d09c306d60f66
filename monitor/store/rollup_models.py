"""Series rollups: per-bucket extremes of each reading, kept up to date at ingestion.

Charts of long runs are drawn from these instead of from every row: a bucket of
``width`` consecutive steps keeps the finite minimum and maximum *with the step where
they happened*, so a min-max downsampler fed from buckets keeps every spike. Non-finite
readings cannot be min/max'ed, so each bucket counts them and remembers the first one.
One row per (run, width, metric, rank, bucket); the unique index is also the read path
(width before metric: the coarse rows of a run, which list its ranks and metrics, sit together).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Double, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from monitor.store.models import Base, BigId


class SeriesRollup(Base):
    """Extremes of one reading of one rank over steps [bucket*width, (bucket+1)*width)."""

    __tablename__ = "series_rollups"
    __table_args__ = (UniqueConstraint("run_id", "width", "metric", "rank", "bucket"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id", ondelete="CASCADE"))
    metric: Mapped[str] = mapped_column(String(120))
    width: Mapped[int] = mapped_column(Integer)
    rank: Mapped[int] = mapped_column(Integer, default=0)
    bucket: Mapped[int] = mapped_column(BigInteger)
    count: Mapped[int] = mapped_column(Integer, default=0)
    min_value: Mapped[float | None] = mapped_column(Double, nullable=True)
    min_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    max_value: Mapped[float | None] = mapped_column(Double, nullable=True)
    max_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    nonfinite_count: Mapped[int] = mapped_column(Integer, default=0)
    nonfinite_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    nonfinite_value: Mapped[str | None] = mapped_column(String(16), nullable=True)
