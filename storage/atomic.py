"""Atomic files: the one way the workspace replaces a file (a temp file beside it, flushed and
fsynced, renamed over it; removed if anything fails), and JSON read back as data or
``Unreadable``."""
from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterator


@dataclass(frozen=True)
class Unreadable:
    """Stands in for a file that is missing, half-written or corrupted; says why."""

    path: str
    reason: str

    def __bool__(self) -> bool:
        return False


def _read_umask() -> int:
    umask = os.umask(0)  # the only way to read it; done once, at import, before any thread writes
    os.umask(umask)
    return umask


_UMASK = _read_umask()


def open_to_umask(path: Path) -> None:
    """Give a file another library created (SQLite makes its databases 0644 less the umask) the
    mode a plain ``open`` would, so a group that may write the workspace can write it too."""
    try:
        os.chmod(path, 0o666 & ~_UMASK)
    except FileNotFoundError:
        pass


def set_umask(mask: int) -> None:
    """The process umask, set (at start, before any thread writes) and remembered here."""
    global _UMASK
    os.umask(mask)
    _UMASK = mask


def _mode_for(path: Path) -> int:
    """The mode of the file being replaced, else what a plain ``open`` would give (mkstemp's
    0600 would lock out a UI and a worker running as different users)."""
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        return 0o666 & ~_UMASK


@contextlib.contextmanager
def atomic_path(path: Path, file_mode: int | None = None) -> Iterator[Path]:
    """A temp path beside ``path`` for a writer that wants a file name (FAISS, a copy); when the
    block ends it is fsynced and renamed over ``path``. ``file_mode``: permissions to give it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    import tempfile  # here, not at the top: every command imports this module

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, file_mode if file_mode is not None else _mode_for(path))
        yield Path(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_file(path: Path, mode: str = "wb", file_mode: int | None = None) -> Iterator[IO]:
    """An open temp file beside ``path``, renamed over it once the block has written it whole."""
    with atomic_path(path, file_mode) as tmp:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle


def write_json_atomic(path: Path, data: Any, file_mode: int | None = None) -> None:
    with atomic_file(path, "w", file_mode) as handle:
        dump_json(data, handle)


def dump_json(data: Any, handle: IO) -> None:
    """JSON as every workspace file is written: indented, UTF-8 kept, anything else as a string."""
    json.dump(data, handle, indent=2, ensure_ascii=False, default=str)


def read_json(path: Path, default: Any = None) -> Any:
    """The file's JSON; ``default`` when it does not exist; ``Unreadable`` when it is broken."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return default
    except OSError as exc:
        return Unreadable(str(path), f"cannot read: {exc}")
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return Unreadable(str(path), f"corrupted JSON: {exc}")
