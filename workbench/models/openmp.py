"""Giving a thread's OpenMP pool back once its torch work is done.

GNU OpenMP (libgomp, which the Linux torch wheels and faiss ship) gives every thread that starts a
parallel region its own pool of worker threads, kept until that thread exits. When the pools of a
process hold more threads than there are cores, libgomp stops spinning between parallel regions
and puts its workers to sleep after a few hundred cycles: every one of the hundreds of small ops
of a decoding step then pays a futex wake. A web process runs torch on many threads (a request
handler loads the model and embeds the question, a second thread streams the answer), so its
decoding ran about 40 % slower than the same ``generate`` alone in a script.

``release_openmp_pool`` ends the calling thread's pool (``omp_pause_resource_all``, OpenMP 5.0),
so that the thread that decodes next holds the only one. It touches no other thread's pool and
costs nothing when the thread holds none; the next parallel region on this thread makes a new
pool (tens of microseconds)."""
from __future__ import annotations

import ctypes
import functools
import os
import sys

OMP_PAUSE_SOFT = 1


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
    try:
        libc = ctypes.CDLL(None)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)  # 15: PR_SET_NAME
    except (OSError, AttributeError):  # not Linux
        pass
