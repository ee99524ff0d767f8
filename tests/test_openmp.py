"""A thread gives its OpenMP pool back (``workbench.models.openmp``): the workers it started end,
the next parallel region on it works and starts a new pool, and a search and a finished job leave
their thread without one."""
from __future__ import annotations

import torch

from tests.conftest import ingest, make_corpus, threads_named, with_openmp_pool
from workbench.models.openmp import release_openmp_pool


def test_a_thread_gives_its_openmp_pool_back():
    a = torch.randn(1024, 1024)

    def work():
        released = release_openmp_pool()
        return released, threads_named("omp-test"), a @ a

    seen = with_openmp_pool("omp-test", work)
    released, alone, product = seen["result"]
    assert seen["with_pool"] == seen["threads"]  # the thread and its workers, named after it
    assert released >= 1 and alone == 1
    assert torch.equal(product, a @ a)
    assert seen["after"] == seen["threads"]  # that product started a new pool


def test_a_search_leaves_its_thread_without_a_pool(wb, settings, tmp_path):
    from workbench.index.search import retriever_for

    corpus = make_corpus(tmp_path / "corpus")
    assert ingest(wb, str(corpus / "facts.txt"), str(corpus / "notes.md"))[0] == 0
    retriever = retriever_for(settings.workspace, settings.embedding_model)
    seen = with_openmp_pool("searcher", lambda: retriever.search("capital of Germany", 2))
    assert seen["with_pool"] == seen["threads"]
    assert seen["result"][0].source == "facts.txt"
    assert seen["after"] == 1


def test_a_job_leaves_its_thread_without_a_pool(wb, tmp_path):
    """The runner gives the pool back after each job: the next job may run on another of the
    consumer's threads."""
    corpus = make_corpus(tmp_path / "corpus")
    seen = with_openmp_pool("job-thread", lambda: ingest(wb, str(corpus / "facts.txt"))[0])
    assert seen["with_pool"] == seen["threads"]
    assert seen["result"] == 0
    assert seen["after"] == 1
