"""Builders shared by test modules: workspace content made as the product makes it, and the
documents, rows and pairs the tests feed it (conftest.py holds the fixtures and the processes)."""
from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path


def ready_pairs(workspace, count: int, set_name: str = "default", lang: str = "fr") -> list:
    """Answered pairs, as a generation job leaves them."""
    from workbench.feedback.pairs import Side, make_pair, pair_store

    question = "Comment configurer le serveur n°{}, d'après le contexte ?" if lang == "fr" else "How to set up server {}?"
    pairs = [make_pair(question.format(i), "typed", Side("base", 0.0, answer=f"Réponse précise {i}."),
                       Side("base", 0.8, answer=f"Réponse vague {i}."), set_name=set_name) for i in range(count)]
    pair_store(workspace).add(pairs)
    return pairs


def queued_runs(settings, kind: str) -> list[str]:
    """Ids of the runs of ``kind`` waiting in the queue (e.g. queued by a run that succeeded)."""
    from jobs import control

    return [r["id"] for r in control.store(settings).list() if r["kind"] == kind and r["status"] == "queued"]


def write_jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def sft_rows(n: int = 12) -> list[dict]:
    return [{"prompt": f"What is the code word {i}?", "completion": f"The code word is alpha{i}."} for i in range(n)]


def preference_pairs(n: int = 16, seed: int = 0) -> list[dict]:
    """Chosen answers quote the context; rejected ones ignore it (a task with a known right answer)."""
    import random

    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        fact = f"The vault code of room {i} is {rng.randint(1000, 9999)}."
        pairs.append({"prompt": f"What is the vault code of room {i}?\n\nContext:\n{fact}",
                      "chosen": f"According to the context, {fact}",
                      "rejected": "I do not know anything about that."})
    return pairs


