"""Probes of the machine and of this process's threads, the floor every layer may stand on (it
imports nothing of the project): what the CPU does natively, and the OpenMP pools that torch and
faiss start per thread.

What the CPU can do natively is read once from ``/proc/cpuinfo``: every path that picks a
precision on a CPU (embedding, chat, evaluation, int8 decoding) asks here.

Why a thread gives its OpenMP pool back once its torch work is done: GNU OpenMP (libgomp, a
copy of which ships with the Linux torch wheels and another with faiss) gives every thread that
starts a parallel region its own pool of worker threads, kept until that thread exits. When the pools of one libgomp copy hold more threads than there are cores, it stops
spinning between parallel regions and puts its workers to sleep after a few hundred cycles: every
one of the hundreds of small ops of a decoding step then pays a futex wake. A web process runs
torch on many threads (a request handler loads the model and embeds the question, a second thread
streams the answer), so its decoding ran about 40 % slower than the same ``generate`` alone in a
script.

``release_openmp_pool`` ends the calling thread's pools (``omp_pause_resource_all``, OpenMP 5.0,
GCC 9 on), so that the thread that decodes next holds torch's only one. It touches no other
thread's pool and costs nothing when the thread holds none; the next parallel region on this
thread makes a new pool (about 0.1 ms).
"""
from __future__ import annotations

import ctypes
import functools
import os
import sys
from pathlib import Path

OMP_PAUSE_SOFT = 1


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 matmuls run natively instead of being emulated."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cuda_has_native_bf16() -> bool:
    """The current GPU computes in bf16 natively (compute capability 8 and newer; every ROCm
    device). torch's own check also answers yes where bf16 is only emulated (a V100, a T4),
    several times slower than fp16 there."""
    import torch

    return torch.cuda.is_bf16_supported(including_emulation=False)


@functools.lru_cache(maxsize=None)
def _library(path: str):
    try:
        library = ctypes.CDLL(path, mode=os.RTLD_NOLOAD)
    except OSError:
        return None
    function = getattr(library, "omp_pause_resource_all", None)
    if function is not None:
        function.argtypes, function.restype = [ctypes.c_int], ctypes.c_int
    return function


def loaded_libgomps() -> list[str]:
    """Paths of the libgomp copies this process has loaded (torch's, faiss's), from /proc. Read
    again only once torch or faiss has been imported since (the maps take milliseconds to read)."""
    return list(_libgomps_after("torch" in sys.modules, "faiss" in sys.modules))


@functools.lru_cache(maxsize=None)
def _libgomps_after(_torch: bool, _faiss: bool) -> tuple[str, ...]:
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split(None, 5)[-1].strip() for line in maps if "libgomp" in line}
    except OSError:  # not Linux: no libgomp to manage
        return ()
    return tuple(sorted(p for p in paths if p.startswith("/")))


def can_release() -> bool:
    """Whether this process has a libgomp that can give a thread's pool back."""
    return any(_library(path) is not None for path in loaded_libgomps())


def release_openmp_pool() -> int:
    """End the calling thread's OpenMP pools; returns how many libgomp copies took the call.
    Call it on a thread that has finished its torch work, not inside a parallel region."""
    released = 0
    for path in loaded_libgomps():
        pause = _library(path)
        if pause is not None and pause(OMP_PAUSE_SOFT) == 0:
            released += 1
    return released


def name_os_thread(name: str) -> None:
    """Give the calling thread ``name`` in the operating system (``top -H``, /proc/.../comm), as
    the OpenMP workers it starts inherit it; Python before 3.14 leaves every thread "python"."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # 15: PR_SET_NAME
    except (OSError, AttributeError):  # a libc without prctl: the name is only a convenience
        pass
