"""GPU memory before a GPU job starts. The job's estimate (``workbench.train.estimate``) is set
against what is free on the GPUs it will use; when it does not fit, the web process is asked to
unload the models it holds for Chat and Annotate (they load again on the next request), and a job
that still does not fit is refused with the estimate and the free memory, instead of dying of
out-of-memory an hour in.

The request is a file in the workspace (``cache/unload-models.json``) that the web process
watches: the worker and the web process may run as different processes or users, with no other
channel between them.
"""
from __future__ import annotations

import os
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable

from storage import Workspace, read_json, write_json_atomic
from storage.runs import now_iso
from workbench.errors import WorkbenchError

GIB = 1024 ** 3
HEADROOM = 0.95  # what the allocator cannot hand out: fragmentation, the CUDA context's own share
UNLOAD_WAIT_S = 15.0


class NotEnoughGpuMemory(WorkbenchError):
    """The job's estimate does not fit in what the GPU has free."""


@dataclass(frozen=True)
class Device:
    index: int
    name: str
    total_gib: float
    free_gib: float
    bf16: bool = True  # computes in bf16 natively (compute capability 8 and newer), where training picks it


def devices(visible: str | None = None) -> list[Device]:
    """The GPUs this process may use (``CUDA_VISIBLE_DEVICES``) with their free memory, from NVML:
    no torch import, no CUDA context. Empty without a GPU or a driver."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES") if visible is None else visible
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no driver, no library: no GPU
        return []
    try:
        indices = range(pynvml.nvmlDeviceGetCount())
        if visible is not None and visible.strip():
            indices = [int(i) for i in visible.split(",") if i.strip().isdigit()]
        out = []
        for i in indices:
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            info = pynvml.nvmlDeviceGetMemoryInfo(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            major, _ = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            out.append(Device(i, name.decode() if isinstance(name, bytes) else name, info.total / GIB, info.free / GIB,
                              major >= 8))
        return out
    finally:
        pynvml.nvmlShutdown()


def _request_file(workspace: Workspace):
    return workspace.cache / "unload-models.json"


def request_unload(workspace: Workspace, timeout_s: float = UNLOAD_WAIT_S, poll_s: float = 0.2) -> list[str] | None:
    """Ask the web process to unload its models; the names it unloaded, or None when no web
    process answered within ``timeout_s``."""
    request_id = uuid.uuid4().hex
    write_json_atomic(_request_file(workspace), {"id": request_id, "asked": now_iso()})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answer = read_json(_request_file(workspace))
        if isinstance(answer, dict) and answer.get("done") == request_id:
            return list(answer.get("unloaded") or [])
        time.sleep(poll_s)
    return None


def serve_unload_requests(workspace: Workspace, unload: Callable[[], list[str]], stop: threading.Event,
                          poll_s: float = 0.5) -> threading.Thread:
    """(web process) A thread that answers each unload request by calling ``unload``."""

    def loop() -> None:
        while not stop.wait(poll_s):
            request = read_json(_request_file(workspace))
            if isinstance(request, dict) and request.get("id") and request.get("done") != request["id"]:
                names = unload()
                write_json_atomic(_request_file(workspace), {**request, "done": request["id"],
                                                             "unloaded": names, "answered": now_iso()})

    thread = threading.Thread(target=loop, name="unload-requests", daemon=True)
    thread.start()
    return thread


def make_room(workspace: Workspace, need_gib: float, log: Callable[[str], None],
              free: Callable[[], list[Device]] = devices, timeout_s: float = UNLOAD_WAIT_S) -> dict:
    """Make sure ``need_gib`` fits on the tightest of the job's GPUs (each data-parallel rank
    holds a full copy); unload the web process's models if that makes it fit; refuse otherwise.
    What was seen, for the run record."""
    gpus = free()
    if not gpus:
        return {"gpus": []}
    tightest = min(d.free_gib for d in gpus) * HEADROOM
    seen = {"need_gib": round(need_gib, 2), "free_gib": round(tightest, 2), "gpus": [d.index for d in gpus]}
    if need_gib <= tightest:
        return seen
    log(f"this job needs about {need_gib:.1f} GiB of GPU memory and {tightest:.1f} GiB is free: "
        "asking the web process to unload its chat and annotation models")
    unloaded = request_unload(workspace, timeout_s)
    tightest = min(d.free_gib for d in free()) * HEADROOM
    seen.update(unloaded=unloaded, free_after_unload_gib=round(tightest, 2))
    if need_gib <= tightest:
        log(f"unloaded {', '.join(unloaded or []) or 'nothing'}; {tightest:.1f} GiB free now")
        return seen
    answered = "after the web process unloaded its models" if unloaded is not None else "(no web process answered)"
    raise NotEnoughGpuMemory(
        f"this job needs about {need_gib:.1f} GiB of GPU memory and {tightest:.1f} GiB is free on GPU "
        f"{', '.join(str(d.index) for d in gpus)} {answered}; lower batch_size or max_length, use QLoRA "
        "(quantization 4bit), or wait for the job holding the GPU to finish")
