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

# What CommonMark shows as code, as it is (escaping inside would show the escapes): a fence of 3+
# backticks (no backtick in its info string) or tildes, indented 0-3 spaces, closed by a fence of
# the same character at least as long, or open to the end; an inline span between two equal runs
# of backticks, the first not escaped. Anything else is escaped.
_CODE = re.compile(
    r"(?P<block>^ {0,3}(?P<fence>`{3,}(?=[^`\n]*$)|~{3,})[^\n]*\n.*?"
    r"(?:^ {0,3}(?P=fence)(?:(?<=`)`|(?<=~)~)*[ \t]*$|\Z))"
    r"|(?P<span>(?<![`\\])(?P<ticks>`+)(?!`)[^\n]*?(?<!`)(?P=ticks)(?!`))",
    re.M | re.S)
_MARKDOWN_SIGNS = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")
_BIDI = {"\u200e", "\u200f", "\u061c", *map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A))}
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")  # and full-width


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


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """"1 pair", "3 pairs", "0 pairs": a count with its noun in the right number."""
    return f"{count:,} {noun if count == 1 else plural or noun + 's'}"
