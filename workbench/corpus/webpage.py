"""The main text of an HTML page, by section, without the page's furniture.

Documentation sites (Sphinx, MkDocs, DocBook, wikis) wrap every page in navigation: sidebars,
"previous / up / next" bars, related links, tables of contents. Indexed as content, these become
short chunks that name neighbouring pages and win searches meant for those pages. They are
removed before the text is cut into sections:

- by meaning: ``nav``, ``aside``, ``script``…, page-level ``header``/``footer``, ARIA roles such
  as ``navigation`` or ``complementary``, hidden elements;
- by link density, innermost first: a block (div, list, table, paragraph…) whose words are mostly
  link text is navigation, and so is what remains of a block once its link lists are gone when
  that remainder is a few words (the page titles beside "Prev / Next").

Extraction libraries were measured on real documentation sets (``benchmarks/retrieval.py``):
trafilatura drops every heading of Sphinx and DocBook pages (its fallback when it finds no main
container), and readability keeps one section of a multi-section page (9% of Django's forms
guide). Both lose what a question needs; these two rules keep the text and the section titles.

A page that is nothing but links (a table of contents) keeps its links: the rules would leave
nothing of it.
"""
from __future__ import annotations

import re

from workbench.corpus.blocks import Block, Sections

DROP_TAGS = frozenset({"script", "style", "noscript", "template", "head", "svg", "iframe", "object", "nav", "aside",
                       "form", "button", "select", "dialog"})
PAGE_EDGE_TAGS = frozenset({"header", "footer"})  # dropped outside the page's main or article, but for an h1
DROP_ROLES = frozenset({"navigation", "banner", "contentinfo", "complementary", "search", "menu", "menubar",
                        "toolbar", "dialog", "alertdialog"})
LINK_BLOCKS = frozenset({"div", "section", "table", "ul", "ol", "dl", "p", "center", "header", "footer", "details"})
LINK_DENSITY = 0.33  # a block whose words are over a third link text is navigation
RESIDUE_WORDS = 12  # what is left of a block after its link lists went, at most, to be furniture too
KEEP_AT_LEAST = 0.25  # a page left with under a quarter of its words (and under 50) keeps them all
_HEADINGS = {f"h{i}": i for i in range(1, 7)}
_BLOCK_TAGS = frozenset({
    "p", "div", "li", "ul", "ol", "blockquote", "section", "article", "main", "header", "footer", "aside",
    "table", "tr", "td", "th", "dl", "dt", "dd", "figure", "figcaption", "caption", "fieldset",
    "address", "hr", "body", "details", "summary",
})
_PERMALINK = re.compile(r"[\s¶§#🔗]+$")


def parse_html(text: str) -> tuple[list[Block], str | None]:
    """(blocks by section, the page's title)."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(text, "html.parser")
    title = _title_element(soup)
    total = _words(soup)
    _drop_furniture(soup, link_rules=True)
    if _words(soup) < min(KEEP_AT_LEAST * total, 50):
        soup = BeautifulSoup(text, "html.parser")
        _drop_furniture(soup, link_rules=False)
    h1 = soup.find("h1")
    heading = _clean_heading(h1.get_text(" ")) if h1 is not None else ""
    return _sections(soup), heading or title or None


def _words(soup) -> int:
    return len(soup.get_text(" ").split())


def _title_element(soup) -> str:
    node = soup.find("title")
    return " ".join(node.get_text(" ").split()) if node is not None else ""


def _clean_heading(text: str) -> str:
    return _PERMALINK.sub("", " ".join(text.split()))


def _tags_in_order(root) -> list:
    """Every tag under ``root``, parents before children. An explicit stack, not recursion:
    hostile HTML can nest tags thousands deep."""
    from bs4 import Tag

    order, stack = [], [root]
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(child for child in node.children if isinstance(child, Tag))
    return order


def _is_furniture(node) -> bool:
    role = str(node.get("role") or "").lower()
    if node.name in DROP_TAGS or role in DROP_ROLES or node.get("aria-hidden") == "true" or node.has_attr("hidden"):
        return True
    return (node.name in PAGE_EDGE_TAGS and node.find_parent(["main", "article"]) is None
            and node.find("h1") is None)  # a page header holding the h1 is the page's title


def _drop_furniture(soup, link_rules: bool) -> None:
    """Remove navigation in place. Children are judged before parents, so a link list inside a
    paragraph-rich block goes alone and the block stays."""
    from bs4 import NavigableString, Tag
    from bs4.element import PreformattedString

    order = _tags_in_order(soup)
    kept: dict[int, tuple[int, int, int]] = {}  # id -> (words, link words, words of link blocks dropped inside)
    dropped: dict[int, int] = {}
    doomed = []
    for node in reversed(order):
        if node is not soup and _is_furniture(node):
            doomed.append(node)
            continue
        words = links = gone = 0
        for child in node.children:
            if isinstance(child, Tag):
                if id(child) in dropped:
                    gone += dropped[id(child)]
                elif id(child) in kept:
                    w, lw, g = kept[id(child)]
                    words, gone = words + w, gone + g
                    links += w if child.name == "a" else lw
            elif isinstance(child, NavigableString) and not isinstance(child, PreformattedString):
                words += len(child.split())
        if (link_rules and node is not soup and node.name in LINK_BLOCKS and words
                and (links > LINK_DENSITY * words or (gone >= words and words - links < RESIDUE_WORDS))):
            dropped[id(node)] = words + gone
            doomed.append(node)
            continue
        kept[id(node)] = (words, links, gone)
    for node in reversed(doomed):  # outermost first: the nodes inside go with it
        if not node.decomposed:
            node.decompose()


def _sections(soup) -> list[Block]:
    from bs4 import NavigableString
    from bs4.element import PreformattedString  # comments, doctype, CDATA

    out, current = Sections(), []

    def paragraph_break() -> None:
        out.add("".join(current))
        current.clear()

    stack: list = [soup]
    depth = 0  # block elements open around the current node
    while stack:
        node = stack.pop()
        if isinstance(node, tuple):  # end of a block element: (headings open at its start, its depth)
            paragraph_break()
            out.close_scope(*node)
            depth -= 1
        elif isinstance(node, NavigableString):
            if not isinstance(node, PreformattedString):
                current.append(re.sub(r"\s+", " ", node))
        elif node.name in _HEADINGS:
            paragraph_break()
            out.heading(_HEADINGS[node.name], _clean_heading(node.get_text(" ")), depth)
        elif node.name == "br":
            current.append("\n")
        elif node.name == "pre":
            paragraph_break()
            out.add(node.get_text())
        else:
            if node.name in _BLOCK_TAGS:
                paragraph_break()
                depth += 1
                stack.append((len(out.stack), depth))
            stack.extend(reversed(node.contents))
    paragraph_break()
    return out.flush()
