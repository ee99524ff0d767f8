"""Run records: ``runs/<id>/`` holds config.json, status.json, log.txt, metrics.jsonl, a heartbeat,
a cancel flag, its input files and checkpoints. Everything a job knows lives here, so any process
can read it. Whether a run's worker is still alive is for ``jobs.reaper`` to judge."""
from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from storage.atomic import Unreadable, atomic_path, read_json, write_json_atomic
from storage.jsonl import append_jsonl, read_jsonl

if TYPE_CHECKING:
    from filelock import FileLock  # imported when a lock is taken: 30 ms a command otherwise

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
ACTIVE = frozenset({QUEUED, RUNNING})
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})
WORKER_LOST = "worker lost"
COMPLETE_MARKER = "COMPLETE"


def checkpoint_step(path: Path) -> int:
    """The step a checkpoint folder was saved at (``step-00000012``, ``checkpoint-12``); -1 if none."""
    digits = re.search(r"(\d+)$", Path(path).name)
    return int(digits.group(1)) if digits else -1


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _hostname() -> str:
    import socket  # here, not at the top: every command imports this module

    return socket.gethostname()


@dataclass(frozen=True)
class RunRecord:
    """One run folder. Methods read and write its files; nothing is cached in memory."""

    folder: Path

    @property
    def id(self) -> str:
        return self.folder.name

    @property
    def checkpoints(self) -> Path:
        return self.folder / "checkpoints"

    # config and status -----------------------------------------------------------------
    def config(self) -> dict[str, Any] | Unreadable:
        data = read_json(self.folder / "config.json")
        return Unreadable(str(self.folder / "config.json"), "missing") if data is None else data

    def status(self) -> dict[str, Any] | Unreadable:
        data = read_json(self.folder / "status.json")
        return Unreadable(str(self.folder / "status.json"), "missing") if data is None else data

    def _lock(self) -> FileLock:
        from filelock import FileLock

        return FileLock(str(self.folder / ".status.lock"))

    def update(self, **fields: Any) -> dict[str, Any]:
        """Merge fields into status.json atomically, under the run's lock."""
        with self._lock():
            current = self.status()
            current = {} if isinstance(current, Unreadable) else current
            current.update(fields)
            write_json_atomic(self.folder / "status.json", current)
            return current

    def transition(self, allowed_from: set[str] | frozenset[str], to: str,
                   when: Callable[[dict[str, Any]], bool] | None = None, **fields: Any) -> bool:
        """Move to ``to`` only if the current status is in ``allowed_from`` (and ``when`` holds for
        the current status, when given); returns whether it moved."""
        with self._lock():
            current = self.status()
            if isinstance(current, Unreadable) or current.get("status") not in allowed_from \
                    or (when is not None and not when(current)):
                return False
            current.update(fields, status=to)
            write_json_atomic(self.folder / "status.json", current)
            return True

    # log, metrics, heartbeat, cancel ---------------------------------------------------
    def log(self, message: str) -> None:
        stamp = datetime.now().strftime("%H:%M:%S")
        lines = "".join(f"{stamp} {line}\n" for line in str(message).splitlines() or [""])
        with open(self.folder / "log.txt", "a", encoding="utf-8") as handle:
            handle.write(lines)

    def read_log(self, max_bytes: int = 200_000) -> str:
        path = self.folder / "log.txt"
        try:
            size = path.stat().st_size
            with open(path, "rb") as handle:
                handle.seek(max(0, size - max_bytes))
                return handle.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def add_metrics(self, record: dict[str, Any]) -> None:
        append_jsonl(self.folder / "metrics.jsonl", [record])

    def metrics(self) -> list[dict[str, Any]]:
        return read_jsonl(self.folder / "metrics.jsonl", strict=False)

    def beat(self) -> None:
        write_json_atomic(self.folder / "heartbeat.json",
                          {"time": time.time(), "pid": os.getpid(), "host": _hostname()})

    def heartbeat_age(self) -> float | None:
        data = read_json(self.folder / "heartbeat.json")
        if not isinstance(data, dict) or "time" not in data:
            return None
        return time.time() - float(data["time"])

    def request_cancel(self) -> None:
        (self.folder / "cancel").touch()

    def cancel_requested(self) -> bool:
        return (self.folder / "cancel").exists()

    def clear_cancel(self) -> None:
        (self.folder / "cancel").unlink(missing_ok=True)

    # inputs: the exact data a run uses, copied when it is created --------------------
    @property
    def inputs(self) -> Path:
        return self.folder / "inputs"

    def add_input(self, role: str, source: Path) -> Path:
        """Copy ``source`` into ``inputs/<role>.jsonl`` (a later change of the source does not
        change what the run reads)."""
        target = self.inputs / f"{role}.jsonl"
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)
        return target

    # checkpoints ---------------------------------------------------------------------
    def checkpoint_dir(self, step: int) -> Path:
        path = self.checkpoints / f"step-{step:08d}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @staticmethod
    def mark_complete(checkpoint: Path) -> None:
        (Path(checkpoint) / COMPLETE_MARKER).write_text(now_iso())

    def latest_checkpoint(self) -> Path | None:
        """The newest checkpoint that carries the completeness marker."""
        if not self.checkpoints.is_dir():
            return None
        done = [p for p in self.checkpoints.iterdir() if (p / COMPLETE_MARKER).exists()]
        return max(done, key=checkpoint_step) if done else None

    # summary ---------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        status = self.status()
        if isinstance(status, Unreadable):
            return {"id": self.id, "kind": "?", "status": "unreadable", "error": status.reason,
                    "progress": None, "created": None, "started": None, "finished": None}
        out = {"id": self.id, "kind": status.get("kind", "?"), "status": status.get("status", "?"),
               "progress": status.get("progress"), "created": status.get("created"),
               "started": status.get("started"), "finished": status.get("finished"),
               "error": status.get("error"), "attempt": status.get("attempt", 1),
               "resumable": status.get("resumable", False), "message": status.get("message"),
               "user": status.get("user"), "host": status.get("host"), "gpus": status.get("gpus") or [],
               "queue": status.get("queue"), "enqueued_at": status.get("enqueued_at")}
        return out


