"""GPU reservation: a job holds every GPU it computes on, so one job per GPU stays true when a
training job spreads over several (``num_processes`` N reserves N GPUs).

Each GPU of a host has a lock file in ``workers/gpus/``, held with ``flock`` by the worker that
runs a job on it; the kernel drops the lock when that process dies, so a ``kill -9`` frees the
GPU at once. A GPU consumer is pinned to its own GPU (``CUDA_VISIBLE_DEVICES``); a job that needs
more takes its own GPU plus the free ones with the lowest indices, and waits for busy ones. Locks
are always taken in ascending index order and held until the job ends, so two jobs that want
overlapping sets cannot deadlock. A second lock per GPU (``.want``) is a turnstile: whoever waits
for a GPU holds it, so a worker that frees its GPU and takes its next job queues behind a job
already waiting for that GPU instead of taking it again at once. Which run holds which GPU is
written to the run's status (``gpus``), where the Monitor reads it.
"""
from __future__ import annotations

import fcntl
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

POLL_S = 0.5


class NotEnoughGpus(RuntimeError):
    """The job asks for more GPUs than the host has."""


def host_gpus() -> list[int]:
    """Every GPU of this machine (NVML; no CUDA context)."""
    from workbench.gpu_memory import devices

    return [d.index for d in devices(visible="")]


def pin_process(held: list[int], own: list[int]) -> None:
    """A process not pinned to GPUs (the CLI running a job itself) computes on the GPUs it
    reserved: set ``CUDA_VISIBLE_DEVICES`` while CUDA is not yet started in it. A worker is
    pinned to its own GPU already; its training children get the whole reservation."""
    import sys

    torch = sys.modules.get("torch")
    if own or not held or (torch is not None and torch.cuda.is_initialized()):
        return
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, held))


def pinned(visible: str | None) -> list[int]:
    """The GPU indices of a ``CUDA_VISIBLE_DEVICES`` value (empty: not pinned)."""
    return [int(part) for part in (visible or "").split(",") if part.strip().isdigit()]


class GpuLocks:
    """The lock files of one host's GPUs under ``folder``."""

    def __init__(self, folder: Path, host: str | None = None):
        self.folder = folder
        self.host = host or socket.gethostname()
        self._held: dict[str, int] = {}  # lock name -> open file descriptor

    def held(self) -> list[int]:
        return sorted(int(name) for name in self._held if name.isdigit())

    def try_lock(self, index: int | str) -> bool:
        name = str(index)
        if name in self._held:
            return True
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / f"{self.host}-gpu{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._held[name] = fd
        return True

    def is_free(self, index: int) -> bool:
        """Whether nobody holds or waits for GPU ``index`` right now (a probe: it may change at once)."""
        if str(index) in self._held:
            return False
        free = True
        for name in (f"{index}.want", index):
            if self.try_lock(name):
                self.unlock(name)
            else:
                free = False
        return free

    def unlock(self, index: int | str) -> None:
        fd = self._held.pop(str(index), None)
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def unlock_all(self) -> None:
        for index in list(self._held):
            self.unlock(index)


def choose(own: list[int], every: list[int], count: int, free: Callable[[int], bool]) -> list[int]:
    """The GPUs a job of ``count`` GPUs takes: the worker's own first, then free ones, then busy
    ones (to wait for), lowest index first; sorted."""
    if count > len(every):
        raise NotEnoughGpus(f"this job needs {count} GPUs and this machine has {len(every)}")
    chosen = [i for i in own if i in every][:count]
    others = [i for i in every if i not in chosen]
    chosen += [i for i in others if free(i)][:count - len(chosen)]
    chosen += [i for i in others if i not in chosen][:count - len(chosen)]
    return sorted(chosen)


@contextmanager
def reserve(folder: Path, own: list[int], every: list[int], count: int,
            waiting: Callable[[list[int]], None] = lambda busy: None,
            cancelled: Callable[[], bool] = lambda: False, host: str | None = None,
            poll_s: float = POLL_S) -> Iterator[list[int]]:
    """Hold ``count`` GPUs for the duration of the block; yields their indices. Calls ``waiting``
    with the busy GPUs once per change while it waits; raises ``InterruptedError`` (holding
    nothing) if ``cancelled`` turns true first."""
    locks = GpuLocks(folder, host)
    try:
        wanted = choose(own, every, count, locks.is_free)
        reported: list[int] | None = None
        for index in wanted:  # ascending: no two reservations wait on each other
            for name in (f"{index}.want", index):  # the turnstile, then the GPU itself
                while not locks.try_lock(name):
                    busy = [i for i in wanted if i not in locks.held()]
                    if busy != reported:
                        waiting(busy)
                        reported = busy
                    if cancelled():
                        raise InterruptedError("cancelled while waiting for a GPU")
                    time.sleep(poll_s)
            locks.unlock(f"{index}.want")
        yield wanted
    finally:
        locks.unlock_all()