def write(path, data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    return path


def raw_pdf(path, content: bytes, pages: int = 1):
    """A hand-built PDF whose pages all draw one Flate-compressed content stream."""
    kids = " ".join(f"{5 + i} 0 R" for i in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode(),
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    page = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 4 0 R >> >> /Contents 3 0 R >>")
    objects += [page] * pages
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return write(path, bytes(out))


def deflate_repeated(unit: bytes, count: int) -> bytes:
    """zlib-compress ``unit * count`` chunk by chunk, never holding the whole thing."""
    z = zlib.compressobj(6)
    chunk, parts = unit * 10_000, []
    for _ in range(count // 10_000):
        parts.append(z.compress(chunk))
    parts.append(z.compress(unit * (count % 10_000)))
    parts.append(z.flush())
    return b"".join(parts)


def docx_bomb(path, megabytes: int):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        with zf.open("word/document.xml", "w") as member:
            zeros = bytes(1 << 20)
            for _ in range(megabytes):
                member.write(zeros)
    return path


def make_corpus(folder):
    from docx import Document
    from fpdf import FPDF

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.md").write_text(
        "# Cats\n\nCats are small carnivorous mammals. They purr when content. A cat sleeps for most of "
        "the day, hunts at dusk and dawn, and grooms its fur with a rough tongue. Kittens are born blind "
        "and open their eyes after about ten days. Domestic cats live fifteen years on average.\n\n"
        "# Volcanoes\n\nMount Etna is an active volcano on the island of Sicily, Italy. It is the highest "
        "active volcano in Europe outside the Caucasus, and its eruptions send lava flows down its slopes "
        "towards the towns of Catania and Nicolosi. Stromboli, a smaller island volcano nearby, erupts "
        "every few minutes.\n")
    (folder / "facts.txt").write_text("Berlin is the capital of Germany.\n\nThe Rhine flows into the North Sea.\n")
    (folder / "guide.html").write_text(
        "<html><body><h1>Gardening</h1><p>Tomatoes need full sun and regular watering.</p>"
        "<script>var secret = 'do not index';</script></body></html>")
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    pdf.add_page()
    pdf.multi_cell(0, 8, "Annual report. Revenue grew in every region this year.")
    pdf.add_page()
    pdf.multi_cell(0, 8, "The reactor coolant is heavy water, pumped through the primary loop.")
    pdf.output(str(folder / "report.pdf"))
    doc = Document()
    doc.add_heading("Safety", level=1)
    doc.add_paragraph("Always wear goggles in the chemistry laboratory.")
    doc.save(str(folder / "manual.docx"))
    (folder / "ignored.bin").write_bytes(b"\x00\x01")  # not a supported type: skipped in a folder
    return folder


def three_docs(folder):
    """Three one-topic documents: each question of ``RAG_QUESTIONS`` has one right source."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bees.md").write_text("# Bees\n\nHoney bees tell each other where flowers are with the waggle dance.\n")
    (folder / "solar.md").write_text("# Solar\n\nPhotovoltaic cells of silicon turn sunlight into electricity.\n")
    (folder / "volcano.md").write_text("# Volcanoes\n\nMagma rising through the crust makes a volcano erupt.\n")
    return folder


def sphinx_page(title: str, sections: dict[str, str], previous: str, following: str) -> str:
    """A page shaped like Sphinx's classic theme: related bars above and below, a sidebar with the
    page's contents, the neighbouring topics and a search box, headings with permalinks."""
    related = (f'<div class="related" role="navigation" aria-label="related navigation"><h3>Navigation</h3><ul>'
               f'<li class="right"><a href="genindex.html" title="General Index">index</a></li>'
               f'<li class="right"><a href="py-modindex.html">modules</a> |</li>'
               f'<li class="right"><a href="next.html" title="{following}">next</a> |</li>'
               f'<li class="right"><a href="prev.html" title="{previous}">previous</a> |</li>'
               f'<li class="nav-item nav-item-0"><a href="index.html">Project 2.1 documentation</a> &#187;</li>'
               f'<li class="nav-item nav-item-this"><a href="">{title}</a></li></ul></div>')
    body = "".join(f'<section id="s{i}"><h2>{name}<a class="headerlink" href="#s{i}" title="Permalink">¶</a></h2>'
                   f'<p>{text}</p></section>' for i, (name, text) in enumerate(sections.items()))
    toc = "".join(f'<li><a class="reference internal" href="#s{i}">{name}</a></li>' for i, name in enumerate(sections))
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title} &#8212; Project 2.1 documentation</title>
<link rel="stylesheet" href="_static/pygments.css"><script src="_static/doctools.js"></script></head><body>
{related}
<div class="document"><div class="documentwrapper"><div class="bodywrapper"><div class="body" role="main">
<section id="top"><h1>{title}<a class="headerlink" href="#top" title="Permalink">¶</a></h1>{body}</section>
</div></div></div>
<div class="sphinxsidebar" role="navigation" aria-label="main navigation"><div class="sphinxsidebarwrapper">
<h3><a href="index.html">Table of Contents</a></h3><ul><li><a class="reference internal" href="#">{title}</a><ul>{toc}</ul></li></ul>
<h4>Previous topic</h4><p class="topless"><a href="prev.html" title="previous chapter">{previous}</a></p>
<h4>Next topic</h4><p class="topless"><a href="next.html" title="next chapter">{following}</a></p>
<div role="note" aria-label="source link"><h3>This Page</h3><ul class="this-page-menu"><li><a href="_sources/page.rst.txt" rel="nofollow">Show Source</a></li></ul></div>
<div id="searchbox" role="search"><h3 id="searchlabel">Quick search</h3><div class="searchformwrapper"><form class="search" action="search.html" method="get">
<input type="text" name="q" aria-labelledby="searchlabel"><input type="submit" value="Go"></form></div></div>
</div></div><div class="clearer"></div></div>
{related}
<div class="footer" role="contentinfo">&#169; Copyright 2001-2025, the Project Team. Created using <a href="https://www.sphinx-doc.org/">Sphinx</a> 7.2.6.</div>
</body></html>"""


def docbook_page(title: str, sections: dict[str, str], previous: str, following: str, chapter: str) -> str:
    """A page shaped like DocBook's chunked HTML: navigation tables above and below naming the
    neighbouring pages, a table of contents, a "Note" box with its own heading."""
    nav = lambda where: (f'<div class="nav{where}"><table width="100%" summary="Navigation {where}"><tr>'  # noqa: E731
                         f'<td width="40%" align="left"><a accesskey="p" href="prev.html">Prev</a> </td>'
                         f'<td width="20%" align="center"><a accesskey="u" href="up.html">Up</a></td>'
                         f'<td width="40%" align="right"> <a accesskey="n" href="next.html">Next</a></td></tr><tr>'
                         f'<td width="40%" align="left" valign="top">{previous} </td>'
                         f'<td width="20%" align="center"><a accesskey="h" href="index.html">Home</a></td>'
                         f'<td width="40%" align="right" valign="top"> {following}</td></tr></table><hr></div>')
    toc = "".join(f'<dt><span class="sect2"><a href="#s{i}">{name}</a></span></dt>' for i, name in enumerate(sections))
    body = "".join(f'<div class="sect2" id="s{i}"><div class="titlepage"><div><div><h3 class="title">{name}</h3></div></div></div>'
                   f'<p>{text}</p>' + ('<div class="note"><h3 class="title">Note</h3><p>Remember to check the log first.</p></div>'
                                       if i == 0 else '') + '</div>'
                   for i, (name, text) in enumerate(sections.items()))
    return f"""<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<!DOCTYPE html><html xmlns="http://www.w3.org/1999/xhtml"><head><title>{title}</title>
<meta name="generator" content="DocBook XSL Stylesheets Vsnapshot"/></head><body id="docContent" class="container-fluid col-10">
<div class="navheader"><table width="100%" summary="Navigation header"><tr><th colspan="3" align="center">{title}</th></tr><tr>
<td width="10%" align="left"><a accesskey="p" href="prev.html">Prev</a> </td><td width="10%" align="left"><a accesskey="u" href="up.html">Up</a></td>
<th width="60%" align="center">{chapter}</th><td width="20%" align="right"> <a accesskey="n" href="next.html">Next</a></td></tr></table><hr/></div>
<div class="sect1"><div class="titlepage"><div><div><h2 class="title" style="clear: both">{title}</h2></div></div></div>
<div class="toc"><dl class="toc">{toc}</dl></div>{body}</div>
{nav("footer")}</body></html>"""
