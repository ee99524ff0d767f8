"""The one runner every job kind goes through: queued -> running (pid, host, heartbeat) -> the
core function with a reporter -> succeeded / failed (with the error) / cancelled."""
from __future__ import annotations

import gc
import os
import socket
import sys
import threading
import time
import traceback
from pathlib import Path

from storage import RunRecord, RunStore, Unreadable
from jobs.reaper import process_start_time
from storage.runs import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, now_iso
from workbench.configs import config_from_dict
from workbench.kinds import get_kind
from workbench.reporting import Cancelled, RunReporter
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
    if not run.transition({QUEUED}, RUNNING, pid=os.getpid(), pid_start=process_start_time(os.getpid()),
                          host=socket.gethostname(),
                          started=now_iso(), started_at=time.time(), finished=None, error=None):
        return run.status()  # cancelled while queued, or already taken
    resume = status.get("resume_from")
    reporter = RunReporter(run, resume_from=Path(resume) if resume else None, echo=echo)
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
            result = function(config, reporter)
            run.log("succeeded")
            run.transition({RUNNING}, SUCCEEDED, finished=now_iso(), result=result, resumable=False)
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
            run.transition({RUNNING}, FAILED, finished=now_iso(), error=f"{type(exc).__name__}: {exc}",
                           resumable=run.latest_checkpoint() is not None)
        finally:
            reporter.close()
            _release_memory()
    return run.status()


def _release_memory() -> None:
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
