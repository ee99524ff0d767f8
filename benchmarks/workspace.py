"""What the benchmarks share: a throw-away workspace on the default model (provisioned offline)
or on ``--model``, the ``workbench`` command called in this process (quietly, where its progress
lines would bury the figures), and the report written as JSON."""
from __future__ import annotations

import contextlib
import io
import json
import os
import socket
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


def quiet(cli, *args: str) -> None:
    """``workbench ARGS`` in this process with its output held back; exits with it on failure."""
    log = io.StringIO()
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        code = cli(list(args))
    if code != 0:
        raise SystemExit(f"workbench {' '.join(args)} failed:\n{log.getvalue()[-3000:]}")


def emit(report: dict, path: Path | None) -> None:
    """The report to ``path`` (when given) and as the last line of stdout."""
    if path:
        path.write_text(json.dumps(report, indent=2))
    print(json.dumps(report))



def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
