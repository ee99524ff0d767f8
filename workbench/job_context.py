"""What the runner hands every job beside its Config: the settings it runs under (a job never
reads them from the environment), its run record, the reporter that writes its log, metrics and
progress into the run folder, the checkpoint it resumes from and the GPUs reserved for it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from storage import RunRecord, Workspace
from workbench.reporting import RunReporter, SilentReporter
from workbench.settings import Settings


@dataclass(frozen=True)
class JobContext:
    settings: Settings
    run: RunRecord
    reporter: RunReporter
    resume_from: Path | None = None
    gpus: tuple[int, ...] = ()  # the GPUs reserved for this job (empty: none, or no GPU)

    @classmethod
    def of(cls, run: RunRecord, settings: Settings, resume_from: str | Path | None = None,
           gpus=(), echo: bool = False, silent: bool = False) -> "JobContext":
        """The context of ``run``: ``silent`` for the ranks after the first of a multi-process
        run (they read the cancel flag and write nothing), ``echo`` to show the reporting in
        this terminal too."""
        reporter = SilentReporter(run) if silent else RunReporter(run, echo=echo)
        return cls(settings, run, reporter, Path(resume_from) if resume_from else None, tuple(gpus or ()))

    @property
    def workspace(self) -> Workspace:
        return self.settings.workspace
