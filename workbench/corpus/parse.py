"""Turn an uploaded file (txt, md, html, pdf, docx) into text blocks that remember where they came from.

Every input is untrusted: anything wrong with a file becomes a ParseError whose message tells
the user what to fix. pypdf, python-docx and BeautifulSoup are imported only when needed, so the
sandbox child (``workbench.corpus.sandbox``) starts fast.
"""
from __future__ import annotations

import codecs
import logging
import re
import zipfile
from pathlib import Path

from workbench.corpus.blocks import Block, Sections, clean_text

log = logging.getLogger(__name__)

SUPPORTED = frozenset({".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx"})

# A .docx is a zip: refuse archives that would inflate past these before reading any member.
DOCX_MAX_UNCOMPRESSED = 200_000_000
DOCX_MAX_RATIO = 100  # Word XML compresses about 10:1; 100:1 on a big member is padding
DOCX_RATIO_MIN_SIZE = 1_000_000
DOCX_MAX_ENTRIES = 10_000

_ATX = re.compile(r" {0,3}(#{1,6})(?=[ \t]|$)")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")


class ParseError(Exception):
    """A file that cannot be read, with a reason a user can act on (no file name in it; callers add the name)."""


def parse_file(path: Path, max_bytes: int | None = None) -> list[Block]:
    """Parse ``path`` in this process; raise ParseError for anything a user must fix."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        raise ParseError(f"unsupported file type '{suffix or '(none)'}'; supported: {', '.join(sorted(SUPPORTED))}")
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ParseError(f"cannot read the file: {e.strerror or e}") from None
    if size == 0:
        raise ParseError("the file is empty: no text found")
    if max_bytes is not None and size > max_bytes:
        raise ParseError(f"file is {human_size(size)}, over the {human_size(max_bytes)} limit")
    if suffix == ".pdf":
        blocks = _parse_pdf(path)
    elif suffix == ".docx":
        blocks = _parse_docx(path)
    elif suffix in (".md", ".markdown"):
        blocks = _parse_markdown(_read_text(path))
    elif suffix in (".html", ".htm"):
        blocks = _parse_html(_read_text(path))
    else:
        blocks = [Block(clean_text(_read_text(path)))]
    blocks = [b for b in blocks if b.text]
    if not blocks:
        hint = {".pdf": " (a scanned PDF needs OCR first)",
                ".html": " (only navigation, scripts and other page furniture)",
                ".htm": " (only navigation, scripts and other page furniture)"}.get(suffix, "")
        raise ParseError("no text found in the file" + hint)
    return blocks


def human_size(n: int) -> str:
    """12345678 -> '12.3 MB' (decimal units, as file browsers show them)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ParseError(f"cannot read the file: {e.strerror or e}") from None
    utf16 = data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    if not utf16 and b"\x00" in data:
        raise ParseError(f"binary content (NUL byte at offset {data.index(0)}); if this is text, re-save it as UTF-8")
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        text = data.decode("utf-16") if utf16 else data[skip:].decode("utf-8")
    except UnicodeDecodeError as e:
        at = e.start + skip
        what = "broken UTF-16 text" if utf16 else f"not UTF-8 text: byte 0x{data[at]:02x}"
        raise ParseError(f"{what} at offset {at}; re-save the file as UTF-8") from None
    if not text.strip():
        raise ParseError("the file contains only whitespace: no text found")
    return text


def _parse_markdown(text: str) -> list[Block]:
    out, fence, lines = Sections(), None, []
    for line in text.splitlines():
        if fence is None and (heading := _ATX.match(line)):
            out.add("\n".join(lines))
            lines = []
            out.heading(len(heading.group(1)), _markdown_heading(line[heading.end():]))
            continue
        lines.append(line)
        if fence is None:
            fence = opening.group(1) if (opening := _FENCE.match(line)) else None
        elif _closes_fence(line, fence):
            fence = None
    out.add("\n".join(lines))
    return out.flush()


def _markdown_heading(rest: str) -> str:
    # "Title ##" -> "Title". String methods, not a regex: one would backtrack quadratically on a long line.
    rest = rest.strip()
    bare = rest.rstrip("#")
    return (bare if not bare or bare[-1] in " \t" else rest).strip()


def _closes_fence(line: str, fence: str) -> bool:
    stripped = line.strip()
    indent = len(line) - len(line.lstrip(" "))
    return indent <= 3 and len(stripped) >= len(fence) and not stripped.strip(fence[0])


def _parse_html(text: str) -> list[Block]:
    from workbench.corpus.webpage import parse_html

    blocks, title = parse_html(text)
    for block in blocks:
        block.title = title
    return blocks


