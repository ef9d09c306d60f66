"""A labelled corpus of training runs for measuring detection quality (issue 19)."""

from benchmarks.corpus.catalog import FAST_SUBSET, SPECS, build, corpus, names
from benchmarks.corpus.trace import DROP_POINTS, CorpusTrace

__all__ = ["DROP_POINTS", "FAST_SUBSET", "SPECS", "CorpusTrace", "build", "corpus", "names"]
