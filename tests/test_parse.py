"""Parsing real files made here: every format's text and provenance, every bad input's reason,
and the sandbox's time and memory limits against hostile PDFs."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import pytest

from tests.conftest import TEXT_OP
from tests.helpers import deflate_repeated, docbook_page, docx_bomb, raw_pdf, sphinx_page, write
from workbench.corpus.parse import Block, ParseError, parse_file
from workbench.corpus.sandbox import parse_isolated


# ---- good files -------------------------------------------------------------------------------

def test_txt_keeps_paragraph_breaks_and_normalises_spaces(tmp_path):
    f = write(tmp_path / "a.txt", "\ufeffFirst   line\twith  tabs.\r\nSame paragraph.\r\n\r\n\r\n  Second paragraph.  \n")
    assert parse_file(f) == [Block("First line with tabs.\nSame paragraph.\n\nSecond paragraph.")]


def test_utf16_with_bom_is_accepted(tmp_path):
    f = write(tmp_path / "a.txt", "Ünïcode text".encode("utf-16"))
    assert parse_file(f)[0].text == "Ünïcode text"


def test_markdown_sections_and_code_fences(tmp_path):
    md = """Preamble.

# Install

Run the installer.

## Linux

```bash
# a comment, not a heading
make install
```

~~~
## still code
```python
# a fence with an info string does not close a ~~~ fence
~~~

# Usage #
Type *commands*.
"""
    blocks = parse_file(write(tmp_path / "a.md", md))
    assert [(b.section, b.page) for b in blocks] == [
        (None, None), ("Install", None), ("Install > Linux", None), ("Usage", None)]
    assert blocks[0].text == "Preamble."
    linux = blocks[2].text
    assert "# a comment, not a heading\nmake install" in linux
    assert "## still code" in linux and "# a fence with an info string" in linux
    assert "\n\n" in linux
    assert blocks[3].text == "Type *commands*."


def test_html_sections_without_script_style_or_nav(tmp_path):
    html = """<!doctype html><html><head><title>T</title><style>p {color: red}</style></head>
<body><nav>Home | About</nav><script>var secret = "SCRIPT_TEXT";</script>
<h1>Guide</h1><p>Hello   <b>bold</b>
world.</p><p>Second<br>line.</p><noscript>enable js</noscript>
<h2>Details</h2><ul><li>one</li><li>two</li></ul><table><tr><td>cell A</td><td>cell B</td></tr></table>
<!-- a comment --></body></html>"""
    blocks = parse_file(write(tmp_path / "a.html", html))
    assert [b.section for b in blocks] == ["Guide", "Guide > Details"]
    assert blocks[0].text == "Hello bold world.\n\nSecond\nline."
    assert blocks[1].text == "one\n\ntwo\n\ncell A\n\ncell B"
    everything = " ".join(b.text for b in blocks)
    for hidden in ("SCRIPT_TEXT", "color", "Home", "enable js", "comment"):
        assert hidden not in everything


SESSIONS = {"Enabling sessions": "Sessions are implemented by a piece of middleware in the request cycle.",
            "Using sessions in views": "Each request has a session attribute, a dictionary that keeps values "
                                       "for one visitor between requests."}


def test_sphinx_page_keeps_its_text_and_sections_not_its_furniture(tmp_path):
    html = sphinx_page("How to use sessions", SESSIONS, previous="Middleware", following="Signing data")
    blocks = parse_file(write(tmp_path / "sessions.html", html))
    assert [(b.section, b.text) for b in blocks] == [
        ("How to use sessions > Enabling sessions", SESSIONS["Enabling sessions"]),
        ("How to use sessions > Using sessions in views", SESSIONS["Using sessions in views"])]
    assert {b.title for b in blocks} == {"How to use sessions"}  # the h1, not "<title> — site name"
    everything = " ".join(b.text for b in blocks)
    for furniture in ("Middleware", "Signing data", "Previous topic", "Quick search", "Show Source", "Copyright",
                      "documentation", "modules", "¶"):
        assert furniture not in everything


def test_docbook_page_drops_navigation_tables_and_scopes_a_note_box(tmp_path):
    sections = {"5.4.1. Check Constraints": "A check constraint requires a column to satisfy a Boolean expression.",
                "5.4.2. Not-Null Constraints": "A not-null constraint says that a column must not take the null value."}
    html = docbook_page("5.4. Constraints", sections, previous="5.3. Generated Columns",
                        following="5.5. System Columns", chapter="Chapter 5. Data Definition")
    blocks = parse_file(write(tmp_path / "ddl-constraints.html", html))
    assert [(b.section, b.text) for b in blocks] == [
        ("5.4. Constraints > 5.4.1. Check Constraints", sections["5.4.1. Check Constraints"]),
        ("5.4. Constraints > 5.4.1. Check Constraints > Note", "Remember to check the log first."),
        ("5.4. Constraints > 5.4.2. Not-Null Constraints", sections["5.4.2. Not-Null Constraints"])]
    assert {b.title for b in blocks} == {"5.4. Constraints"}
    everything = " ".join(b.text for b in blocks)
    for furniture in ("Generated Columns", "System Columns", "Prev", "Next", "Home", "Chapter 5"):
        assert furniture not in everything


def test_a_page_of_links_only_keeps_its_links(tmp_path):
    links = "".join(f'<li><a href="ch{i}.html">Chapter {i}: {name}</a></li>'
                    for i, name in enumerate(["Getting started", "Queries", "Indexes", "Backups"], start=1))
    html = f"<html><head><title>Manual</title></head><body><h1>Manual</h1><ul>{links}</ul></body></html>"
    blocks = parse_file(write(tmp_path / "index.html", html))
    assert "Chapter 3: Indexes" in blocks[0].text and blocks[0].section == "Manual"


def test_pdf_keeps_page_numbers(tmp_path):
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for text in ("Alpha page text.", "Bravo on the second page."):
        pdf.add_page()
        pdf.multi_cell(0, 10, text)
    path = tmp_path / "a.pdf"
    pdf.output(str(path))
    blocks = parse_file(path)
    assert [b.page for b in blocks] == [1, 2]
    assert "Alpha page text." in blocks[0].text
    assert "Bravo on the second page." in blocks[1].text
    assert all(b.section is None for b in blocks)


def test_pdf_drops_running_headers_footers_and_page_numbers(tmp_path):
    from fpdf import FPDF

    class Report(FPDF):
        def header(self):
            self.set_font("Helvetica", size=9)
            self.cell(0, 8, "ACME Corp - Annual Report 2025 - Confidential", new_x="LMARGIN", new_y="NEXT")

        def footer(self):
            self.set_y(-15)
            self.set_font("Helvetica", size=9)
            self.cell(0, 8, f"Page {self.page_no()} of 4", align="C")

    pdf = Report()
    topics = ["Revenue grew in every region.", "The reactor coolant is heavy water.",
              "Staff numbers rose by a tenth.", "Next year we open two plants."]
    for topic in topics:
        pdf.add_page()
        pdf.set_font("Helvetica", size=12)
        pdf.multi_cell(0, 8, topic + " More words about it follow here.")
    path = tmp_path / "report.pdf"
    pdf.output(str(path))
    blocks = parse_file(path)
    assert [b.page for b in blocks] == [1, 2, 3, 4]
    for block, topic in zip(blocks, topics):
        assert block.text == topic + " More words about it follow here."


def test_docx_headings_and_tables(tmp_path):
    import docx

    d = docx.Document()
    d.add_paragraph("Before any heading.")
    d.add_heading("Setup", level=1)
    d.add_paragraph("Install   it.")
    d.add_heading("Windows", level=2)
    table = d.add_table(rows=2, cols=2)
    for r, row in enumerate(table.rows):
        for c, cell in enumerate(row.cells):
            cell.text = f"r{r}c{c}"
    d.add_heading("Notes", level=1)
    d.add_paragraph("Last words.")
    path = tmp_path / "a.docx"
    d.save(str(path))
    blocks = parse_file(path)
    assert [(b.section, b.text) for b in blocks] == [
        (None, "Before any heading."),
        ("Setup", "Install it."),
        ("Setup > Windows", "r0c0 | r0c1\n\nr1c0 | r1c1"),
        ("Notes", "Last words."),
    ]


# ---- bad files --------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "content", "reason"), [
    ("empty.txt", b"", "empty"),
    ("blank.txt", b" \n\t\r\n  \n", "only whitespace: no text found"),
    ("blank.md", "\ufeff \u00a0\n".encode(), "no text found"),
    ("blank.html", b"<html><body><script>x()</script> </body></html>", "no text found"),
    ("random.pdf", bytes(range(256)) * 40, "not a valid PDF"),
    ("broken.pdf", b"%PDF-1.4\n" + bytes(range(256)) * 40, "not a valid PDF"),
    ("nul.txt", b"text\x00more text", "NUL"),
    ("latin1.txt", "café au lait".encode("latin-1"), "offset 3"),
    ("plain.docx", b"just some text, not a zip", "not a .docx zip"),
    ("old.docx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600), "old .doc or a password-protected"),
    ("program.exe", b"MZ\x90\x00", "unsupported file type '.exe'"),
])
def test_bad_inputs_say_why(tmp_path, name, content, reason):
    with pytest.raises(ParseError, match=reason):
        parse_file(write(tmp_path / name, content))


def test_pdf_without_text(tmp_path):
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.output(str(tmp_path / "blank.pdf"))
    with pytest.raises(ParseError, match="no text found .*OCR"):
        parse_file(tmp_path / "blank.pdf")


def test_non_utf8_suggests_resaving(tmp_path):
    with pytest.raises(ParseError) as e:
        parse_file(write(tmp_path / "a.md", "naïve".encode("latin-1")))
    assert "UTF-8" in str(e.value) and "re-save" in str(e.value)


def test_non_utf8_offset_counts_the_bom(tmp_path):
    with pytest.raises(ParseError, match=r"byte 0xe9 at offset 6;"):
        parse_file(write(tmp_path / "a.txt", b"\xef\xbb\xbfabc\xe9"))


def test_long_heading_line_is_not_quadratic(tmp_path):
    # A closing-#s regex backtracks over this for minutes (20 000 pairs took 25 s); parsed here in
    # the sandbox, whose limit stops a parse that runs that long
    line = "# a" + " \t" * 300_000 + "#x\n\nbody\n"
    assert parse_isolated(write(tmp_path / "a.md", line), timeout_s=30) == [Block("body", section="a #x")]


def encrypted_pdf(path, user_password: str):
    from pypdf import PdfWriter

    writer = PdfWriter(clone_from=raw_pdf(path, deflate_repeated(TEXT_OP, 3)))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="AES-256")
    writer.write(path)
    return path


def test_pdf_with_a_password(tmp_path):
    with pytest.raises(ParseError, match="protected by a password"):
        parse_file(encrypted_pdf(tmp_path / "locked.pdf", "secret"))


def test_pdf_encrypted_without_a_user_password_opens(tmp_path):
    # Common for "no printing" PDFs; AES needs pypdf's crypto extra (cryptography).
    assert parse_file(encrypted_pdf(tmp_path / "restricted.pdf", "")) == [Block("xxx", page=1)]


def test_oversize_file(tmp_path):
    f = write(tmp_path / "a.txt", "x" * 12_345)
    with pytest.raises(ParseError, match=r"file is 12.3 KB, over the 10 KB limit"):
        parse_file(f, max_bytes=10_000)
    assert parse_file(f, max_bytes=12_345)


def test_docx_zip_bomb_refused_before_inflating(tmp_path):
    path = docx_bomb(tmp_path / "bomb.docx", 300)
    assert path.stat().st_size < 3_000_000
    with pytest.raises(ParseError, match=r"zip bomb: 314.6 MB uncompressed"):
        parse_file(path)


def test_docx_high_ratio_member_refused(tmp_path):
    with pytest.raises(ParseError, match=r"zip bomb: word/document.xml inflates .* \(\d+:1\)"):
        parse_file(docx_bomb(tmp_path / "small-bomb.docx", 20))


def test_zip_that_is_not_a_word_document(tmp_path):
    path = tmp_path / "a.docx"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("hello.txt", "hi")
    with pytest.raises(ParseError, match="no word/document.xml"):
        parse_file(path)


def test_missing_file(tmp_path):
    with pytest.raises(ParseError, match="cannot read"):
        parse_file(tmp_path / "gone.txt")


# ---- sandbox ----------------------------------------------------------------------------------

def test_isolated_matches_in_process(tmp_path):
    md = "# Título\n\nÜber   text.\n\n## Sub\nmore\n"
    path = write(tmp_path / "a.md", md)
    assert parse_isolated(path) == parse_file(path)


def test_isolated_reports_the_childs_parse_error(tmp_path):
    with pytest.raises(ParseError, match="^not UTF-8 text"):
        parse_isolated(write(tmp_path / "a.txt", b"abc\xe9"))
    with pytest.raises(ParseError, match="over the 10 bytes limit"):
        parse_isolated(write(tmp_path / "b.txt", "hello world"), max_bytes=10)


def test_isolated_stops_a_parse_that_never_ends(tmp_path):
    # pypdf caps one content stream (75 MB inflated, 2M tokens), so 40 pages share one 6 MB stream
    # of text operators just under the caps: 40 KB on disk, about 15 s of pypdf work per page here.
    path = raw_pdf(tmp_path / "slow.pdf", deflate_repeated(TEXT_OP, 190_000), pages=40)
    assert path.stat().st_size < 100_000
    with pytest.raises(ParseError, match=r"^parsing took longer than 2 s$"):
        parse_isolated(path, timeout_s=2)


def test_isolated_stops_a_parse_that_eats_memory(tmp_path):
    # A 70 MB page stream packed into ~80 KB cannot be inflated in a 128 MB child; a small PDF can.
    small = raw_pdf(tmp_path / "small.pdf", deflate_repeated(TEXT_OP, 3))
    assert parse_isolated(small, memory_mb=128) == [Block("xxx", page=1)]
    bomb = raw_pdf(tmp_path / "bomb.pdf", deflate_repeated(TEXT_OP, 70 * (1 << 20) // len(TEXT_OP)))
    assert bomb.stat().st_size < 1_000_000
    with pytest.raises(ParseError, match=r"^parsing needed more than 128 MB of memory$"):
        parse_isolated(bomb, memory_mb=128, timeout_s=60)


def test_isolated_child_starts_fast(tmp_path):
    """The sandbox is a fresh interpreter for every file: it loads the parsers, none of the
    libraries that take seconds to import."""
    code = ("import sys, workbench.corpus.sandbox\n"
            "print(sorted(m for m in ('torch', 'numpy', 'transformers', 'sentence_transformers', 'faiss', 'gradio')"
            " if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]", proc.stdout
    assert parse_isolated(write(tmp_path / "a.txt", "hi")) == [Block("hi")]


def test_isolated_does_not_leave_children(tmp_path):
    path = raw_pdf(tmp_path / "slow.pdf", deflate_repeated(TEXT_OP, 190_000), pages=5)
    before = set(os.listdir("/proc"))
    with pytest.raises(ParseError, match="longer than 0.5 s"):
        parse_isolated(path, timeout_s=0.5)
    sandboxes = {p: _sandbox_parent(p) for p in set(os.listdir("/proc")) - before if p.isdigit()}
    ours = {str(os.getpid())}  # the other test process may be parsing meanwhile: only this one's count
    while True:
        more = {p for p, parent in sandboxes.items() if parent in ours} - ours
        if not more:
            break
        ours |= more
    assert sorted(ours - {str(os.getpid())}) == []


def _sandbox_parent(pid: str) -> str | None:
    """The parent of a parse sandbox process; None for any other process (or one gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if b"workbench.corpus.sandbox" not in f.read():
                return None
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[1]
    except OSError:
        return None
