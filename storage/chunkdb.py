"""The corpus's chunk store, ``data/corpus.db`` (SQLite in WAL mode): the source of truth for
what is indexed. One row per chunk (its FAISS id, document, source, page, section, text and
vector), the indexed documents, an FTS5 table for the sparse side of hybrid search, the ids
deleted since the FAISS snapshot was written (tombstones) and the index settings.

Adding or deleting a document writes that document's rows only. Readers never wait: WAL gives
each read transaction the last commit, and every write transaction bumps ``generation`` so a
process holding the index in memory knows when to read what changed. Writers are serialised
by the corpus lock of ``storage.documents`` (SQLite's own lock is the backstop).
"""
from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any, Iterator

from storage.atomic import open_to_umask

CHUNK_FIELDS = ("chunk_id", "doc_id", "source", "title", "page", "section", "position", "tokens", "text")

SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    doc_id TEXT PRIMARY KEY, source TEXT NOT NULL, file TEXT, sha256 TEXT, chunks INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT, chunk_id TEXT NOT NULL UNIQUE, doc_id TEXT NOT NULL,
    source TEXT NOT NULL, title TEXT, page INTEGER, section TEXT, position INTEGER, tokens INTEGER,
    text TEXT NOT NULL, vector BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_by_document ON chunks (doc_id);
