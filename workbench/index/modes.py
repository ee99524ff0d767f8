"""The retrieval modes, importable without FAISS or the embedding model (the CLI's defaults)."""

MODES = ("dense", "hybrid")
# Hybrid by default: it ranked the right page first as often as dense or more on both real
# documentation sets (benchmarks/retrieval.py: hit@1 0.70 / 0.70 and 0.76 / 0.72, MRR 0.800 / 0.782
# and 0.849 / 0.798, hybrid / dense), and FTS5 costs a search a few milliseconds, nothing to build.
DEFAULT_MODE = "hybrid"
