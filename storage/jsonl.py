"""JSONL files: appends under an exclusive file lock (whole lines, flushed), strict reads."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from storage.atomic import atomic_file

if TYPE_CHECKING:
    from filelock import FileLock  # imported when a lock is taken: 30 ms a command otherwise


class JsonlError(ValueError):
    """A line that is not a JSON object; carries the file and the 1-based line number."""

    def __init__(self, path: Path, line_no: int, reason: str):
        super().__init__(f"{path}: line {line_no}: {reason}")
        self.path, self.line_no, self.reason = Path(path), line_no, reason


def lock_for(path: Path) -> FileLock:
    from filelock import FileLock

    path = Path(path)
    return FileLock(str(path.with_name(f".{path.name}.lock")), is_singleton=True)


def _lines(records: Iterable[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records).encode("utf-8")


def append_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> int:
    """Append records as lines in one locked write; returns how many were written. A file whose
    last line lacks its newline (edited by hand) gets one first, so lines never merge."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = _lines(records)
    if not payload:
        return 0
    with lock_for(path), open(path, "ab+") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size:
            handle.seek(size - 1)
            if handle.read(1) != b"\n":
                handle.write(b"\n")
        handle.write(payload)  # append mode: always at the end
        handle.flush()
        os.fsync(handle.fileno())
    return payload.count(b"\n")


def write_jsonl_atomic(path: Path, records: Iterable[dict[str, Any]]) -> int:
    """Replace the file with these records (temp file renamed into place, under the file's lock)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = _lines(records)
    with lock_for(path), atomic_file(path) as out:
        out.write(payload)
    return payload.count(b"\n")


def iter_jsonl(path: Path, strict: bool = True, numbered: bool = False) -> Iterator[Any]:
    """Yield each object. Strict mode raises ``JsonlError`` naming the bad line; lenient skips it.

    A last line without its newline is a write in progress and is skipped in lenient mode.
    ``numbered`` yields (1-based line number, object) pairs.
    """
    path = Path(path)
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return
    with handle:
        for line_no, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            if not raw.endswith(b"\n") and not strict:
                return
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                if strict:
                    raise JsonlError(path, line_no, f"not UTF-8 text ({exc.reason})") from exc
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                if strict:
                    raise JsonlError(path, line_no, f"invalid JSON ({exc.msg})") from exc
                continue
            if not isinstance(value, dict):
                if strict:
                    raise JsonlError(path, line_no, "not a JSON object")
                continue
            yield (line_no, value) if numbered else value


def file_signature(path: Path) -> tuple[int, int, int] | None:
    """What changes whenever a file is appended to or replaced (inode, size, mtime); None when it
    does not exist. Readers that keep a parsed file in memory compare it before trusting it."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def read_jsonl(path: Path, strict: bool = True) -> list[dict[str, Any]]:
    return list(iter_jsonl(path, strict=strict))
