"""Model folders under ``models/``: written into a hidden staging folder beside the target with
their manifest, then renamed into place, so a failed or cancelled run leaves ``models/`` as it
was and a name that exists is replaced only when asked and only once the new folder is whole."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

from storage import Workspace, write_manifest


def publish(workspace: Workspace, name: str, overwrite: bool, run_id: str,
            write: Callable[[Path], None], manifest: dict[str, Any]) -> Path:
    target = workspace.model_dir(name)
    staging = target.with_name(f".{target.name}.partial-{run_id}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        write(staging)
        write_manifest(staging, manifest)
        if target.exists() and not overwrite:
            raise FileExistsError(f"a model named {name!r} appeared while this run worked; "
                                  "run again with another output name or with overwrite")
        if target.exists():
            retired = target.with_name(f".{target.name}.replaced-{run_id}")
            target.rename(retired)
            try:
                staging.rename(target)
            except BaseException:
                retired.rename(target)  # the old model comes back rather than vanish
                raise
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
