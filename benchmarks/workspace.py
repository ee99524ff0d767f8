"""What the benchmarks share: a throw-away workspace on the default model (provisioned offline)
or on ``--model``, and the ``workbench`` command called in this process."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def temporary_workspace(prefix: str, model: str | None):
    """(workspace folder, the CLI's ``main``), or (folder, None) when provisioning failed."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ.update(WORKBENCH_HOME=str(home), WORKBENCH_AUTO_PULL="0", HF_HUB_OFFLINE="1")
    from workbench.cli import main as cli

    if model:
        os.environ["WORKBENCH_BASE_MODEL"] = model
    elif cli(["models", "pull", "--json"]) != 0:
        return home, None
    return home, cli