CREATE VIRTUAL TABLE IF NOT EXISTS chunk_terms USING fts5 (body);
CREATE TABLE IF NOT EXISTS tombstones (seq INTEGER PRIMARY KEY AUTOINCREMENT, id INTEGER NOT NULL);
"""


def match_expression(terms: list[str]) -> str:
    """An FTS5 query for any of ``terms``, each quoted as a string."""
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


class ChunkDB:
    """One connection to ``corpus.db``; open one per thread (or per call: opening is cheap)."""

    def __init__(self, path: Path, create: bool = False):
        self.path = Path(path)
        if not create and not self.path.exists():
            raise FileNotFoundError(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        if created:
            open_to_umask(self.path)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        if create:
            self.conn.executescript(SCHEMA)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "ChunkDB":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def reading(self) -> Iterator["ChunkDB"]:
        """One consistent view of the last commit for every query in the block."""
        self.conn.execute("BEGIN")
        try:
            yield self
        finally:
            self.conn.execute("COMMIT")

    @contextlib.contextmanager
    def writing(self) -> Iterator["ChunkDB"]:
        """One transaction; committed (and ``generation`` bumped) when the block ends, rolled back
        if it raises."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self
            self.put(generation=self.get("generation", 0) + 1)
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # -- settings: JSON values by key
    def get(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def settings(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self.conn.execute("SELECT key, value FROM settings")}

    def put(self, **values: Any) -> None:
        self.conn.executemany("INSERT INTO settings (key, value) VALUES (?, ?) "
                              "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                              [(k, json.dumps(v)) for k, v in values.items()])

    # -- writes (inside ``writing()``)
    def add_document(self, doc: dict[str, Any], rows: list[dict[str, Any]], vectors: list[bytes],
                     bodies: list[str]) -> list[int]:
        """Insert a document's chunks (``bodies``: the text the sparse side indexes); their ids."""
        self.conn.execute("INSERT OR REPLACE INTO documents (doc_id, source, file, sha256, chunks) "
                          "VALUES (?, ?, ?, ?, ?)", (doc["id"], doc["name"], doc.get("file"),
                                                     doc.get("sha256"), len(rows)))
        ids = []
        for row, vector, body in zip(rows, vectors, bodies):
            cursor = self.conn.execute(
                f"INSERT INTO chunks ({', '.join(CHUNK_FIELDS)}, vector) VALUES ({', '.join('?' * (len(CHUNK_FIELDS) + 1))})",
                [row.get(f) for f in CHUNK_FIELDS] + [vector])
            ids.append(cursor.lastrowid)
            self.conn.execute("INSERT INTO chunk_terms (rowid, body) VALUES (?, ?)", (cursor.lastrowid, body))
        self.put(rows=self.get("rows", 0) + len(rows))
        return ids

    def remove_document(self, doc_id: str) -> int:
        """Drop a document and its chunks; their ids become tombstones. The count removed."""
        ids = [r[0] for r in self.conn.execute("SELECT id FROM chunks WHERE doc_id = ?", (doc_id,))]
        self.conn.execute("DELETE FROM documents WHERE doc_id = ?", (doc_id,))
        if ids:
            self.conn.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))
            self.conn.executemany("DELETE FROM chunk_terms WHERE rowid = ?", [(i,) for i in ids])
            self.conn.executemany("INSERT INTO tombstones (id) VALUES (?)", [(i,) for i in ids])
            self.put(rows=self.get("rows", 0) - len(ids))
        return len(ids)

    def replace_terms(self, bodies: list[tuple[int, str]]) -> None:
        """New sparse-side text for existing chunks: (id, body)."""
        self.conn.executemany("DELETE FROM chunk_terms WHERE rowid = ?", [(i,) for i, _ in bodies])
        self.conn.executemany("INSERT INTO chunk_terms (rowid, body) VALUES (?, ?)", bodies)

    def clear(self) -> None:
        """Every chunk, document and tombstone gone (a rebuild); ids keep growing."""
        for table in ("documents", "chunks", "chunk_terms", "tombstones"):
            self.conn.execute(f"DELETE FROM {table}")
        self.put(rows=0)

    def drop_tombstones(self, up_to_seq: int) -> None:
        self.conn.execute("DELETE FROM tombstones WHERE seq <= ?", (up_to_seq,))

    # -- reads
    def documents(self) -> dict[str, dict[str, Any]]:
        return {r[0]: {"source": r[1], "file": r[2], "sha256": r[3], "chunks": r[4]}
                for r in self.conn.execute("SELECT doc_id, source, file, sha256, chunks FROM documents")}

    def max_id(self) -> int:
        return self.conn.execute("SELECT coalesce(max(id), 0) FROM chunks").fetchone()[0]

    def tombstone_seq(self) -> int:
        return self.conn.execute("SELECT coalesce(max(seq), 0) FROM tombstones").fetchone()[0]

    def tombstones(self, after_seq: int = 0) -> list[int]:
        return [r[0] for r in self.conn.execute("SELECT id FROM tombstones WHERE seq > ?", (after_seq,))]

    def count_after(self, after_id: int = 0) -> int:
        return self.conn.execute("SELECT count(*) FROM chunks WHERE id > ?", (after_id,)).fetchone()[0]

    def vectors(self, after_id: int = 0) -> Iterator[tuple[int, bytes]]:
        """(id, vector bytes) of the live chunks after ``after_id``, in id order."""
        yield from self.conn.execute("SELECT id, vector FROM chunks WHERE id > ? ORDER BY id", (after_id,))

    def _rows_of(self, columns: str, ids: list[int]) -> Iterator[tuple]:
        """``SELECT id, columns`` for the chunks of these ids that still exist (500 ids a query)."""
        for start in range(0, len(ids), 500):
            part = list(ids[start:start + 500])
            yield from self.conn.execute(f"SELECT id, {columns} FROM chunks WHERE id IN ({', '.join('?' * len(part))})",
                                         part)

    def chunks(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        """The chunks of these ids that still exist, by id (text and metadata, no vector)."""
        return {row[0]: dict(zip(CHUNK_FIELDS, row[1:])) for row in self._rows_of(", ".join(CHUNK_FIELDS), ids)}

    def documents_of(self, ids: list[int]) -> dict[int, str]:
        """The document of each of these chunk ids that still exists."""
        return dict(self._rows_of("doc_id", ids))

    def iter_chunks(self) -> Iterator[dict[str, Any]]:
        """Every chunk in id order, with its id (no vector): the readable export."""
        for row in self.conn.execute(f"SELECT id, {', '.join(CHUNK_FIELDS)} FROM chunks ORDER BY id"):
            yield {"id": row[0], **dict(zip(CHUNK_FIELDS, row[1:]))}

    def match(self, terms: list[str], limit: int) -> list[tuple[int, float]]:
        """BM25 (FTS5's, k1 1.2, b 0.75) over the indexed bodies for any of ``terms``: (id,
        score) best first, scores positive."""
        if not terms:
            return []
        expression = match_expression(terms)
        return [(r[0], -r[1]) for r in self.conn.execute(
            "SELECT rowid, bm25(chunk_terms) AS s FROM chunk_terms WHERE chunk_terms MATCH ? ORDER BY s LIMIT ?",
            (expression, limit))]
