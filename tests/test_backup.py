"""``workbench backup`` while writers run: the chunk store, the queue and every JSONL file are
copied whole (SQLite's online backup, the writers' locks), and the copy loads as a workspace."""
from __future__ import annotations

import json
import sqlite3
import threading

import numpy as np

from storage import Workspace
from storage.documents import DocumentStore
from storage.jsonl import append_jsonl, read_jsonl
from tests.conftest import cli
from workbench.index import store, store_writes


def _commit(ws: Workspace, n: int) -> None:
    vectors = np.random.default_rng(n).standard_normal((20, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    doc = {"id": f"d{n}", "name": f"d{n}.txt", "file": f"d{n}.txt", "sha256": str(n)}
    rows = [{"chunk_id": f"d{n}:{i}", "doc_id": doc["id"], "source": doc["name"], "text": f"text {i}"} for i in range(20)]
    with DocumentStore(ws).lock():
        db = store.open_db(ws) or store_writes.create(ws, {"model": "m", "dim": 16})
        with db, db.writing():
            store_writes.add_document(db, doc, rows, vectors)


def test_backup_while_writers_run_is_consistent_and_loads(env, tmp_path):
    ws = Workspace(tmp_path / "ws")
    cli(env, "selftest", "--steps", "1", "--queue")  # a queue.db, a run folder, an audit line
    for n in range(5):
        _commit(ws, n)
    store_writes.compact(ws)
    append_jsonl(ws.feedback_file, [{"id": i, "comment": "x" * 500} for i in range(200)])

    stop = threading.Event()

    def write():
        n = 5
        while not stop.is_set():
            _commit(ws, n)
            append_jsonl(ws.feedback_file, [{"id": 1000 + n, "comment": "y" * 5000}])
            n += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        out = cli(env, "backup", str(tmp_path / "copy"), "--json").stdout
    finally:
        stop.set()
        writer.join()
    report = json.loads(out)
    copy = Workspace(tmp_path / "copy")
    assert report["files"] > 5 and (copy.home / "backup.json").exists()
    with sqlite3.connect(copy.corpus_db) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        documents, chunks = db.execute("SELECT count(*), sum(chunks) FROM documents").fetchone()
        assert db.execute("SELECT count(*) FROM chunks").fetchone()[0] == chunks == 20 * documents
    state = store.load(copy)
    assert state.size == chunks and len(state.document_ids()) == documents >= 5
    lines = read_jsonl(copy.feedback_file)  # strict: a half line would raise
    assert len(lines) >= 200
    with sqlite3.connect(copy.queue_db) as queue:
        assert queue.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert [p.name for p in (copy.home / "runs").iterdir()] == [p.name for p in ws.runs.iterdir()]
    assert not (copy.home / "cache").exists()

    for target, reason in ((tmp_path / "copy", "not empty"), (ws.home / "inside", "inside the workspace")):
        result = cli(env, "backup", str(target), check=False)
        assert result.returncode == 2 and reason in result.stderr
