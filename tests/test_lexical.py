"""The sparse side of hybrid search speaks the corpus's languages: a French question finds French
chunks written with other forms of its words (stems, accents folded), an English one English
chunks, in one mixed corpus; an index written with plain words keeps working and is re-analysed
at the next ingest; a question in a language without a stemmer gets a note."""
from __future__ import annotations

import numpy as np

from storage import Workspace
from storage.documents import DocumentStore
from workbench.index import lexical, store, store_writes
from workbench.index.search import query_terms

FRENCH = [
    "Pour configurer les interfaces réseau, modifiez le fichier /etc/network/interfaces puis relancez le service.",
    "Les paquets sont installés avec apt : la commande apt install télécharge et installe les dépendances.",
    "Sauvegardes : copiez régulièrement le répertoire personnel sur un disque externe chiffré.",
]
ENGLISH = [
    "Configuring the firewall: nftables rules are loaded at boot from /etc/nftables.conf.",
    "Printing documents: CUPS manages printers, queues and drivers through its web interface.",
    "Mounting disks: entries in /etc/fstab describe which partitions are mounted at boot.",
]


def test_words_are_cut_to_their_stems_per_language_with_accents_folded():
    assert lexical.detect_language(" ".join(FRENCH)) == "fr" and lexical.detect_language(" ".join(ENGLISH)) == "en"
    assert lexical.detect_language("réseau ?") is None  # too short to tell
    assert lexical.analyse("Comment configurer les réseaux ?", "fr") == ["comment", "configur", "reseau"]
    assert lexical.analyse("la configuration réseau", "fr") == ["configur", "reseau"]
    assert lexical.analyse("Mounting the disks", "en") == ["mount", "disk"]
    assert lexical.analyse("Die Konfigurationen", "de") == ["die", "konfiguration"]  # German stop words kept
    assert lexical.analyse("Hello ōlelo", "haw") == ["hello", "olelo"]  # no stemmer: plain words, accents folded


def test_a_question_in_a_language_without_a_stemmer_gets_a_note():
    terms, note = lexical.query_terms("Mitä tapahtuu kun verkkoyhteys katkeaa kesken päivityksen asennuksen?",
                                      ["fr", "en"])
    assert note is None or "no stemmer" in note  # Finnish has a stemmer: no note
    terms, note = lexical.query_terms("Ni jinsi gani ninaweza kusanidi mtandao wa kompyuta yangu nyumbani leo?",
                                      ["fr", "en"])
    assert note and "no stemmer" in note and "kusanidi" in terms


def _index(ws: Workspace, texts_by_doc: dict[str, list[str]], languages: dict[str, str | None],
           analysis: str = "stems") -> None:
    rng = np.random.default_rng(0)
    with DocumentStore(ws).lock():
        db = store.open_db(ws) or store_writes.create(ws, {"model": "m", "dim": 8}, analysis=analysis)
        with db, db.writing():
            for name, texts in texts_by_doc.items():
                rows = [{"chunk_id": f"{name}:{n}", "doc_id": name, "source": f"{name}.html", "text": t}
                        for n, t in enumerate(texts)]
                store_writes.add_document(db, {"id": name, "name": f"{name}.html"}, rows,
                                   rng.standard_normal((len(rows), 8)).astype(np.float32), languages[name])


def _best(ws: Workspace, question: str) -> str:
    with store.open_db(ws) as db:
        hits = db.match(query_terms(question, store.lexical_state(db)), 5)
        return db.chunks([hits[0][0]])[hits[0][0]]["text"] if hits else ""


def test_a_mixed_corpus_answers_french_and_english_questions_by_their_stems(tmp_path):
    ws = Workspace(tmp_path / "ws")
    _index(ws, {"guide-fr": FRENCH, "guide-en": ENGLISH}, {"guide-fr": "fr", "guide-en": "en"})
    with store.open_db(ws) as db:
        assert store.lexical_state(db) == {"version": lexical.VERSION, "languages": ["en", "fr"], "analysis": "stems"}
    # no word of these questions is written the same way in the chunk that answers them
    assert _best(ws, "Comment configure-t-on une interface réseau ?") == FRENCH[0]
    assert _best(ws, "installation paquet") == FRENCH[1]
    assert _best(ws, "sauvegarder mon repertoire") == FRENCH[2]
    assert _best(ws, "how is a disk mounted") == ENGLISH[2]
    assert _best(ws, "printer queue") == ENGLISH[1]


