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
