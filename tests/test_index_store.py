"""The index on disk: the chunk store (corpus.db) with its FAISS snapshot, delta and tombstones.
Every index type finds the right rows; a write touches its document only; deletes are skipped
until a compaction drops them; readers take no lock and never see half a commit; files that
disagree are refused; an index saved as metadata.json + embeddings.npy is imported."""
from __future__ import annotations

import json
import threading

import faiss
import numpy as np
import pytest

from storage import Workspace
from storage.documents import DocumentStore
from tests.conftest import wait_for
from workbench.index import faiss_index, legacy_import, store, store_writes


def unit_rows(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _doc(name: str) -> dict:
    return {"id": name, "name": f"{name}.txt", "file": f"{name}.txt", "sha256": name * 8}


def _rows(name: str, positions) -> list[dict]:
    return [{"chunk_id": f"{name}:{n}", "doc_id": name, "source": f"{name}.txt", "text": f"chunk {n} of {name}"}
            for n in positions]


def add(ws: Workspace, name: str, vectors: np.ndarray, positions=None) -> None:
    """Commit one document the way the ingest job does: under the lock, one transaction."""
    positions = range(len(vectors)) if positions is None else positions
    with DocumentStore(ws).lock():
        db = store.open_db(ws) or store_writes.create(ws, {"model": "m", "dim": vectors.shape[1]})
        with db, db.writing():
            store_writes.add_document(db, _doc(name), _rows(name, positions), vectors)


def remove(ws: Workspace, name: str) -> int:
    with DocumentStore(ws).lock(), store.open_db(ws) as db, db.writing():
        return store_writes.remove_documents(db, {name})


def live_ids(state: store.CorpusIndex) -> set[int]:
    ids = set(state.delta_ids.tolist())
    if state.snapshot is not None:
        snap = state.snapshot
        ids |= set(faiss.vector_to_array(snap.id_map).tolist()) if isinstance(snap, faiss.IndexIDMap) else set(
            int(i) for lst in range(snap.nlist) for i in faiss.rev_swig_ptr(snap.invlists.get_ids(lst), snap.invlists.list_size(lst)))
    return ids - set(state.tombstones.tolist())


@pytest.mark.parametrize("index_type", faiss_index.INDEX_TYPES)
def test_each_index_type_finds_the_query_row(index_type):
    vectors = unit_rows(4000)
    index = faiss_index.build_faiss(vectors, index_type, np.arange(100, 4100))
    queries = vectors[:50] + 0.01 * unit_rows(50, seed=1)
    _, ids = index.search(np.ascontiguousarray(queries / np.linalg.norm(queries, axis=1, keepdims=True)), 1)
    recall = float(np.mean(ids[:, 0] == np.arange(100, 150)))
    assert recall >= 0.95, (index_type, recall)


def test_ivf_with_too_few_rows_to_train_is_flat():
    index = faiss_index.build_faiss(unit_rows(100), "ivf")
    assert isinstance(faiss.downcast_index(index.index), faiss.IndexFlat)


@pytest.mark.parametrize("index_type", ["flat", "ivf", "hnsw"])
def test_deleted_rows_are_skipped_then_compacted_away(tmp_path, index_type):
    """Interleaved documents, one deleted: before a compaction its rows are tombstones that no
    search returns; after one they are gone from the snapshot. Every kept vector still finds its
    own chunk either way."""
    ws = Workspace(tmp_path)
    n = 34000 if index_type == "ivf" else 600  # IVF trains its lists from ~39 rows each, after the delete too
    vectors = unit_rows(n)
    for i in range(4):
        add(ws, f"d{i}", vectors[i::4], range(i, n, 4))
    assert store_writes.compact(ws, index_type)
    remove(ws, "d1")
    state = store.load(ws)
    assert len(state.tombstones) == n // 4 and state.size == n - n // 4
    inner = faiss.downcast_index(state.snapshot.index) if isinstance(state.snapshot, faiss.IndexIDMap) else state.snapshot
    if index_type == "ivf":
        state.snapshot.nprobe = state.snapshot.nlist
    if index_type == "hnsw":
        inner.hnsw.efSearch = 256

    def check(state):
        kept = np.array([r for r in range(n) if r % 4 != 1][::7])
        found = state.search(vectors[kept], 3)
        with store.open_db(ws) as db:
            chunks = db.chunks([hits[0][0] for hits in found])
            assert [chunks[hits[0][0]]["chunk_id"] for hits in found] == [f"d{r % 4}:{r}" for r in kept]
        removed = state.search(vectors[1::4][:50], 5)
        assert not {i for hits in removed for i, _ in hits} & set(state.tombstones.tolist())

    check(state)
    assert store.needs_compaction(ws) and store_writes.compact(ws)
    state = store.load(ws)
    assert len(state.tombstones) == 0 and state.snapshot.ntotal == n - n // 4 and len(state.delta_ids) == 0
    if index_type == "ivf":
        state.snapshot.nprobe = state.snapshot.nlist
    check(state)


def test_a_write_touches_its_document_and_readers_reload_only_what_changed(tmp_path):
    """Adding or deleting a document below the compaction share leaves index.faiss and
    metadata.json as they were; a reader that holds the last load keeps its snapshot object
    and reads the new rows and tombstones alone."""
    ws = Workspace(tmp_path)
    vectors = unit_rows(1000)
    add(ws, "big", vectors)
    assert store.needs_compaction(ws) and store_writes.compact(ws)
    before = (ws.index_file.stat().st_ino, ws.index_file.stat().st_mtime_ns, ws.metadata_file.read_bytes())
    held = store.load(ws)

    add(ws, "small", unit_rows(5, seed=1))
    assert remove(ws, "big") == 1000
    add(ws, "big", vectors[:20])
    assert (ws.index_file.stat().st_ino, ws.index_file.stat().st_mtime_ns, ws.metadata_file.read_bytes()) == before
    state = store.load(ws, held)
    assert state.snapshot is held.snapshot and state.size == 25 and state.document_ids() == {"big", "small"}
    assert len(state.delta_ids) == 25 and len(state.tombstones) == 1000
    assert live_ids(state) == live_ids(store.load(ws)) and len(live_ids(state)) == 25
    top = state.search(vectors[3:4], 1)[0][0][0]
    with store.open_db(ws) as db:
        assert db.chunks([top])[top]["chunk_id"] == "big:3"


def test_files_that_disagree_are_refused_and_a_copied_index_loads(tmp_path):
    import shutil

    ws = Workspace(tmp_path / "a")
    add(ws, "d0", unit_rows(30))
    store_writes.compact(ws)
    shutil.copytree(ws.data, tmp_path / "b" / "data")  # a backup restored: other inodes
    restored = Workspace(tmp_path / "b")
    before = restored.corpus_db.read_bytes()
    copy = store.load(restored)
    assert copy.size == 30 and copy.snapshot.ntotal == 30
    assert restored.corpus_db.read_bytes() == before  # a reader never writes, not even to name the copy
    # checked whole once under the corpus lock, the copy is then read without it in this process
    # (a compaction names it on disk): a load while a writer holds the lock does not wait for it
    held, loaded, done = threading.Event(), threading.Event(), threading.Event()

    def writer():
        with DocumentStore(restored).lock():
            held.set()
            done.wait(120)
    sizes = []

    def reader():
        sizes.append(store.load(restored).size)
        loaded.set()
    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    threads[0].start()
    held.wait(60)
    threads[1].start()
    try:
        assert loaded.wait(60) and sizes == [30]
    finally:
        done.set()
        for thread in threads:
            thread.join()
    assert store_writes.compact(restored)
    assert store.load(restored).snapshot_record["inode"] == restored.index_file.stat().st_ino

    faiss.write_index(faiss_index.build_faiss(unit_rows(10), "flat"), str(ws.index_file))  # same inode, other rows
    with pytest.raises(store.IndexUnusable, match="holds 10 vectors.*expects 30.*ingest --rebuild"):
        store.load(ws)


def test_readers_take_no_lock_and_never_see_half_a_commit(tmp_path):
    """A writer swaps two documents of the same size and compacts, over and over, while a
    reader loads: every load holds exactly one document's rows. A reader does not wait for the
    corpus lock."""
    ws = Workspace(tmp_path)
    corpora = {"a": unit_rows(300, seed=1), "b": unit_rows(300, seed=2)}
    add(ws, "a", corpora["a"])
    stop = threading.Event()

    def writer():
        current, i = "a", 0
        while not stop.is_set():
            following = "b" if current == "a" else "a"
            with DocumentStore(ws).lock(), store.open_db(ws) as db, db.writing():
                store_writes.remove_documents(db, {current})
                store_writes.add_document(db, _doc(following), _rows(following, range(300)), corpora[following])
            current, i = following, i + 1
            if i % 3 == 0:
                store_writes.compact(ws)

    thread = threading.Thread(target=writer)
    thread.start()
    errors, previous = [], None
    try:
        for n in range(60):
            state = store.load(ws, previous if n % 2 else None)
            if not (state.size == 300 and len(live_ids(state)) == 300 and len(state.document_ids()) == 1):
                errors.append((state.size, len(live_ids(state)), state.document_ids()))
            previous = state
    finally:
        stop.set()
        thread.join()
    assert errors == []

    held, release, loaded = threading.Event(), threading.Event(), []

    def hold_the_lock():
        with DocumentStore(ws).lock():
            held.set()
            release.wait(60)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    held.wait(10)
    try:
        from workbench.index.search import Retriever

        reader = threading.Thread(target=lambda: loaded.append(Retriever(ws, "m").state()))
        reader.start()
        reader.join(30)
        assert not reader.is_alive() and loaded[0].size == 300  # read while the lock was held
    finally:
        release.set()
        holder.join()


def test_an_index_saved_as_files_is_imported_with_its_vectors(tmp_path):
    """A workspace indexed before corpus.db (metadata.json, embeddings.npy, index.faiss): readers
    refuse it with what to run, and never write; the ingest job's first step moves it into
    corpus.db, vectors as they were, searched the same way."""
    ws = Workspace(tmp_path)
    ws.data.mkdir(parents=True)
    vectors = unit_rows(40)
    chunks = [{"chunk_id": f"{d}:{n}", "doc_id": d, "source": f"{d}.txt", "title": d, "page": None,
               "section": "S", "position": n, "tokens": 5, "text": f"text {n} of {d}"}
              for d in ("x", "y") for n in range(20)]
    ws.metadata_file.write_text(json.dumps({
        "version": 1, "embedding_model": "m", "dim": 32, "index_type": "flat", "chunking": {"size": 200, "overlap": 40},
        "documents": {d: {"source": f"{d}.txt", "file": f"{d}.txt", "sha256": d, "chunks": 20} for d in ("x", "y")},
        "chunks": chunks}))
    np.save(ws.embeddings_file, vectors)
    faiss.write_index(faiss.IndexFlatIP(32), str(ws.index_file))

    from workbench.corpus import ingest
    from workbench.index.search import Retriever
    from workbench.settings import Settings

    saved = sorted(p.name for p in ws.data.iterdir())
    for read in (lambda: Retriever(ws, "m").state(), lambda: store.read_meta(ws), lambda: store.load(ws)):
        with pytest.raises(store.IndexUnusable, match="earlier version.*run `workbench ingest`"):
            read()
    assert sorted(p.name for p in ws.data.iterdir()) == saved  # readers wrote nothing
    ingest.preflight(ingest.Config(), Settings(home=ws.home))  # the ingest job is let through to move it
    assert legacy_import.import_saved_files(ws) and not legacy_import.import_saved_files(ws)
    assert Retriever(ws, "m").state().size == 40
    state = store.load(ws)
    assert state.size == 40 and state.document_ids() == {"x", "y"} and not ws.embeddings_file.exists()
    top = state.search(vectors[25:26], 1)[0][0][0]
    with store.open_db(ws) as db:
        assert db.chunks([top])[top]["chunk_id"] == "y:5"
        stored = np.frombuffer(b"".join(v for _, v in db.vectors()), dtype=np.float32).reshape(40, 32)
    assert np.array_equal(stored, vectors)
    export = json.loads(ws.metadata_file.read_text())
    assert export["count"] == 40 and [c["chunk_id"] for c in export["chunks"]] == [c["chunk_id"] for c in chunks]


def test_a_search_keeps_the_previous_index_while_the_next_one_loads(tmp_path, monkeypatch):
    """A compaction at a million chunks takes seconds to load: searches go on with the index
    they have until the new one is in memory, then use it."""
    from workbench.index.search import Retriever

    ws = Workspace(tmp_path)
    add(ws, "a", unit_rows(50, seed=1))
    retriever = Retriever(ws, "m")
    assert retriever.state().document_ids() == {"a"}

    loading, release, real_load = threading.Event(), threading.Event(), store.load

    def slow_load(workspace, previous=None):  # the real load, held back the way a large index holds it
        loading.set()
        release.wait(30)
        return real_load(workspace, previous)

    monkeypatch.setattr(store, "load", slow_load)
    add(ws, "b", unit_rows(50, seed=2))
    assert retriever.state().document_ids() == {"a"}  # served while "b" loads
    assert loading.wait(10)
    assert retriever.state().document_ids() == {"a"}
    release.set()
    wait_for(lambda: retriever.state().document_ids() == {"a", "b"}, 30, what="the new index")