def test_an_index_of_plain_words_is_searched_as_it_is_then_re_analysed(tmp_path):
    ws = Workspace(tmp_path / "ws")
    _index(ws, {"guide-fr": FRENCH}, {"guide-fr": "fr"}, analysis="plain")
    with DocumentStore(ws).lock(), store.open_db(ws) as db, db.writing():  # as written before languages
        db.put(lexical=None)
    with store.open_db(ws) as db:
        assert store.lexical_state(db) == {"version": 1, "languages": [], "analysis": "plain"}
    assert _best(ws, "installés les paquets") == FRENCH[1]  # plain words meet plain words
    assert _best(ws, "installation paquet") == ""  # but no other form of them
    logged = []
    with DocumentStore(ws).lock(), store.open_db(ws) as db, db.writing():
        assert store_writes.upgrade_lexical(db, log=logged.append)  # the next ingest records the languages
        assert not store_writes.upgrade_lexical(db)  # once
        assert store.lexical_state(db) == {"version": lexical.VERSION, "languages": ["fr"], "analysis": "plain"}
        assert store_writes.upgrade_lexical(db, "stems", logged.append)  # another analysis asked for: re-analysed
    assert "fr" in logged[0] and "stems" in logged[1]
    assert _best(ws, "installation paquet") == FRENCH[1]


def test_the_retriever_says_when_a_question_is_looked_for_as_written(tmp_path):
    from workbench.index.search import Retriever

    ws = Workspace(tmp_path / "ws")
    _index(ws, {"guide-fr": FRENCH, "guide-en": ENGLISH}, {"guide-fr": "fr", "guide-en": "en"})
    retriever = Retriever(ws, "m")
    assert retriever.lexical_note("Comment configure-t-on une interface réseau sur cette machine ?") is None
    note = retriever.lexical_note("Ni jinsi gani ninaweza kusanidi mtandao wa kompyuta yangu nyumbani leo?")
    assert note and "looked for as written" in note


def test_convex_fusion_weighs_the_normalised_scores_of_both_sides():
    from workbench.index.search import convex_fusion

    dense = [(1, 0.9), (2, 0.5), (3, 0.1)]  # cosine similarities
    sparse = [(3, 12.0), (4, 6.0), (2, 0.0)]  # BM25 scores, on another scale
    fused = dict(convex_fusion(sparse, dense, alpha=0.5))
    assert fused == {1: 0.5, 2: 0.25, 3: 0.5, 4: 0.25}
    assert [i for i, _ in convex_fusion(sparse, dense, alpha=0.8)] == [1, 2, 3, 4]  # the dense side leads
    assert convex_fusion([], dense, 0.7)[0] == (1, 0.7)


def test_a_chunk_gains_from_the_other_chunks_of_its_document(tmp_path):
    from workbench.index.search import same_document_evidence

    fused = [(1, 1.0), (2, 0.9), (3, 0.8), (4, 0.5), (5, 0.4), (6, 0.3)]
    document_of = {1: "a", 2: "b", 3: "b", 4: "b", 5: "b", 6: "c"}
    ranked = dict(same_document_evidence(fused, document_of, weight=0.1, others=2))
    assert ranked[2] == 0.9 + 0.1 * (0.8 + 0.5)  # its document's two best others, not itself
    assert ranked[5] == 0.4 + 0.1 * (0.9 + 0.8)
    assert ranked[1] == 1.0 and ranked[6] == 0.3  # alone in their documents
    assert [i for i, _ in same_document_evidence(fused, document_of, 0.1)][:3] == [2, 1, 3]  # b overtakes a
    assert same_document_evidence(fused, document_of, weight=0.0) == fused
    deleted = dict(same_document_evidence(fused, {k: v for k, v in document_of.items() if k != 3}, 0.1))
    assert deleted[3] == 0.8  # deleted since: no document, no evidence, and none given to the others
    assert deleted[2] == 0.9 + 0.1 * (0.5 + 0.4)

    ws = Workspace(tmp_path / "ws")  # the store answers the documents of the ids that still exist
    _index(ws, {"guide-fr": FRENCH, "guide-en": ENGLISH}, {"guide-fr": "fr", "guide-en": "en"})
    with store.open_db(ws) as db:
        ids = sorted(c["id"] for c in db.iter_chunks())
        assert db.documents_of(ids + [10_000]) == {i: "guide-fr" if i <= ids[2] else "guide-en" for i in ids}


def test_ingest_keeps_plain_words_by_default_and_switches_to_stems_on_request(wb, settings, tmp_path):
    from tests.conftest import ingest

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "reseau.txt").write_text("\n\n".join(FRENCH), encoding="utf-8")
    (docs / "disks.txt").write_text("\n\n".join(ENGLISH), encoding="utf-8")
    code, _, err = ingest(wb, str(docs))
    assert code == 0, err
    ws = settings.workspace
    with store.open_db(ws) as db:
        assert store.lexical_state(db) == {"version": lexical.VERSION, "languages": ["en", "fr"], "analysis": "plain"}
    names = {d["name"]: d.get("language") for d in DocumentStore(ws).list()}
    assert names == {"reseau.txt": "fr", "disks.txt": "en"}
    assert "Pour configurer" not in _best(ws, "installation paquet")  # plain words: no other forms
    code, _, err = wb("ingest", "--sparse-analysis", "stems")
    assert code == 0, err
    with store.open_db(ws) as db:
        assert store.lexical_state(db)["analysis"] == "stems"
    assert "apt install" in _best(ws, "installation paquet")
