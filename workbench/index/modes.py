"""The retrieval modes, importable without FAISS or the embedding model (the CLI's defaults)."""

MODES = ("dense", "hybrid")
# Hybrid by default: on the five documentation sets of benchmarks/retrieval.py it ranked the right
# page first more often than dense on every one (hit@1 0.72 / 0.70, 0.80 / 0.72, 0.90 / 0.83, 0.90 /
# 0.84 and, on a French manual, 0.53 / 0.33, hybrid / dense), and FTS5 costs a search a few
# milliseconds.
DEFAULT_MODE = "hybrid"
