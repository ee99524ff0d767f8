"""The vector index: embeddings, FAISS files and retrieval (dense, or hybrid with BM25)."""
