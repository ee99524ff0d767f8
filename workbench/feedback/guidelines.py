"""Annotation guidelines: Markdown a trainer writes, shown to annotators above every pair.

Each save is a new version, appended to ``data/guidelines.jsonl`` (the last line is the current
one; the history stays for whoever asks which rules an old vote followed). Every vote records
the version it was cast under, and the merge can keep only votes of the current version.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from storage import Workspace, append_jsonl
from storage.jsonl import iter_jsonl, lock_for
from storage.runs import now_iso
from workbench.errors import WorkbenchError
from workbench.limits import check_text, text_from_file

GUIDELINE_CHARS = 50_000


class Guidelines(NamedTuple):
    version: int  # 0: none written yet
    text: str
    author: str = ""
    timestamp: str = ""


def guidelines_file(workspace: Workspace) -> Path:
    return workspace.data / "guidelines.jsonl"


def current_guidelines(workspace: Workspace) -> Guidelines:
    """The highest version (a line edited by hand into a version below 1 is ignored)."""
    latest = Guidelines(0, "")
    for record in iter_jsonl(guidelines_file(workspace), strict=False):
        version = record.get("version")
        if isinstance(version, int) and not isinstance(version, bool) and version >= max(1, latest.version) \
                and isinstance(record.get("text"), str):
            latest = Guidelines(version, record["text"], str(record.get("author", "")), str(record.get("timestamp", "")))
    return latest


def save_guidelines(workspace: Workspace, text: str, author: str) -> Guidelines:
    """A new version, unless the text is the current one (then nothing is written)."""
    if not isinstance(text, str):
        raise WorkbenchError("guidelines must be text")
    check_text("the guidelines", text, GUIDELINE_CHARS)
    text = text.strip()
    path = guidelines_file(workspace)
    path.parent.mkdir(parents=True, exist_ok=True)
    with lock_for(path.with_suffix(".version")):
        current = current_guidelines(workspace)
        if text == current.text:
            return current
        saved = Guidelines(current.version + 1, text, author, now_iso())
        append_jsonl(path, [saved._asdict()])
    return saved


def guidelines_from_file(path: Path) -> str:
    """The Markdown of a file, refused with what to fix when it is not UTF-8 text."""
    return text_from_file(path, "the guidelines", GUIDELINE_CHARS)
