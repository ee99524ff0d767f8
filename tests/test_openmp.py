"""A thread gives its OpenMP pool back (``workbench.runtime``): the workers it started end,
the next parallel region on it works and starts a new pool, and a search and a finished job leave
their thread without one."""
from __future__ import annotations

import threading

import torch

from tests.conftest import ingest, threads_named, with_openmp_pool
from tests.helpers import make_corpus
from workbench.runtime import release_openmp_pool


def test_a_thread_gives_its_openmp_pool_back():
    a = torch.ones(1 << 23)

    def work(pool):
        released = release_openmp_pool()
        left = pool & threads_named("omp-test")
        again = a.exp()  # a new pool, the same result
        return released, left, again, threads_named("omp-test") - pool - {threading.get_native_id()}

    seen = with_openmp_pool("omp-test", work)
    released, left, again, new_pool = seen["result"]
    assert len(seen["pool"]) == seen["threads"] - 1  # the thread's workers, named after it
    assert released >= 1 and left == set()
    assert torch.equal(again, seen["product"])
    assert len(new_pool) == seen["threads"] - 1


def test_a_search_leaves_its_thread_without_a_pool(wb, settings, tmp_path):
    from workbench.index.search import retriever_for

    corpus = make_corpus(tmp_path / "corpus")
    assert ingest(wb, str(corpus / "facts.txt"), str(corpus / "notes.md"))[0] == 0
    retriever = retriever_for(settings.workspace, settings.embedding_model)
    seen = with_openmp_pool("searcher", lambda pool: retriever.search("capital of Germany", 2))
    assert len(seen["pool"]) == seen["threads"] - 1
    assert seen["result"][0].source == "facts.txt"
    assert seen["pool_left"] == set()


def test_a_job_leaves_its_thread_without_a_pool(wb, tmp_path):
    """The runner gives the pool back after each job: the next job may run on another of the
    consumer's threads."""
    corpus = make_corpus(tmp_path / "corpus")
    seen = with_openmp_pool("job-thread", lambda pool: ingest(wb, str(corpus / "facts.txt"))[0])
    assert len(seen["pool"]) == seen["threads"] - 1
    assert seen["result"] == 0
    assert seen["pool_left"] == set()
