"""Fetch real documentation sets from Debian packages (HTML manuals, PDFs), for the benchmarks.

    python benchmarks/fetch_docs.py [--into DIR] [--set NAME]

``apt-get download`` takes the package from the Debian archive (no root needed), ``dpkg -x``
unpacks it, and the set's pages (HTML or PDF files) are copied into ``DIR/<set>/``. Prints the folder.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_PG = ("postgresql-doc-15", "usr/share/doc/postgresql-doc-15/html")
_DJANGO = ("python-django-doc", "usr/share/doc/python-django-doc/html")
SETS = {
    # set: (package, folder inside the package, file patterns)
    "postgres-tutorial": (*_PG, ("tutorial*.html",)),
    # The retrieval sets: about a hundred pages each, from two generators (DocBook, Sphinx); the
    # questions in benchmarks/data/retrieval_<set>.tsv name these pages.
    "postgres": (*_PG, ("tutorial*.html", "ddl*.html", "datatype*.html", "functions*.html",
                        "indexes*.html", "queries*.html")),
    "django": (*_DJANGO, ("topics/**/*.html", "howto/**/*.html")),
    # Three sets that differ from those: LilyPond's learning manual in French (texi2html, each
    # page wrapped in a long table-of-contents sidebar), 128 pages.
    "lilypond-fr": ("lilypond-doc-html-fr", "usr/share/doc/lilypond/html/Documentation/learning", ("*.fr.html",)),
    # Erlang/OTP's manuals as PDF (erl_docgen XML through Apache FOP), one per application, user's
    # guide and reference: 37 documents (the wxErlang API reference, 983 pages, is left out by [!w]).
    "erlang-pdf": ("erlang-doc", "usr/share/doc/erlang-doc", ("doc/pdf/*.pdf", "erts-*/doc/pdf/*.pdf",
                                                            "lib/[!w]*/doc/pdf/*.pdf")),
    # The Rust Programming Language book (mdBook): its chapters and appendices, 102 pages.
    "rust-book": ("rust-doc", "usr/share/doc/rust-doc/html/book", ("ch[0-9]*.html", "appendix-*.html")),
}
DEFAULT_INTO = Path(tempfile.gettempdir()) / "workbench-docs"


def set_language(name: str) -> str:
    """The language of a set's pages: LilyPond's manual is French, the others English."""
    return "fr" if name.endswith("-fr") else "en"


def fetch(name: str, into: Path = DEFAULT_INTO) -> Path:
    package, inside, patterns = SETS[name]
    target = into / name
    if target.is_dir() and any(target.iterdir()):
        return target
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["apt-get", "download", package], cwd=tmp, check=True, capture_output=True)
        deb = next(Path(tmp).glob("*.deb"))
        subprocess.run(["dpkg", "-x", str(deb), str(Path(tmp) / "x")], check=True)
        root = Path(tmp) / "x" / inside
        target.mkdir(parents=True, exist_ok=True)
        for page in sorted({p for pattern in patterns for p in root.glob(pattern)}):
            if page.is_file():
                dest = target / page.relative_to(root).as_posix().replace("/", "__")
                shutil.copyfile(page, dest)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", choices=sorted(SETS), default="postgres-tutorial")
    parser.add_argument("--into", type=Path, default=DEFAULT_INTO)
    args = parser.parse_args()
    print(fetch(args.set, args.into))
    return 0


if __name__ == "__main__":
    sys.exit(main())
