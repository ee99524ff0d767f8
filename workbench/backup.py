"""``workbench backup DEST``: a consistent copy of a workspace while the app and workers run.

SQLite databases (the queue, the chunk store) are copied with SQLite's online backup, so a
commit in progress is either in the copy or not; the corpus (registry, originals, chunk store,
FAISS snapshot, export) is copied under the corpus lock, so its files agree; each JSONL file is
copied under the lock its appends take, so no half line is copied; runs and models are copied
as they are (a run still writing its log may end mid-line, which the readers skip). The upload
cache is left out. Restoring is copying the folder back while nothing runs.
"""
from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

from storage import Workspace
from storage.atomic import write_json_atomic
from storage.documents import DocumentStore
from storage.jsonl import lock_for
from storage.runs import now_iso

SKIPPED = {"cache"}  # regenerated: Gradio's uploads, scoreboard exports


def copy_sqlite(source: Path, target: Path) -> None:
    """SQLite's online backup: a consistent copy while other connections write."""
    src, dst = sqlite3.connect(source, timeout=30), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def _copy_file(source: Path, target: Path) -> None:
    if source.suffix == ".jsonl":
        with lock_for(source):
            shutil.copy2(source, target)
    else:
        shutil.copy2(source, target)


def _is_sqlite(path: Path) -> bool:
    if path.suffix not in (".db", ".sqlite", ".sqlite3"):
        return False
    with open(path, "rb") as handle:
        return handle.read(16) == b"SQLite format 3\x00"


def _copy_one(path: Path, destination: Path, counts: dict[str, int]) -> None:
    """One file: SQLite's backup for a database, else a copy; SQLite's side files, locks and
    temp files are left out (the backup carries what they hold)."""
    if path.name.endswith(("-wal", "-shm", ".lock", ".tmp")) or path.name.startswith(".corpus.db"):
        return
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        if _is_sqlite(path):
            copy_sqlite(path, destination)
        else:
            _copy_file(path, destination)
    except FileNotFoundError:  # deleted while the copy ran (a run folder, a temp file)
        return
    counts["files"] += 1
    counts["bytes"] += destination.stat().st_size


def _copy_tree(source: Path, target: Path, counts: dict[str, int]) -> None:
    for path in sorted(source.rglob("*")):
        if not path.is_dir():
            _copy_one(path, target / path.relative_to(source), counts)


def backup(workspace: Workspace, destination: Path) -> dict[str, Any]:
    """Copy ``workspace`` into ``destination`` (a new folder); what was copied."""
    destination = Path(destination).expanduser().resolve()
    if destination.exists() and any(destination.iterdir()):
        raise ValueError(f"{destination} is not empty; back up into a new folder")
    if workspace.contains(destination):
        raise ValueError(f"{destination} is inside the workspace; back up elsewhere")
    if not workspace.home.is_dir():
        raise ValueError(f"no workspace at {workspace.home}")
    started = time.monotonic()
    destination.mkdir(parents=True, exist_ok=True)
    counts = {"files": 0, "bytes": 0}
    with DocumentStore(workspace).lock():
        _copy_tree(workspace.data, destination / "data", counts)
    for child in sorted(workspace.home.iterdir()):
        if child.name in SKIPPED or child == workspace.data or child.name.startswith("."):
            continue
        if child.is_dir():
            _copy_tree(child, destination / child.name, counts)
        else:
            _copy_one(child, destination / child.name, counts)
    report = {"source": str(workspace.home), "destination": str(destination), "finished": now_iso(),
              "seconds": round(time.monotonic() - started, 1), **counts}
    write_json_atomic(destination / "backup.json", report)
    return report
