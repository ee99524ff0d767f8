"""A thread gives its OpenMP pool back (``workbench.models.openmp``): the workers it started end,
and the next parallel region on it works and starts a new pool."""
from __future__ import annotations

import threading

import pytest
import torch

from tests.conftest import threads_named
from workbench.models.openmp import loaded_libgomps, name_os_thread, release_openmp_pool


def test_a_thread_gives_its_openmp_pool_back():
    if not loaded_libgomps():
        pytest.skip("this torch does not use GNU OpenMP")
    seen: dict[str, object] = {}

    def work():
        name_os_thread("omp-test")
        a = torch.randn(1024, 1024)
        threads = torch.get_num_threads()
        seen["alone"] = threads_named("omp-test")
        seen["product"] = a @ a
        seen["with pool"] = threads_named("omp-test")
        seen["released"] = release_openmp_pool()
        seen["after"] = threads_named("omp-test")
        seen["again"] = a @ a  # a new pool, the same result
        seen["threads"] = threads
        release_openmp_pool()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    if seen["threads"] < 2:
        pytest.skip("one OpenMP thread here: no pool to give back")
    assert seen["alone"] == 1
    assert seen["with pool"] == seen["threads"]  # the thread and its workers, named after it
    assert seen["released"] >= 1
    assert seen["after"] == 1
    assert torch.equal(seen["again"], seen["product"])


def test_a_search_leaves_its_thread_without_a_pool(wb, settings, tmp_path):
    from tests.conftest import ingest, make_corpus
    from workbench.index.search import retriever_for

    corpus = make_corpus(tmp_path / "corpus")
    assert ingest(wb, str(corpus / "facts.txt"), str(corpus / "notes.md"))[0] == 0
    seen: dict[str, object] = {}

    def search():
        name_os_thread("searcher")
        a = torch.randn(1024, 1024)
        seen["product"], seen["threads"] = a @ a, torch.get_num_threads()
        seen["before"] = threads_named("searcher")
        seen["hits"] = retriever_for(settings.workspace, settings.embedding_model).search("capital of Germany", 2)
        seen["after"] = threads_named("searcher")

    thread = threading.Thread(target=search)
    thread.start()
    thread.join()
    if seen["threads"] < 2 or not loaded_libgomps():
        pytest.skip("one OpenMP thread here, or not GNU OpenMP: no pool to give back")
    assert seen["before"] == seen["threads"]
    assert seen["hits"][0].source == "facts.txt"
    assert seen["after"] == 1


def test_a_job_leaves_its_thread_without_a_pool(wb, tmp_path):
    """The runner gives the pool back after each job: the next job may run on another of the
    consumer's threads."""
    from tests.conftest import ingest, make_corpus

    corpus = make_corpus(tmp_path / "corpus")
    seen: dict[str, object] = {}

    def job():
        name_os_thread("job-thread")
        a = torch.randn(1024, 1024)
        seen["product"], seen["threads"] = a @ a, torch.get_num_threads()
        seen["before"] = threads_named("job-thread")
        seen["ingested"] = ingest(wb, str(corpus / "facts.txt"))[0]
        seen["after"] = threads_named("job-thread")

    thread = threading.Thread(target=job)
    thread.start()
    thread.join()
    if seen["threads"] < 2 or not loaded_libgomps():
        pytest.skip("one OpenMP thread here, or not GNU OpenMP: no pool to give back")
    assert seen["before"] == seen["threads"]
    assert seen["ingested"] == 0
    assert seen["after"] == 1
