"""The one way to turn a file name that came from a request (a form field, an API argument, a
config value) into a path: resolved under the folder it belongs to, or refused.

Refused: empty names, absolute paths, ``~``, any ``..`` component, control characters, and names
whose resolved path (symlinks followed) leaves the folder. A name that must exist and does not
is refused with the same message as one that escapes, so an answer never tells whether
something exists outside the folder.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath

MAX_NAME_CHARS = 255


class NameRefused(ValueError):
    """A user-given file name that does not name a file inside its folder."""


def resolve_under(folder: Path, name: str, *, must_exist: bool = True, label: str | None = None,
                  what: str = "file") -> Path:
    """The path of ``name`` inside ``folder``; ``NameRefused`` otherwise.

    ``must_exist``: the name must be an existing regular file (else one for a file to create: its
    resolved path must still fall inside ``folder``). ``label`` names the folder in messages
    (``data/``); the folder's own path is never shown to the caller.
    """
    label = label or f"{Path(folder).name}/"
    refused = NameRefused(f"no {what} named {str(name)[:MAX_NAME_CHARS]!r} in {label}")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS:
        raise refused
    text = name.strip()
    if any(ord(c) < 32 or c == "\x7f" for c in text) or "\\" in text:
        raise refused
    parts = PurePosixPath(text).parts
    if text.startswith(("/", "~")) or ".." in parts or not parts:
        raise refused
    root = Path(folder).resolve()
    path = (root / text).resolve()
    if path == root or not path.is_relative_to(root):
        raise refused
    if must_exist and not path.is_file():
        raise refused
    if not must_exist and path.exists() and not path.is_file():
        raise refused
    return path


def within(folder: Path, path: Path) -> bool:
    """True when ``path`` (symlinks followed) lies inside ``folder``."""
    return Path(path).resolve().is_relative_to(Path(folder).resolve())
