"""A GPU job's memory check against a fake list of GPUs (this machine has none): it starts when
its estimate fits, asks the web process's watcher to unload its models when it does not, and is
refused with the estimate and the free memory when it still does not fit."""
from __future__ import annotations

import threading

import pytest

from storage import Workspace
from workbench.gpu_memory import Device, NotEnoughGpuMemory, make_room, serve_unload_requests


class FakeGpus:
    """Two GPUs; unloading the web process's models frees ``freed`` GiB on each."""

    def __init__(self, free_gib: float, freed: float):
        self.free_gib, self.freed, self.unloads = free_gib, freed, 0

    def __call__(self) -> list[Device]:
        return [Device(i, "fake", 80.0, self.free_gib) for i in (0, 1)]

    def unload(self) -> list[str]:
        self.unloads += 1
        self.free_gib += self.freed
        return ["base", "llama-dpo"] if self.freed else []


@pytest.fixture
def web(tmp_path):
    """The web process's watcher, answering unload requests in this workspace."""
    gpus, stop = FakeGpus(0, 0), threading.Event()
    serve_unload_requests(Workspace(tmp_path), lambda: gpus.unload(), stop, poll_s=0.05)
    yield gpus
    stop.set()


def test_a_job_that_fits_starts_without_asking(tmp_path, web):
    web.free_gib = 40.0
    seen = make_room(Workspace(tmp_path), 20.0, print, free=web)
    assert seen == {"need_gib": 20.0, "free_gib": 38.0, "gpus": [0, 1]} and web.unloads == 0


def test_the_web_process_unloads_its_models_to_make_room(tmp_path, web):
    web.free_gib, web.freed = 12.0, 16.0
    lines = []
    seen = make_room(Workspace(tmp_path), 20.0, lines.append, free=web)
    assert web.unloads == 1 and seen["unloaded"] == ["base", "llama-dpo"] and seen["free_after_unload_gib"] == 26.6
    assert "needs about 20.0 GiB" in lines[0] and "unloaded base, llama-dpo" in lines[1]


def test_a_job_that_cannot_fit_is_refused_with_the_figures(tmp_path, web):
    web.free_gib, web.freed = 6.0, 2.0
    with pytest.raises(NotEnoughGpuMemory, match=r"needs about 30.0 GiB .* 7.6 GiB is free on GPU 0, 1 after the web "
                                                 r"process unloaded its models; lower batch_size .*QLoRA"):
        make_room(Workspace(tmp_path), 30.0, print, free=web)


def test_without_a_web_process_the_job_waits_a_moment_then_is_refused(tmp_path):
    gpus = FakeGpus(4.0, 0)
    with pytest.raises(NotEnoughGpuMemory, match="no web process answered"):
        make_room(Workspace(tmp_path), 10.0, print, free=gpus, timeout_s=0.3)


def test_no_gpu_means_no_check(tmp_path):
    assert make_room(Workspace(tmp_path), 1e6, print, free=lambda: []) == {"gpus": []}
