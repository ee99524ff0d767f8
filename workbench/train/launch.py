"""The job side of training: start the training child (one process by default; N ranks through
``torchrun`` for data parallelism), copy its output into the run log, and turn its outcome into
the job's.
A cancel or a crash of the child frees all of its memory; the child dies with the worker."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from storage import read_json, write_json_atomic
from workbench.errors import WorkbenchError
from workbench.job_context import JobContext
from workbench.reporting import Cancelled
from workbench.subprocesses import die_with_parent, killed_by_signal_9, machine_memory_bytes, tree_rss_bytes
from workbench.train.config import TrainConfig

RESULT = "result.json"
FIT = "fit.json"  # the settings the memory fit changed, applied by the child
CANCEL_GRACE_S = 300.0  # a child that finishes no step this long after a cancel (stuck) is stopped
QUIET = {"TOKENIZERS_PARALLELISM": "false", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
         "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1", "PYTHONUNBUFFERED": "1",
         "TRL_EXPERIMENTAL_SILENCE": "1"}


def command(run_folder, processes: int) -> list[str]:
    """One process: the child itself (under torchrun a world of one is still wrapped in DDP, which
    costs a gradient all-reduce a step and breaks TRL's PPO). Several: torchrun, one rank each."""
    child = ["-m", "workbench.train.child", str(run_folder)]
    if processes == 1:
        return [sys.executable, *child]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", *child]


def child_env(settings, processes: int, resume_from, gpus: list[int] | None = None) -> dict[str, str]:
    """The training child's environment: the job's settings (its entry point reads them back), the
    checkpoint to resume from and the GPUs reserved for it."""
    env = {**settings.child_env(), **QUIET, "WORKBENCH_RESUME_FROM": str(resume_from or "")}
    if gpus:  # the GPUs the runner reserved for this job: one rank on each
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))
    if "OMP_NUM_THREADS" not in env:  # torchrun would pin every rank to one thread
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // processes))
    return env


def run_in_child(config: TrainConfig, context: JobContext) -> dict:
    reporter = context.reporter
    run = context.run
    (run.folder / RESULT).unlink(missing_ok=True)
    _check_devices(config.num_processes, context.gpus)
    _fit_memory(config, context)
    args = command(run.folder, config.num_processes)
    reporter.log(f"starting {config.num_processes} training process(es)"
                 + (" with torchrun" if config.num_processes > 1 else ""))
    proc = subprocess.Popen(args, env=child_env(context.settings, config.num_processes, context.resume_from,
                                                context.gpus),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                            bufsize=1, preexec_fn=die_with_parent)
    tail: list[str] = []

    def copy_output():
        for line in proc.stdout:
            line = line.rstrip()
            if line:
                tail.append(line)
                del tail[:-40]
                reporter.log(line)

    reader = threading.Thread(target=copy_output, daemon=True)
    reader.start()
    run.update(child_pid=proc.pid)
    cancel_seen, last_progress, peak = None, None, 0
    while proc.poll() is None:
        time.sleep(0.2)
        peak = max(peak, tree_rss_bytes(proc.pid))
        progress = _progress(run)
        if progress != last_progress:
            last_progress = progress
            if progress and cancel_seen is not None:
                cancel_seen = time.monotonic()  # still finishing steps: it will stop at the next one
            if progress and getattr(reporter, "echo", False):
                reporter.progress(progress["done"], progress["total"])
        if cancel_seen is None and reporter.cancel_requested():
            cancel_seen = time.monotonic()
        if cancel_seen is not None and time.monotonic() - cancel_seen > CANCEL_GRACE_S:
            reporter.log(f"the training process did not stop within {CANCEL_GRACE_S:.0f} s of the cancel; stopping it")
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    reader.join(timeout=5)
    outcome = read_json(run.folder / RESULT)
    if isinstance(outcome, dict) and outcome.get("status") == "cancelled":
        raise Cancelled(outcome.get("message") or "cancelled by user")
    if proc.returncode != 0 or not isinstance(outcome, dict) or outcome.get("status") != "succeeded":
        if cancel_seen is not None:
            raise Cancelled("cancelled by user")
        if isinstance(outcome, dict) and outcome.get("error"):
            raise RuntimeError(outcome["error"])
        if killed_by_signal_9(proc.returncode, tail):
            raise WorkbenchError(killed_message(peak, machine_memory_bytes()))
        if proc.returncode < 0:  # another signal: its last line is no cause either
            raise WorkbenchError(f"training process stopped by {signal_name(-proc.returncode)}")
        raise RuntimeError(f"training process exited with code {proc.returncode}: {_last_error(tail)}")
    return outcome.get("result") or {}


