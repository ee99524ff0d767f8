"""The training child: ``torchrun -m workbench.train.child RUN_FOLDER``. Each rank loads the run's
config and calls its method's ``train``; rank 0 writes the log, the metrics and ``result.json``."""
from __future__ import annotations

import importlib
import os
import sys
import traceback
import warnings
from pathlib import Path

from storage import RunRecord, read_json, write_json_atomic
from workbench.configs import config_from_dict
from workbench.job_context import JobContext
from workbench.kinds import get_kind
from workbench.reporting import Cancelled
from workbench.settings import Settings
from workbench.train.job import TrainJob
from workbench.train.launch import FIT, RESULT
from workbench.train.preflight import start_name


def main(argv: list[str]) -> int:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)  # library deprecation notes, not the run's news
    run = RunRecord(Path(argv[0]))
    rank, world, local = (int(os.environ.get(key, default)) for key, default in
                          (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)))
    resume = os.environ.get("WORKBENCH_RESUME_FROM") or None
    stored = run.config()
    module = importlib.import_module(get_kind(stored["kind"]).module)
    fitted = read_json(run.folder / FIT)
    config = config_from_dict(module.Config, {**stored.get("config"), **(fitted if isinstance(fitted, dict) else {})})
    status = run.status()
    settings = Settings.from_env()
    # ``auto``: the start model the launch chose, so a model trained meanwhile changes nothing
    config.model = start_name(settings, config.model, (status if isinstance(status, dict) else {}).get("preflight"))
    from transformers import set_seed

    set_seed(config.seed)  # new heads (a reward model's score) and LoRA start the same way each run
    context = JobContext.of(run, settings, resume_from=resume, silent=rank != 0)
    job = TrainJob(**vars(context), rank=rank, world_size=world, local_rank=local, curves=module.WATCH.curves)
    try:
        result = module.train(config, job)
    except Cancelled as exc:
        if rank == 0:
            write_json_atomic(run.folder / RESULT, {"status": "cancelled", "message": str(exc)})
        return 0
    except Exception as exc:
        traceback.print_exc()
        sys.stdout.flush()
        if rank == 0:
            write_json_atomic(run.folder / RESULT, {"status": "failed", "error": f"{type(exc).__name__}: {exc}"})
        return 1
    if rank == 0:
        write_json_atomic(run.folder / RESULT, {"status": "succeeded", "result": result})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
