"""The FAISS index types and the index files: flat, HNSW and IVF find the right rows, switching
type or deleting rebuilds from the stored vectors, and files that disagree are refused."""
from __future__ import annotations

import json

import numpy as np
import pytest

from storage import Workspace
from workbench.index import store


def unit_rows(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.mark.parametrize("index_type", store.INDEX_TYPES)
def test_each_index_type_finds_the_query_row(index_type):
    vectors = unit_rows(4000)
    index = store.build_faiss(vectors, index_type)
    queries = vectors[:50] + 0.01 * unit_rows(50, seed=1)
    _, rows = index.search(np.ascontiguousarray(queries / np.linalg.norm(queries, axis=1, keepdims=True)), 1)
    recall = float(np.mean(rows[:, 0] == np.arange(50)))
    assert recall >= 0.95, (index_type, recall)


def test_ivf_with_too_few_rows_to_train_is_flat():
    import faiss

    assert isinstance(store.build_faiss(unit_rows(100), "ivf"), faiss.IndexFlat)


def _doc(i: int) -> dict:
    return {"id": f"d{i}", "name": f"doc{i}.txt", "file": f"doc{i}.txt", "sha256": str(i) * 64}


@pytest.mark.parametrize("index_type", ["flat", "ivf", "hnsw"])
def test_remove_keeps_every_row_pointing_at_its_chunk(index_type):
    """Flat removes in place, IVF re-adds under its trained lists (its ids do not move up), HNSW
    is rebuilt: each kept vector still finds its own chunk."""
    n = 25000 if index_type == "ivf" else 600  # IVF trains its lists from ~39 rows each
    vectors = unit_rows(n)
    state = store.empty({"model": "m", "dim": 32}, index_type)
    for i in range(4):
        rows = range(i, n, 4)  # interleaved documents: removal leaves gaps all through the index
        chunks = [{"chunk_id": f"d{i}:{r}", "doc_id": f"d{i}", "text": ""} for r in rows]
        store.add_document(state, _doc(i), chunks, vectors[list(rows)])
    store.reindex(state, index_type)
    assert store.remove_documents(state, {"d1"}) == n // 4
    assert state.index.ntotal == state.size == len(state.vectors) == n - n // 4
    if index_type == "ivf":
        state.index.nprobe = state.index.nlist
    if index_type == "hnsw":
        state.index.hnsw.efSearch = 256
    sample = np.arange(0, state.size, 7)
    _, found = state.index.search(state.vectors[sample], 1)
    assert [state.chunks[r]["chunk_id"] for r in found[:, 0]] == [state.chunks[r]["chunk_id"] for r in sample]


def test_files_round_trip_delete_and_switch_type_without_reembedding(tmp_path):
    ws = Workspace(tmp_path)
    state = store.empty({"model": "m", "dim": 32})
    vectors = unit_rows(30)
    for i in range(3):
        chunks = [{"chunk_id": f"d{i}:{n}", "doc_id": f"d{i}", "source": f"doc{i}.txt", "page": None,
                   "section": None, "text": f"chunk {n} of {i}"} for n in range(10)]
        store.add_document(state, _doc(i), chunks, vectors[10 * i:10 * (i + 1)])
    store.save(ws, state)
    loaded = store.load(ws)
    assert loaded.size == 30 and loaded.index.ntotal == 30 and np.array_equal(loaded.vectors, vectors)

    assert store.remove_documents(loaded, {"d1"}) == 10
    store.reindex(loaded, "hnsw")
    store.save(ws, loaded)
    again = store.load(ws)
    assert again.meta["index_type"] == "hnsw" and again.document_ids() == {"d0", "d2"}
    assert np.array_equal(again.vectors, np.concatenate([vectors[:10], vectors[20:]]))
    _, rows = again.index.search(vectors[25:26], 1)
    assert again.chunks[rows[0, 0]]["chunk_id"] == "d2:5"

    meta = json.loads(ws.metadata_file.read_text())
    meta["chunks"].pop()
    ws.metadata_file.write_text(json.dumps(meta))
    with pytest.raises(store.IndexUnusable, match="disagree.*ingest --rebuild"):
        store.load(ws)


def test_readers_take_no_lock_and_never_pair_vectors_with_the_wrong_chunks(tmp_path):
    """A writer saves two different corpora of the same size in turn while a reader loads over
    and over: every load is one whole commit. And a reader does not wait for the corpus lock."""
    import threading

    from storage.documents import DocumentStore

    ws = Workspace(tmp_path)
    states = []
    for name, seed in (("a", 1), ("b", 2)):
        state = store.empty({"model": "m", "dim": 32})
        chunks = [{"chunk_id": f"{name}:{n}", "doc_id": name, "text": ""} for n in range(300)]
        store.add_document(state, _doc(seed), chunks, unit_rows(300, seed=seed))
        states.append((name, state, unit_rows(300, seed=seed)))
    store.save(ws, states[0][1])

    stop, errors = threading.Event(), []

    def writer():
        i = 0
        while not stop.is_set():
            with DocumentStore(ws).lock():
                store.save(ws, states[i % 2][1])
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(60):
            loaded = store.load(ws)
            name = loaded.chunks[0]["chunk_id"].split(":")[0]
            expected = dict((n, v) for n, _, v in states)[name]
            if not (np.array_equal(loaded.vectors, expected) and loaded.index.ntotal == 300
                    and all(c["chunk_id"].startswith(name) for c in loaded.chunks)):
                errors.append(name)
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



def test_an_index_copied_elsewhere_still_loads(tmp_path):
    """A copy (a backup restored, a workspace moved) gives the files other inodes than the ones
    metadata.json names: the reader falls back to the writers' lock and the row counts."""
    import shutil

    source, copy = Workspace(tmp_path / "a"), Workspace(tmp_path / "b")
    state = store.empty({"model": "m", "dim": 32})
    store.add_document(state, _doc(0), [{"chunk_id": f"d0:{n}", "doc_id": "d0", "text": ""} for n in range(20)],
                       unit_rows(20))
    store.save(source, state)
    shutil.copytree(source.data, copy.data)
    loaded = store.load(copy)
    assert loaded.size == 20 and np.array_equal(loaded.vectors, unit_rows(20))


def test_a_search_keeps_the_previous_index_while_the_next_one_loads(tmp_path, monkeypatch):
    """A commit at a million chunks takes seconds to load: searches go on with the index they
    have until the new one is in memory, then use it."""
    import threading

    from storage.documents import DocumentStore
    from tests.conftest import wait_for
    from workbench.index.search import Retriever

    ws = Workspace(tmp_path)

    def commit(name: str, seed: int) -> None:
        state = store.empty({"model": "m", "dim": 32})
        store.add_document(state, _doc(seed), [{"chunk_id": f"{name}:{n}", "doc_id": name, "text": ""}
                                               for n in range(50)], unit_rows(50, seed=seed))
        with DocumentStore(ws).lock():
            store.save(ws, state)

    commit("a", 1)
    retriever = Retriever(ws, "m")
    assert retriever.state().chunks[0]["chunk_id"] == "a:0"

    loading, release, real_load = threading.Event(), threading.Event(), store.load

    def slow_load(workspace):  # the real load, held back the way a large index holds it
        loading.set()
        release.wait(30)
        return real_load(workspace)

    monkeypatch.setattr(store, "load", slow_load)
    commit("b", 2)
    assert retriever.state().chunks[0]["chunk_id"] == "a:0"  # served while "b" loads
    assert loading.wait(10)
    assert retriever.state().chunks[0]["chunk_id"] == "a:0"
    release.set()
    wait_for(lambda: retriever.state().chunks[0]["chunk_id"] == "b:0", 30, what="the new index")
