"""The retrieval modes, importable without FAISS or the embedding model (the CLI's defaults)."""

MODES = ("dense", "hybrid")
# Hybrid by default: on the four documentation sets of benchmarks/retrieval.py it ranked the right
# page first as often as dense or more on every one (hit@1 0.72 / 0.70, 0.76 / 0.72, 0.89 / 0.83 and,
# on a French manual, 0.51 / 0.33, hybrid / dense), and FTS5 costs a search a few milliseconds.
DEFAULT_MODE = "hybrid"
