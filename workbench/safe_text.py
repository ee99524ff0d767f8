"""Text that came from documents, prompts, model answers or users, made safe to show or export.

- ``safe_markdown``: keeps Markdown's formatting but not raw HTML nor images, so a document or
  a prompt holding ``<img src=http://host/t.png>`` or ``![](http://host/t.png)`` makes no
  browser fetch anything (the page's Content-Security-Policy refuses other hosts as well).
- ``plain_markdown``: shows the text exactly as written (every Markdown sign escaped).
- ``csv_cell``: a cell a spreadsheet shows as text, never runs as a formula (OWASP's rule).
- ``display_name``: a name without control or bidirectional-override characters, which could
  make ``txt.exe`` read as ``exe.txt`` on screen.
"""
from __future__ import annotations

import re
import unicodedata

# A fenced code block or an inline code span: Markdown shows their content as it is, so they are
# left alone (escaping inside them would show the escapes).
_CODE = re.compile(r"(^[ \t]*(`{3,}|~{3,})[^\n]*\n.*?(?:^[ \t]*\2[ \t]*$|\Z)|`+[^`\n]*`+)", re.M | re.S)
_MARKDOWN_SIGNS = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")
_BIDI = {"\u200e", "\u200f", "\u061c", *map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A))}
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _outside_code(text: str, fix) -> str:
    out, last = [], 0
    for match in _CODE.finditer(text):
        out.append(fix(text[last:match.start()]))
        out.append(match.group(0))
        last = match.end()
    out.append(fix(text[last:]))
    return "".join(out)


def _no_html_no_images(part: str) -> str:
    part = part.replace("&", "&amp;").replace("<", "&lt;")
    return part.replace("![", "!\\[")


def safe_markdown(text: str | None) -> str:
    """``text`` rendered as Markdown, minus raw HTML (shown as text) and images (shown as links'
    text); code blocks and spans unchanged."""
    return _outside_code(str(text or ""), _no_html_no_images)


def plain_markdown(text: str | None) -> str:
    """``text`` shown literally inside Markdown."""
    escaped = str(text or "").replace("&", "&amp;").replace("<", "&lt;")
    return _MARKDOWN_SIGNS.sub(r"\\\1", escaped)


def csv_cell(value):
    """A string a spreadsheet would run as a formula gets a leading ``'``; numbers stay numbers."""
    if not isinstance(value, str) or not value.startswith(FORMULA_STARTS):
        return value
    try:
        float(value)
        return value  # "-0.25" is a number, not a formula
    except ValueError:
        return "'" + value


def display_name(name: str | None) -> str:
    """``name`` without direction overrides, zero-width marks and control characters."""
    return "".join(c for c in str(name or "")
                   if c not in _BIDI and unicodedata.category(c) not in ("Cc", "Cf"))
