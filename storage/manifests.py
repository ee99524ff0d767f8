"""Model manifests: ``models/<name>/manifest.json`` says what a model folder is and where it came from."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from storage.atomic import Unreadable, read_json, write_json_atomic

MANIFEST = "manifest.json"


def write_manifest(model_dir: Path, manifest: dict[str, Any]) -> None:
    write_json_atomic(Path(model_dir) / MANIFEST, manifest)


def read_manifest(model_dir: Path) -> dict[str, Any] | Unreadable | None:
    return read_json(Path(model_dir) / MANIFEST)


def list_models(models_root: Path) -> list[dict[str, Any]]:
    """One entry per folder under ``models/``: name, path, and manifest (or why it is unreadable)."""
    root = Path(models_root)
    if not root.is_dir():
        return []
    entries = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        manifest = read_manifest(folder)
        entry: dict[str, Any] = {"name": folder.name, "path": str(folder)}
        if isinstance(manifest, Unreadable):
            entry.update(kind="unknown", error=manifest.reason)
        elif manifest is None:
            entry.update(kind="unknown", error="no manifest.json")
        else:
            entry.update(kind=manifest.get("kind", manifest.get("method", "unknown")),
                         manifest=manifest)
        entries.append(entry)
    return entries
