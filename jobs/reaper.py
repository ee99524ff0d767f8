"""The reaper: a ``running`` run whose worker is gone is marked ``failed: worker lost`` (resumable
when a complete checkpoint exists), so no run stays ``running`` forever; so is a ``queued`` run
whose worker died while it waited for a GPU (its queue message went with that worker). Liveness
on this host comes from /proc (pid and start time); across hosts, from the run's heartbeat.

A ``queued`` run whose message a consumer took off the queue and died with, before the run's
first write (Huey's dequeue deletes the message), is found by ``lost_messages``: its task is no
longer on the queue well after it was put there, and nobody has taken the run up."""
from __future__ import annotations

import os
import socket
import time
from datetime import datetime
from typing import Callable

from storage import RunRecord, RunStore, Unreadable
from storage.runs import FAILED, QUEUED, RUNNING, WORKER_LOST, now_iso


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state first); None if unreadable."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_start_time(pid: int) -> int | None:
    """The kernel's start time of a process (clock ticks since boot); tells a pid's reuse apart."""
    fields = _proc_stat(pid)
    return int(fields[19]) if fields else None


def process_alive(pid: int, start_time: int | None = None) -> bool:
    """Whether the process exists on this host (and is the same one, when its start time is known)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    fields = _proc_stat(pid)
    if fields is None:
        return True  # no /proc to ask: the signal check above is all we know
    if fields[0] == "Z":  # a zombie has exited even though its pid still answers
        return False
    return start_time is None or int(fields[19]) == start_time


def reap(store: RunStore, stale_after: float) -> list[str]:
    """Mark ``running`` runs whose worker is gone as failed ("worker lost"); returns their ids.

    On this host a worker is gone when its process no longer exists (pid and start time,
    so a reused pid does not count); a busy process whose heartbeat thread is starved of
    the GIL is not gone. For workers on other hosts the only signal is a heartbeat older
    than ``stale_after`` seconds.
    """
    reaped, host = [], socket.gethostname()
    for run in store.all():
        status = run.status()
        if isinstance(status, Unreadable):
            continue
        if status.get("status") == QUEUED and status.get("waiting_pid") and status.get("waiting_host") == host \
                and not process_alive(int(status["waiting_pid"]), status.get("waiting_pid_start")):
            if run.transition({QUEUED}, FAILED, error=WORKER_LOST, finished=now_iso(), waiting_pid=None,
                              resumable=run.latest_checkpoint() is not None):
                run.log(f"marked failed: {WORKER_LOST} while it waited for a GPU")
                reaped.append(run.id)
            continue
        if status.get("status") != RUNNING:
            continue
        if status.get("host") == host and status.get("pid"):
            gone = not process_alive(int(status["pid"]), status.get("pid_start"))
        else:
            age = run.heartbeat_age()
            gone = age > stale_after if age is not None else _age_of(status.get("started")) > stale_after
        if gone:
            resumable = run.latest_checkpoint() is not None
            if run.transition({RUNNING}, FAILED, error=WORKER_LOST, finished=now_iso(),
                              resumable=resumable):
                run.log(f"marked failed: {WORKER_LOST}" + (" (resumable)" if resumable else ""))
                reaped.append(run.id)
    return reaped


def lost_messages(store: RunStore, queue: str, on_queue: Callable[[], set[str]],
                  grace: float) -> list[tuple[RunRecord, str]]:
    """(run, its lost task id) for each ``queued`` run of ``queue`` that no worker holds (none waits
    for a GPU with it) and whose task, put on the queue over ``grace`` seconds ago, is not among
    ``on_queue()``, the task ids the queue holds (asked only when some run is that old). A consumer
    between its dequeue and the run's first write holds a message for milliseconds; ``grace`` is
    the heartbeat's staleness."""
    now, candidates = time.time(), []
    for run in store.all():
        status = run.status()
        if isinstance(status, Unreadable) or status.get("status") != QUEUED or status.get("queue") != queue:
            continue
        if status.get("task_id") and not status.get("waiting_pid") and \
                now - float(status.get("enqueued_at") or now) > grace:
            candidates.append((run, status["task_id"]))
    if not candidates:
        return []
    held = on_queue()
    return [(run, task_id) for run, task_id in candidates if task_id not in held]


def _age_of(iso: str | None) -> float:
    if not iso:
        return float("inf")
    try:
        return time.time() - datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return float("inf")
