"""Texts a person rewrites over time (the annotation guidelines, the system prompt), kept as
versions in a JSONL file: each save appends one, the last is the current one, and the history
says which version an older vote or answer was given under."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from storage import Workspace, append_jsonl
from storage.jsonl import iter_jsonl, lock_for
from storage.runs import now_iso
from workbench.errors import WorkbenchError
from workbench.limits import check_text, text_from_file


class Version(NamedTuple):
    version: int  # 0: none written yet
    text: str
    author: str = ""
    timestamp: str = ""


def latest(path: Path | None) -> Version:
    """The highest version in ``path`` (a line edited by hand out of shape is ignored)."""
    found = Version(0, "")
    if path is None:
        return found
    for record in iter_jsonl(path, strict=False):
        version = record.get("version") if isinstance(record, dict) else None
        if isinstance(version, int) and not isinstance(version, bool) and version >= max(1, found.version) \
                and isinstance(record.get("text"), str):
            found = Version(version, record["text"], str(record.get("author", "")), str(record.get("timestamp", "")))
    return found


def save(path: Path, text: str, author: str, what: str, limit: int) -> Version:
    """A new version of ``what`` (at most ``limit`` characters), unless the text is the current
    one (then nothing is written). An empty text is a version too."""
    if not isinstance(text, str):
        raise WorkbenchError(f"{what} must be text")
    text = check_text(what, text, limit).strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    with lock_for(path.with_suffix(".version")):
        current = latest(path)
        if text == current.text:
            return current
        saved = Version(current.version + 1, text, author, now_iso())
        append_jsonl(path, [saved._asdict()])
    return saved


@dataclass(frozen=True)
class VersionedText:
    """One such text of a workspace: ``data/<filename>``, named ``what`` in messages, at most
    ``limit`` characters."""

    filename: str
    what: str
    limit: int

    def path(self, workspace: Workspace) -> Path:
        return workspace.data / self.filename

    def current(self, workspace: Workspace) -> Version:
        return latest(self.path(workspace))

    def save(self, workspace: Workspace, text: str, author: str) -> Version:
        """A new version, unless the text is the current one (then nothing is written)."""
        return save(self.path(workspace), text, author, self.what, self.limit)

    def from_file(self, path: Path) -> str:
        """The text of a file, refused with what to fix when it is not UTF-8 text."""
        return text_from_file(path, self.what, self.limit)
