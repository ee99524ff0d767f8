"""Submit, cancel, resume and delete runs: the only way the UI and the CLI put work on the queue.
Each is written to the audit log with the user who asked."""
from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from jobs.queues import get_huey, task_for
from storage import RunRecord, RunStore, Unreadable
from storage.runs import CANCELLED, FAILED, QUEUED, RUNNING, now_iso
from workbench import audit
from workbench.kinds import get_kind
from workbench.settings import Settings


def store(settings: Settings) -> RunStore:
    return RunStore(settings.workspace.ensure().runs)


def create(settings: Settings, kind: str, config: dict[str, Any] | None = None,
           user: str | None = None) -> RunRecord:
    """Validate the config, run the kind's preflight checks against the workspace, and write the
    run folder (status ``queued``) with a copy of its input files; nothing is enqueued."""
    spec = get_kind(kind)
    typed = spec.config(config)
    checked = spec.preflight(typed, settings)
    run = store(settings).create(spec.name, asdict(typed), spec.queue, user)
    audit.record(settings.workspace, user, "launch", run.id, detail=spec.name)
    if checked is not None:
        for role, path in checked.inputs.items():
            run.add_input(role, path)
        run.update(warnings=checked.warnings, preflight=checked.summary)
        for warning in checked.warnings:
            run.log(f"warning: {warning}")
    return run


def enqueue(settings: Settings, run: RunRecord) -> None:
    """Put the run's task on its queue; a queue that cannot be reached fails the run (resumable
    later) instead of leaving it ``queued`` with no task behind it."""
    status = run.status()
    try:
        huey = get_huey(settings, status["queue"])
        task = task_for(huey, status["kind"]).s(run.id)
        run.update(task_id=task.id, enqueued_at=time.time())
        huey.enqueue(task)
    except Exception as exc:
        run.transition({QUEUED}, FAILED, finished=now_iso(), error=f"could not enqueue: {exc}",
                       resumable=run.latest_checkpoint() is not None)
        run.log(f"could not enqueue: {exc}")
        raise


def submit(settings: Settings, kind: str, config: dict[str, Any] | None = None,
           user: str | None = None) -> RunRecord:
    run = create(settings, kind, config, user)
    enqueue(settings, run)
    return run


def cancel(settings: Settings, run_id: str, user: str | None = None) -> str:
    """Cancel a queued run at once (and revoke its task), or ask a running one to stop."""
    outcome = _cancel(settings, run_id)
    audit.record(settings.workspace, user, "cancel", run_id, detail=outcome)
    return outcome


def _cancel(settings: Settings, run_id: str) -> str:
    run = store(settings).get(run_id)
    if run.transition({QUEUED}, CANCELLED, finished=now_iso(), error=None):
        status = run.status()
        if status.get("task_id"):
            get_huey(settings, status["queue"]).revoke_by_id(status["task_id"])
        run.log("cancelled while queued")
        return "cancelled"
    status = run.status()
    if isinstance(status, Unreadable):
        raise ValueError(f"run {run_id} is unreadable: {status.reason}")
    if status.get("status") == RUNNING:
        run.request_cancel()
        run.log("cancel requested")
        return "cancel requested"
    raise ValueError(f"run {run_id} is {status.get('status')}; only queued or running runs can be cancelled")


def resume(settings: Settings, run_id: str, user: str | None = None) -> RunRecord:
    """Start a new attempt of a failed or cancelled run, from its last complete checkpoint if any."""
    run = store(settings).get(run_id)
    status = run.status()
    if isinstance(status, Unreadable):
        raise ValueError(f"run {run_id} is unreadable: {status.reason}")
    checkpoint = run.latest_checkpoint()
    if not run.transition({FAILED, CANCELLED}, QUEUED, attempt=int(status.get("attempt", 1)) + 1,
                          resume_from=str(checkpoint) if checkpoint else None, error=None,
                          finished=None, progress=None, message=None):
        raise ValueError(f"run {run_id} is {status.get('status')}; only failed or cancelled runs can be resumed")
    run.clear_cancel()
    audit.record(settings.workspace, user, "resume", run_id)
    run.log(f"resume requested: attempt {int(status.get('attempt', 1)) + 1}"
            + (f" from {checkpoint.name}" if checkpoint else " from the start (no complete checkpoint)"))
    enqueue(settings, run)
    return run


def delete(settings: Settings, run_id: str, user: str | None = None) -> None:
    """Delete a finished run's folder (an active run must be cancelled first)."""
    store(settings).delete(run_id)
    audit.record(settings.workspace, user, "delete", run_id)


def pending_counts(settings: Settings) -> dict[str, int | str]:
    counts: dict[str, int | str] = {}
    for queue in ("cpu", "gpu"):
        try:
            counts[queue] = get_huey(settings, queue).pending_count()
        except Exception as exc:  # a queue that cannot be reached is shown, not fatal
            counts[queue] = f"unreachable: {exc}"
    return counts


def ensure_base_model(settings: Settings, user: str | None = None) -> RunRecord | None:
    """Queue a ``models.pull`` when the default base model is missing and none is under way."""
    from workbench.models.provision import is_provisioned

    if settings.base_model or is_provisioned(settings.workspace):
        return None
    for summary in store(settings).list():
        if summary["kind"] == "models.pull" and summary["status"] in (QUEUED, RUNNING):
            return None
    return submit(settings, "models.pull", {}, user=user)
