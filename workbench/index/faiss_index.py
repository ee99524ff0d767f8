"""FAISS indexes over the chunk vectors: building one of the three types the corpus offers, and
setting again, after a read, the search settings that FAISS does not keep in the file."""
from __future__ import annotations

from typing import Any

import numpy as np

INDEX_TYPES = ("flat", "hnsw", "ivf")
HNSW_EF_SEARCH = 96


def build_faiss(vectors: np.ndarray, index_type: str = "flat", ids: np.ndarray | None = None) -> Any:
    """A FAISS index over ``vectors`` (ids: ``ids``, else 0..n-1). HNSW for large corpora (fast,
    approximate, no training); IVF needs enough rows to train its lists and is flat below that."""
    import faiss

    dim = vectors.shape[1]
    ids = np.arange(len(vectors), dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
    if index_type == "flat":
        index = faiss.IndexIDMap(faiss.IndexFlatIP(dim))
    elif index_type == "hnsw":
        graph = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = 80
        graph.hnsw.efSearch = HNSW_EF_SEARCH
        index = faiss.IndexIDMap(graph)
    elif index_type == "ivf":
        nlist = max(1, min(4096, int(4 * np.sqrt(len(vectors)))))
        if len(vectors) < 39 * nlist:  # FAISS wants ~39 training points per list
            return build_faiss(vectors, "flat", ids)
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = 64 * nlist  # k-means on every row of a million takes minutes on a few cores
        index.train(vectors if len(vectors) <= sample else
                    vectors[np.random.default_rng(0).choice(len(vectors), sample, replace=False)])
        index.nprobe = ivf_probes(nlist)
        index.parallel_mode = 1  # one query's lists over every core: half the latency on two cores
    else:
        raise ValueError(f"unknown index type {index_type!r}; choose one of {', '.join(INDEX_TYPES)}")
    if len(vectors):
        index.add_with_ids(vectors, ids)
    return index


def tune(index: Any) -> Any:
    """Search settings are not all kept in the file: set them again after a read."""
    import faiss

    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index
    if isinstance(inner, faiss.IndexHNSW):
        inner.hnsw.efSearch = HNSW_EF_SEARCH
    if isinstance(inner, faiss.IndexIVF):
        inner.nprobe = ivf_probes(inner.nlist)
        inner.parallel_mode = 1
    return index


def ivf_probes(nlist: int) -> int:
    """Lists an IVF search visits. A quarter: at a million chunks (4,000 lists) recall@10 against
    an exact search stays at 0.95 or more whether the other chunks are random or shaped like the
    corpus, and a search stays near 35 ms on two cores (``benchmarks/index_scale.py``)."""
    return max(1, nlist // 4)