def _parse_pdf(path: Path) -> list[Block]:
    with path.open("rb") as f:
        if b"%PDF-" not in f.read(1024):
            raise ParseError("not a valid PDF: the file has no PDF header")
    from pypdf import PdfReader
    from pypdf.errors import DependencyError

    try:
        reader = PdfReader(path, strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise ParseError("the PDF is protected by a password; remove the password and upload it again")
        pages = list(reader.pages)
    except (ParseError, MemoryError):
        raise
    except DependencyError:
        raise ParseError("the PDF is encrypted in a way this server cannot open; save an unencrypted copy") from None
    except Exception as e:  # noqa: BLE001 - pypdf raises anything on a malformed file
        raise ParseError(f"not a valid PDF: {_describe(e)}") from None
    texts: dict[int, str] = {}
    for number, page in enumerate(pages, start=1):
        try:
            texts[number] = clean_text(page.extract_text() or "")
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - one broken page should not lose the whole document
            log.warning("skipping unreadable PDF page %d: %s", number, _describe(e))
    title = _pdf_title(reader)
    return [Block(text, page=number, title=title) for number, text in drop_running_lines(texts).items()]


def _pdf_title(reader) -> str | None:
    try:
        title = " ".join(str((reader.metadata or {}).get("/Title") or "").split())
    except Exception:  # noqa: BLE001 - a broken info dictionary only loses the title
        return None
    return title[:200] or None


_PAGE_NUMBER = re.compile(r"(?i)^[\W_]*(page\s*)?\d{1,4}(\s*(of|/)\s*\d{1,4})?[\W_]*$")
RUNNING_EDGE_LINES = 3  # lines looked at on top and at the bottom of each page


def drop_running_lines(pages: dict[int, str]) -> dict[int, str]:
    """Remove running headers and footers: a line near the top or bottom of a page that comes back
    (digits aside: "Chapter 3 · page 12") on at least half the pages, and bare page numbers there."""
    def key(line: str) -> str:
        return re.sub(r"\d+", "#", line.lower())

    edges = {n: _edge_lines(text) for n, text in pages.items()}
    counts: dict[str, int] = {}
    for lines in edges.values():
        for k in {key(line) for line in lines}:
            counts[k] = counts.get(k, 0) + 1
    threshold = max(3, (len(pages) + 1) // 2)
    out = {}
    for n, text in pages.items():
        lines = text.split("\n")
        edge = set(edges[n])
        kept = [line for i, line in enumerate(lines)
                if not ((i < RUNNING_EDGE_LINES or i >= len(lines) - RUNNING_EDGE_LINES) and line in edge
                        and (counts.get(key(line), 0) >= threshold or (_PAGE_NUMBER.match(line) and len(edge) > 1)))]
        out[n] = clean_text("\n".join(kept))
    return out


def _edge_lines(text: str) -> list[str]:
    lines = [line for line in text.split("\n") if line]
    return lines[:RUNNING_EDGE_LINES] + lines[max(RUNNING_EDGE_LINES, len(lines) - RUNNING_EDGE_LINES):]


def _parse_docx(path: Path) -> list[Block]:
    _check_docx_zip(path)
    import docx
    from docx.table import Table

    out = Sections()
    try:
        for item in docx.Document(str(path)).iter_inner_content():
            style = "" if isinstance(item, Table) or item.style is None else (item.style.name or "")
            if isinstance(item, Table):
                out.add("\n\n".join(_table_rows(item)))
            elif style.startswith("Heading"):
                level = style.removeprefix("Heading").strip()
                out.heading(int(level) if level.isdigit() else 1, item.text)
            else:
                out.add(item.text)
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - python-docx raises anything on a malformed file
        raise ParseError(f"not a valid Word document: {_describe(e)}") from None
    return out.flush()


def _table_rows(table) -> list[str]:
    rows = []
    for row in table.rows:
        cells: list[str] = []
        for cell in row.cells:  # a merged cell comes back once per grid column it spans
            text = " ".join(cell.text.split())
            if text and (not cells or cells[-1] != text):
                cells.append(text)
        rows.append(" | ".join(cells))
    return rows


def _check_docx_zip(path: Path) -> None:
    with path.open("rb") as f:
        if f.read(4) == b"\xd0\xcf\x11\xe0":  # OLE container: a legacy .doc, or a .docx with a password
            raise ParseError("not a .docx but an old .doc or a password-protected file; "
                             "re-save it as .docx without a password")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as e:
        raise ParseError(f"not a valid Word document: the file is not a .docx zip archive ({e})") from None
    if len(infos) > DOCX_MAX_ENTRIES:
        raise ParseError(f"not a valid Word document: {len(infos)} entries in the archive (zip bomb?)")
    total, packed = sum(i.file_size for i in infos), sum(i.compress_size for i in infos)
    if total > DOCX_MAX_UNCOMPRESSED:
        raise ParseError(f"refusing a likely zip bomb: {human_size(total)} uncompressed from {human_size(packed)}, "
                         f"over the {human_size(DOCX_MAX_UNCOMPRESSED)} limit")
    for info in infos:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > DOCX_RATIO_MIN_SIZE and ratio > DOCX_MAX_RATIO:
            raise ParseError(f"refusing a likely zip bomb: {info.filename} inflates "
                             f"{human_size(info.compress_size)} to {human_size(info.file_size)} ({ratio:.0f}:1)")
    if "word/document.xml" not in {i.filename for i in infos}:
        raise ParseError("not a Word document: the archive has no word/document.xml")


def _describe(e: BaseException) -> str:
    return " ".join(str(e).split())[:200] or type(e).__name__
