"""Entry point: settings -> build_ui() -> launch, with an embedded worker subprocess by default.

``python app.py`` (or ``workbench serve``) serves on 127.0.0.1:7860 with the workspace in
./workspace; ``--no-worker`` when workers run elsewhere (``workbench worker``).
"""
from __future__ import annotations

import argparse
import atexit
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from workbench.settings import Settings


def start_embedded_worker(settings: Settings) -> subprocess.Popen:
    from workbench.subprocesses import die_with_parent

    proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", "worker"], env=settings.child_env(),
                            preexec_fn=die_with_parent)

    def stop():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()

    atexit.register(stop)
    return proc


FILES_PER_UPLOAD = 16  # what one upload request may carry: this many files of the largest size


def main(no_worker: bool = False, host: str | None = None, port: int | None = None) -> int:
    settings = Settings.from_env()
    settings.secure_files()
    workspace = settings.workspace.ensure()
    # Before gradio is imported: no outbound analytics, uploads cached inside the workspace.
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("GRADIO_TEMP_DIR", str(workspace.cache / "uploads"))
    # Gradio's per-endpoint latency summary (only its API page shows it) is rebuilt as a pandas
    # table of the last 10,000 events after every event: half of the app's CPU in a walk of every
    # endpoint (tests/test_endpoint_walk.py), and a cost that grows with every Monitor tick on a
    # box that stays up. Kept over the last 1,000 events, rebuilt every 500.
    os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "1000")
    os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "500")
    # uvicorn takes the client address (and scheme) from X-Forwarded-For (-Proto) only when the
    # connection comes from one of these; by default from none, so a sign-in cannot pose as
    # another address.
    os.environ["FORWARDED_ALLOW_IPS"] = settings.trusted_proxies

    from jobs import control
    from workbench.auth import Users
    from starlette.middleware import Middleware

    from gradio.utils import get_upload_folder
    from workbench.chat.model_cache import CACHE
    from workbench.gpu_memory import serve_unload_requests
    from workbench.ui import CSS, HEAD, build_ui
    from workbench.ui.file_guard import FileGuard
    from workbench.ui.http_policy import HttpPolicy
    from workbench.ui.login import LoginGuard, SessionGuard, Sessions
    from workbench.ui.upload_quota import StagedUploads, UploadQuota

    users = Users(settings.auth_file)  # a broken auth file stops the start, with its reason
    staged = StagedUploads()
    if settings.embedded_worker and not no_worker:
        start_embedded_worker(settings)
    if settings.auto_pull:
        run = control.ensure_base_model(settings, user="system")
        if run is not None:
            print(f"base model missing: provisioning it as run {run.id} (see the Monitor tab)", flush=True)
    demo = build_ui(settings, users, staged)
    serve_unload_requests(workspace, CACHE.unload, threading.Event())  # GPU jobs ask for the memory back
    demo.queue(default_concurrency_limit=8)
    middleware = [Middleware(HttpPolicy)]  # the outermost: its headers go on every answer
    if users.enabled:
        sessions = Sessions()
        middleware += [Middleware(SessionGuard, users=users, sessions=sessions),
                       Middleware(LoginGuard, workspace=workspace, users=users, sessions=sessions)]
    middleware.append(Middleware(FileGuard, staged=staged, signed_in=users.enabled))
    middleware.append(Middleware(UploadQuota, workspace=workspace, quota_bytes=settings.upload_quota_mb * 2**20,
                                 staged=staged, upload_dir=Path(get_upload_folder()), signed_in_only=users.enabled,
                                 request_cap=FILES_PER_UPLOAD * (settings.max_upload_mb + 1) * 2**20))
    demo.launch(server_name=host or settings.host, server_port=port or settings.port,
                auth=users.verify if users.enabled else None, app_kwargs={"middleware": middleware},
                auth_message="Workbench: sign in" if users.enabled else None,
                max_file_size=f"{settings.max_upload_mb}mb", show_error=True, quiet=False, head=HEAD, css=CSS)
    return 0


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-worker", action="store_true", help="do not start the embedded worker")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = _parse()
    sys.exit(main(no_worker=args.no_worker, host=args.host, port=args.port))
