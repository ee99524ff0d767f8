"""The workspace on disk: layout, run records, locked JSONL files and model manifests.

This package imports nothing of the project, so every layer (core, jobs, UI, CLI) can share it.
"""
from storage.paths import Workspace
from storage.confine import NameRefused, resolve_under
from storage.atomic import Unreadable, read_json, write_json_atomic
from storage.jsonl import JsonlError, append_jsonl, read_jsonl
from storage.runs import RunRecord, RunStore, TERMINAL, ACTIVE
from storage.manifests import read_manifest, write_manifest, list_models

__all__ = [
    "Workspace", "NameRefused", "resolve_under", "Unreadable", "read_json", "write_json_atomic", "JsonlError", "append_jsonl",
    "read_jsonl", "RunRecord", "RunStore", "TERMINAL", "ACTIVE", "read_manifest",
    "write_manifest", "list_models",
]
