"""Annotation guidelines: Markdown a trainer writes, shown to annotators above every pair.

Each save is a new version, appended to ``data/guidelines.jsonl`` (the last line is the current
one; the history stays for whoever asks which rules an old vote followed). Every vote records
the version it was cast under, and the merge can keep only votes of the current version.
"""
from __future__ import annotations

from pathlib import Path

from storage import Workspace
from workbench.limits import text_from_file
from workbench.versioned_text import Version, latest, save

GUIDELINE_CHARS = 50_000
Guidelines = Version  # version 0: none written yet


def guidelines_file(workspace: Workspace) -> Path:
    return workspace.data / "guidelines.jsonl"


def current_guidelines(workspace: Workspace) -> Guidelines:
    return latest(guidelines_file(workspace))


def save_guidelines(workspace: Workspace, text: str, author: str) -> Guidelines:
    """A new version, unless the text is the current one (then nothing is written)."""
    return save(guidelines_file(workspace), text, author, "the guidelines", GUIDELINE_CHARS)


def guidelines_from_file(path: Path) -> str:
    """The Markdown of a file, refused with what to fix when it is not UTF-8 text."""
    return text_from_file(path, "the guidelines", GUIDELINE_CHARS)