def killed_message(peak_bytes: int, total_bytes: int) -> str:
    """What a training child killed by SIGKILL is reported as: its last line is no cause (on a CPU
    with AVX512-BF16 it is bitsandbytes' warning that it has no Hub kernel, printed at every start)."""
    gib = 2**30
    seen = f": peak {peak_bytes / gib:.1f} GB of {total_bytes / gib:.0f} GB" if peak_bytes and total_bytes else ""
    return f"killed by the system (out of memory?){seen}; lower batch_size or max_length"


def _fit_memory(config: TrainConfig, context: JobContext) -> None:
    """Before the child starts: the micro-batch (same effective batch) and gradient checkpointing
    that fit in the memory free now, on the GPUs the job holds or on the host, written to
    ``fit.json`` for the child; a run that fits nowhere, even after the web process unloaded its
    models, is refused with the estimate. A resumed run keeps the fit its checkpoints were made with."""
    import importlib

    from workbench.gpu_memory import devices, make_room
    from workbench.kinds import get_kind
    from workbench.models.loading import ModelNotFound, resolve
    from workbench.train import memory
    from workbench.train.preflight import start_name

    run, settings, reporter = context.run, context.settings, context.reporter
    if context.resume_from is not None and (run.folder / FIT).is_file():
        return
    (run.folder / FIT).unlink(missing_ok=True)
    status = run.status()
    summary = (status if isinstance(status, dict) else {}).get("preflight") or {}
    sequence, completion = summary.get("sequence_tokens"), summary.get("completion_tokens") or 0
    shape = getattr(importlib.import_module(get_kind((run.config() or {}).get("kind", "")).module), "memory_shape", None)
    try:
        start = start_name(settings, config.model, summary)
        facts = memory.model_facts(resolve(start, context.workspace, settings.base_model).path)
    except ModelNotFound:
        return  # the child says why
    if not sequence or shape is None or not facts["parameters"]:
        return
    visible = ",".join(map(str, context.gpus)) if context.gpus else None
    others = summary.get("other_model_parameters")
    cuda = bool(devices(visible))

    def fitted_in(available: int):
        return memory.fit(facts, shape(config), config, sequence, available, cuda=cuda, workspace=context.workspace,
                          completion=completion, others=others)

    available, where = memory.room(settings.train_memory_gb, config.num_processes, free=True, cuda=cuda, visible=visible)
    fitted = fitted_in(available)
    if cuda and not fitted.fits:  # ask the web process for its GPU memory, or refuse with the estimate
        run.update(gpu_memory=make_room(context.workspace, fitted.need.gib, reporter.log,
                                        free=lambda: devices(visible)))
        available, where = memory.room(settings.train_memory_gb, config.num_processes, free=True, cuda=cuda,
                                       visible=visible)
        fitted = fitted_in(available)
    elif not fitted.fits:
        raise WorkbenchError(f"not enough memory free to start: this run needs {memory.describe(fitted, available, where)}; "
                             "wait for the other jobs to finish, or lower max_length or max_prompt_length")
    changes = fitted.changes(config)
    run.update(memory_fit={"gib": round(fitted.need.gib, 2), "available_gib": round(available / memory.GIB, 2),
                           **changes})
    if changes:
        write_json_atomic(run.folder / FIT, changes)
        reporter.log(f"to fit in memory: {', '.join(f'{k} {v}' for k, v in changes.items())} "
                     f"({memory.describe(fitted, available, where)})")


def _progress(run) -> dict | None:
    status = run.status()
    return status.get("progress") if isinstance(status, dict) else None


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _last_error(lines: list[str]) -> str:
    for line in reversed(lines):
        if ("Error" in line or "Exception" in line) and "ChildFailedError" not in line:
            return line.strip()[-500:]
    return lines[-1].strip()[-500:] if lines else "no output"


def _check_devices(processes: int, reserved: list[int]) -> None:
    """Several ranks on GPUs need as many GPUs reserved (the runner reserves ``num_processes``
    of them on a machine with GPUs; without GPUs the ranks run on the CPU)."""
    if processes > 1 and reserved and len(reserved) < processes:
        raise RuntimeError(f"num_processes {processes} needs {processes} GPUs and this job holds "
                           f"{len(reserved)} (GPU {', '.join(map(str, reserved))})")
