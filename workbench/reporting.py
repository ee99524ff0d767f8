"""The reporter a job talks to: log lines, metrics, progress, cancel checks and checkpoints.
``RunReporter`` writes them into the run folder; a terminal bar can echo them. The runner hands
it to the job inside its ``JobContext`` (``workbench/job_context.py``)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from storage import RunRecord


class Cancelled(Exception):
    """Raised by ``check_cancel`` when the user asked the run to stop."""


class RunReporter:
    def __init__(self, run: RunRecord, echo: bool = False):
        self.run = run
        self._bar = None
        self._echo = echo

    @property
    def echo(self) -> bool:
        """Whether messages and progress are also shown in this terminal."""
        return self._echo

    def log(self, message: str) -> None:
        self.run.log(message)
        if self._echo:
            self._write(message)

    def metrics(self, step: int, **values: float) -> None:
        clean = {k: float(v) for k, v in values.items() if v is not None and math.isfinite(float(v))}
        self.run.add_metrics({"step": int(step), **clean})

    def progress(self, done: float, total: float, message: str | None = None) -> None:
        fields: dict[str, Any] = {"progress": {"done": done, "total": total}}
        if message is not None:
            fields["message"] = message
        self.run.update(**fields)
        if self._echo:
            self._bar_update(done, total, message)

    def cancel_requested(self) -> bool:
        return self.run.cancel_requested()

    def check_cancel(self) -> None:
        if self.cancel_requested():
            raise Cancelled("cancelled by user")

    def checkpoint_dir(self, step: int) -> Path:
        return self.run.checkpoint_dir(step)

    def checkpoint_complete(self, path: Path) -> None:
        self.run.mark_complete(path)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _bar_update(self, done: float, total: float, message: str | None) -> None:
        from tqdm import tqdm

        if self._bar is None:
            self._bar = tqdm(total=total, desc=self.run.id, unit="step", dynamic_ncols=True)
        self._bar.total = total
        self._bar.n = done
        if message:
            self._bar.set_postfix_str(message, refresh=False)
        self._bar.refresh()

    def _write(self, message: str) -> None:
        if self._bar is not None:
            self._bar.write(message)
        else:
            print(message, flush=True)


class SilentReporter(RunReporter):
    """For the ranks after the first of a multi-process run: reads the cancel flag, writes nothing."""

    def log(self, message: str) -> None:
        pass

    def metrics(self, step: int, **values: float) -> None:
        pass

    def progress(self, done: float, total: float, message: str | None = None) -> None:
        pass

    def checkpoint_complete(self, path: Path) -> None:
        pass
