"""Texts a person rewrites over time (the annotation guidelines, the system prompt), kept as
versions in a JSONL file: each save appends one, the last is the current one, and the history
says which version an older vote or answer was given under."""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from storage import append_jsonl
from storage.jsonl import iter_jsonl, lock_for
from storage.runs import now_iso
from workbench.errors import WorkbenchError
from workbench.limits import check_text


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