class RunStore:
    """All runs of a workspace (``runs/``)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def create(self, kind: str, config: dict[str, Any], queue: str, user: str | None = None) -> RunRecord:
        self.root.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        safe_kind = "".join(c if c.isalnum() else "-" for c in kind)
        folder = self.root / f"{stamp}-{safe_kind}-{os.urandom(3).hex()}"
        folder.mkdir()
        run = RunRecord(folder)
        write_json_atomic(folder / "config.json",
                          {"kind": kind, "queue": queue, "config": config, "user": user})
        write_json_atomic(folder / "status.json",
                          {"id": run.id, "kind": kind, "queue": queue, "status": QUEUED,
                           "created": now_iso(), "attempt": 1, "user": user,
                           "progress": None, "error": None})
        return run

    def get(self, run_id: str) -> RunRecord:
        if not run_id or "/" in run_id or run_id.startswith("."):
            raise KeyError(f"no such run: {run_id!r}")
        folder = self.root / run_id
        if not folder.is_dir():
            raise KeyError(f"no such run: {run_id!r}")
        return RunRecord(folder)

    def all(self) -> list[RunRecord]:
        if not self.root.is_dir():
            return []
        folders = [p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")]
        return [RunRecord(p) for p in sorted(folders, key=lambda p: p.name, reverse=True)]

    def list(self) -> list[dict[str, Any]]:
        return [run.summary() for run in self.all()]

    def delete(self, run_id: str) -> None:
        run = self.get(run_id)
        status = run.status()
        if not isinstance(status, Unreadable) and status.get("status") in ACTIVE:
            raise ValueError(f"run {run_id} is {status['status']}; cancel it first")
        shutil.rmtree(run.folder)
