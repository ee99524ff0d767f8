"""The one runner every job kind goes through: queued -> (its GPUs reserved) -> running (pid, host,
heartbeat, GPUs) -> the core function with its JobContext -> succeeded / failed (with the error) /
cancelled."""
from __future__ import annotations

import gc
import os
import socket
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from typing import Iterator

from jobs import gpus as gpu_reservation
from jobs.reaper import process_start_time
from storage import RunRecord, RunStore, Unreadable
from storage.runs import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, now_iso
from workbench.configs import config_from_dict
from workbench.errors import WorkbenchError
from workbench.job_context import JobContext
from workbench.kinds import get_kind
from workbench.reporting import Cancelled
from workbench.runtime import release_openmp_pool
from workbench.settings import Settings


class Heartbeat:
    """Touches the run's heartbeat every ``interval`` seconds from a daemon thread."""

    def __init__(self, run: RunRecord, interval: float):
        self.run, self.interval = run, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{run.id}", daemon=True)

    def __enter__(self):
        self.run.beat()
        self._thread.start()
        return self

    def _loop(self):
        while not self._stop.wait(self.interval):
            try:
                self.run.beat()
            except OSError:
                pass

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=self.interval + 1)


def execute(settings: Settings, run_id: str, echo: bool = False) -> dict:
    """Run one queued run to its outcome; returns the final status. Never raises for job errors."""
    run = RunStore(settings.workspace.runs).get(run_id)
    status = run.status()
    if isinstance(status, Unreadable):
        raise RuntimeError(f"run {run_id}: {status.reason}")
    if status.get("status") != QUEUED:
        return status  # cancelled while queued, or already taken
    try:
        with _reserve_gpus(settings, run, status) as gpus:
            return _execute(settings, run, status, gpus, echo)
    except InterruptedError:  # cancelled while it waited for a GPU
        return run.status()
    except gpu_reservation.NotEnoughGpus as exc:
        run.log(str(exc))
        run.transition({QUEUED}, FAILED, finished=now_iso(), error=str(exc), resumable=False)
        return run.status()


@contextmanager
def _reserve_gpus(settings: Settings, run: RunRecord, status: dict) -> Iterator[list[int]]:
    """The GPUs a job of the GPU queue computes on, held while it runs (none on a machine
    without GPUs, and none for CPU-queue jobs)."""
    try:
        kind = get_kind(status["kind"])
    except (KeyError, ValueError):
        kind = None
    every = gpu_reservation.host_gpus() if kind is not None and kind.queue == "gpu" else []
    if not every:
        yield []
        return
    stored = run.config()
    count = kind.gpus((stored.get("config") if isinstance(stored, dict) else None) or {})
    own = gpu_reservation.pinned(os.environ.get("CUDA_VISIBLE_DEVICES"))

    def waiting(busy: list[int]) -> None:
        message = f"waiting for GPU {', '.join(map(str, busy))} (held by another job)"
        run.log(message)
        # who waits: if this worker dies meanwhile, the reaper fails the run instead of leaving
        # it queued with no task behind it
        run.update(message=message, waiting_pid=os.getpid(), waiting_pid_start=process_start_time(os.getpid()),
                   waiting_host=socket.gethostname())

    def cancelled() -> bool:
        now = run.status()
        return not isinstance(now, dict) or now.get("status") != QUEUED

    with gpu_reservation.reserve(settings.workspace.workers / "gpus", own, every, count,
                                 waiting=waiting, cancelled=cancelled) as held:
        gpu_reservation.pin_process(held, own)
        yield held


def _execute(settings: Settings, run: RunRecord, status: dict, gpus: list[int], echo: bool) -> dict:
    if not run.transition({QUEUED}, RUNNING, pid=os.getpid(), pid_start=process_start_time(os.getpid()),
                          host=socket.gethostname(), gpus=gpus, message=None, waiting_pid=None,
                          started=now_iso(), started_at=time.time(), finished=None, error=None):
        return run.status()  # cancelled while queued, or already taken
    context = JobContext.of(run, settings, resume_from=status.get("resume_from"), gpus=gpus, echo=echo)
    with Heartbeat(run, settings.heartbeat_s):
        try:
            kind = get_kind(status["kind"])
            config_cls, function = kind.load()
            stored = run.config()
            if isinstance(stored, Unreadable):
                raise RuntimeError(f"config.json {stored.reason}")
            config = config_from_dict(config_cls, stored.get("config"))
            run.log(f"attempt {status.get('attempt', 1)} of {kind.name} started on "
                    f"{socket.gethostname()} (pid {os.getpid()})")
            result = function(config, context)
            run.log("succeeded")
            run.transition({RUNNING}, SUCCEEDED, finished=now_iso(), result=result, resumable=False)
            _follow_up(settings, run, kind.name, stored.get("config") or {}, status.get("user"))
        except Cancelled as exc:
            run.log(str(exc))
            run.transition({RUNNING}, CANCELLED, finished=now_iso(),
                           resumable=run.latest_checkpoint() is not None)
        except KeyboardInterrupt:
            run.log("interrupted")
            run.transition({RUNNING}, CANCELLED, finished=now_iso(), error="interrupted",
                           resumable=run.latest_checkpoint() is not None)
            raise
        except Exception as exc:  # the job failed; the worker carries on
            run.log("".join(traceback.format_exception(exc)).rstrip())
            said = str(exc) if isinstance(exc, WorkbenchError) else f"{type(exc).__name__}: {exc}"
            run.transition({RUNNING}, FAILED, finished=now_iso(), error=said,
                           resumable=run.latest_checkpoint() is not None)
        finally:
            context.reporter.close()
            _release_memory()
    return run.status()


def _follow_up(settings: Settings, run: RunRecord, kind: str, config: dict, user: str | None) -> None:
    """Queue what a success sets going (a new reward model re-scores the informative pair sets;
    with the arena on, a new model's pairs against its parent), each on its own: one that fails
    is logged and the others still go. Never fails the run."""
    from jobs import control
    from workbench.feedback.arena import follow_ups

    try:
        planned = follow_ups(settings, kind, config)
    except Exception as exc:  # noqa: BLE001 - the run itself succeeded
        run.log(f"nothing queued after the run: {exc}")
        return
    for follow_kind, follow_config, why in planned:
        if follow_kind is None:
            run.log(why)
            continue
        try:
            queued = control.submit(settings, follow_kind, follow_config, user=user)
            run.log(f"queued {follow_kind} run {queued.id}: {why}")
        except Exception as exc:  # noqa: BLE001 - the others still go
            run.log(f"could not queue {follow_kind} ({why}): {exc}")


def _release_memory() -> None:
    """Free what the job held: its objects, the GPU cache, and this thread's OpenMP pool (the next
    job may run on another of the consumer's threads: see ``workbench.runtime``)."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None:
        release_openmp_pool()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
