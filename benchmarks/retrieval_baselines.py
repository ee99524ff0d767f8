"""The two baselines of ``benchmarks/retrieval.py``, built from the same libraries as the
workbench: a plain script (the pages' text, 200-word chunks, the same embedding model, a FAISS
flat index) and a TF-IDF ranking of whole pages."""
from __future__ import annotations

import time
from pathlib import Path

PLAIN_WORDS = 200
DEPTH = 10  # ranks looked at, for every pipeline


def page_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in (".html", ".pdf"))


def page_words(page: Path) -> list[str]:
    """The words a user's script gets from a page: BeautifulSoup's ``get_text``, pypdf's text."""
    if page.suffix == ".pdf":
        from pypdf import PdfReader

        return " ".join(p.extract_text() or "" for p in PdfReader(page).pages).split()
    from bs4 import BeautifulSoup

    return BeautifulSoup(page.read_text(encoding="utf-8", errors="replace"), "html.parser").get_text(" ").split()


def plain_pipeline(folder: Path, questions: list[dict], model, pages_words: dict[str, list[str]]) -> dict:
    """Strip the tags, 200-word chunks, MiniLM, FAISS flat: what a user writes in twenty lines."""
    import faiss

    texts, pages = [], []
    for name, words in pages_words.items():
        for start in range(0, len(words), PLAIN_WORDS):
            texts.append(" ".join(words[start:start + PLAIN_WORDS]))
            pages.append(name)
    started = time.perf_counter()
    vectors = model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    embed_s = time.perf_counter() - started
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    query_vectors = model.encode([q["question"] for q in questions], normalize_embeddings=True, convert_to_numpy=True)
    _, rows = index.search(query_vectors, DEPTH)
    ranked = [[pages[r] for r in row if r >= 0] for row in rows]
    return {"chunks": len(texts), "short": sum(len(t) < 200 for t in texts) / len(texts),
            "embed_s": round(embed_s, 1), "ranked": ranked}


def tfidf_pages(questions: list[dict], pages_words: dict[str, list[str]]) -> list[list[str]]:
    """A TF-IDF ranking of whole pages (lower-cased words, log-scaled counts, cosine): the
    lexical baseline a search engine of the nineties gives."""
    import math
    import re
    from collections import Counter

    def words(text: str) -> list[str]:
        return re.findall(r"[^\W_]+", text.lower())

    names = list(pages_words)
    counts = [Counter(words(" ".join(pages_words[n]))) for n in names]
    df = Counter(w for c in counts for w in c)
    idf = {w: math.log(len(names) / n) for w, n in df.items()}

    def vector(counter: Counter) -> dict[str, float]:
        v = {w: (1 + math.log(n)) * idf.get(w, 0.0) for w, n in counter.items()}
        norm = math.sqrt(sum(x * x for x in v.values())) or 1.0
        return {w: x / norm for w, x in v.items()}

    page_vectors = [vector(c) for c in counts]
    ranked = []
    for q in questions:
        qv = vector(Counter(words(q["question"])))
        scores = [sum(x * pv.get(w, 0.0) for w, x in qv.items()) for pv in page_vectors]
        ranked.append([names[i] for i in sorted(range(len(names)), key=lambda i: -scores[i])[:DEPTH]])
    return ranked
