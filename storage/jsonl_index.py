"""A compact index beside an append-only JSONL file: a few fields of each line, appended by the
writers under the file's lock, so a reader that needs only those fields reads a small file
instead of the whole one. 10,000 French RAG votes are 30 MB and take ~110 ms to parse on two
cores; their index is 1 MB and takes ~8 ms (``benchmarks/annotation_stats.py``).

The index is a hint, never the truth. After every write it records the file's inode, size and
mtime; a reader that finds the file grown parses only the lines the index does not cover, and a
file replaced or edited by hand is read whole. Writers bring the index up to date before they
append, so a crash between the two writes costs one slower read, never a wrong one.

On disk (``.NAME.index`` beside ``NAME``): one JSON array of fields per line of the file, then an
object ``{"inode", "end", "mtime"}`` after each write.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable

from storage.atomic import atomic_file
from storage.jsonl import append_jsonl, iter_jsonl, lock_for

Fields = Callable[[dict[str, Any]], list]


class IndexedJsonl:
    """``path`` with an index of ``fields(record)`` for every line that is a JSON object."""

    def __init__(self, path: Path, fields: Fields, strict: bool = True):
        self.path = Path(path)
        self.index_path = self.path.with_name(f".{self.path.name}.index")
        self.fields = fields
        self.strict = strict  # strict: a broken line raises JsonlError naming it; lenient: skipped

    def entries(self, strict: bool | None = None) -> list[list]:
        """``fields(record)`` of every line, in file order. Reads only, and takes no lock while the
        index covers the file: the file is opened first and the index checked against what was
        opened, so a file replaced meanwhile is never read against the wrong index. ``strict``
        overrides the file's own strictness for this read (a writer that skips broken lines)."""
        strict = self.strict if strict is None else strict
        try:
            handle = open(self.path, "rb")
        except FileNotFoundError:
            return []
        with handle:
            covered = self._covered(handle)
            if covered is not None:
                entries, end = covered
                handle.seek(end)
                tail = self._parse(handle.read(), strict)
                if tail is not None:
                    return entries + [self.fields(r) for r in tail]
        with lock_for(self.path):  # the whole file, with no write half-done
            return [self.fields(r) for r in iter_jsonl(self.path, strict=strict)]

    def append(self, records: Iterable[dict[str, Any]]) -> int:
        """Append records to the file and their fields to the index, under the file's lock."""
        records = list(records)
        if not records:
            return 0
        with lock_for(self.path):
            indexed = self._bring_up_to_date()
            written = append_jsonl(self.path, records)
            if indexed:
                self._append_index([self.fields(r) for r in records])
        return written

    def replace_lines(self, lines: list[bytes]) -> None:
        """Replace the file with these raw lines (the caller holds the file's lock) and index it anew."""
        with atomic_file(self.path) as out:
            out.writelines(lines)
        self.rebuild()

    def rebuild(self) -> bool:
        """Index the whole file again, under its lock. A strict file with a broken line gets no
        index (False), so its readers read it whole and report the line."""
        with lock_for(self.path):
            records = self._parse(self.path.read_bytes(), complete=True)
            if records is None:
                self.index_path.unlink(missing_ok=True)
                return False
            with atomic_file(self.index_path) as out:
                out.write(_lines_of([self.fields(r) for r in records]) + _mark(self.path))
            return True

    def _covered(self, handle: BinaryIO) -> tuple[list[list], int] | None:
        """The index's entries and the offset of the open file they reach; None when the index
        cannot be trusted for it (missing, half-written, another inode, changed in place)."""
        try:
            text = self.index_path.read_text(encoding="utf-8")
            items = json.loads("[" + ",".join(text.splitlines()) + "]")
        except (OSError, ValueError):
            return None
        if not items or not isinstance(items[-1], dict):
            return None
        mark, st = items[-1], os.fstat(handle.fileno())
        end = mark.get("end")
        if mark.get("inode") != st.st_ino or not isinstance(end, int) or end > st.st_size:
            return None
        if end == st.st_size and mark.get("mtime") != st.st_mtime_ns:
            return None  # rewritten in place to the same size
        if 0 < end < st.st_size:
            handle.seek(end - 1)
            if handle.read(1) != b"\n":
                return None
        return [item for item in items if isinstance(item, list)], end

    def _parse(self, tail: bytes, strict: bool | None = None, complete: bool = False) -> list[dict[str, Any]] | None:
        """The records of these lines; None sends a reader to a whole read under the lock: a last
        line without its newline (a write in progress, unless ``complete``: the caller holds the
        lock) or, strict, a broken line (the whole read's error names it). Lenient: skipped."""
        strict = self.strict if strict is None else strict
        lines = tail.split(b"\n")
        if lines[-1].strip() and not complete:
            return None
        records = []
        for raw in lines:
            if not raw.strip():
                continue
            try:
                value = json.loads(raw)
            except ValueError:
                value = None
            if isinstance(value, dict):
                records.append(value)
            elif strict:
                return None
        return records

    def _bring_up_to_date(self) -> bool:
        """Index what was appended without the index, or the whole file (the caller holds the
        lock); False when the file is left without an index (see ``rebuild``)."""
        try:
            handle = open(self.path, "rb")
        except FileNotFoundError:
            self.index_path.unlink(missing_ok=True)
            return True
        with handle:
            covered = self._covered(handle)
            if covered is not None:
                handle.seek(covered[1])
                tail = self._parse(handle.read(), complete=True)
                if tail is not None:
                    if tail:
                        self._append_index([self.fields(r) for r in tail])
                    return True
        return self.rebuild()

    def _append_index(self, entries: list[list]) -> None:
        with open(self.index_path, "ab") as handle:
            handle.write(_lines_of(entries) + _mark(self.path))
            handle.flush()
            os.fsync(handle.fileno())


def _lines_of(entries: list[list]) -> bytes:
    return "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries).encode("utf-8")


def _mark(path: Path) -> bytes:
    st = os.stat(path)
    return (json.dumps({"inode": st.st_ino, "end": st.st_size, "mtime": st.st_mtime_ns}) + "\n").encode()
