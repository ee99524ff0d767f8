"""RAG chat on the real base model (SmolLM2-135M, provisioned once per session): the prompt's
shape, cited sources, streaming, trained adapters in the picker, unknown models refused,
sending a turn to Annotate, and unloading."""
from __future__ import annotations

import json

import pytest

from tests.conftest import ingest
from tests.helpers import make_corpus


@pytest.fixture
def chat_env(wb, pulled_base, monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBENCH_BASE_MODEL", str(pulled_base[1]))
    corpus = make_corpus(tmp_path / "corpus")
    assert ingest(wb, str(corpus / "facts.txt"), str(corpus / "notes.md"))[0] == 0
    return wb


def test_ask_streams_an_answer_with_its_sources(chat_env, settings):
    code, out, _ = chat_env("ask", "What is the capital of Germany?", "-k", "2", "--max-new-tokens", "24", "--json")
    assert code == 0
    turn = json.loads(out)
    assert turn["sources"][0]["source"] == "facts.txt"
    assert turn["prompt"] == ("What is the capital of Germany?\n\nContext:\n"
                              + "\n\n".join(s["text"] for s in turn["sources"]))
    assert turn["chunk_ids"] == [s["chunk_id"] for s in turn["sources"]]
    assert turn["answer"].strip() and 0 < turn["new_tokens"] <= 24 and turn["done"]
    assert "Berlin" in turn["answer"]
    assert turn["ttft_s"] < turn["seconds"]

    code, out, _ = chat_env("ask", "What is the capital of Germany?", "--no-rag", "--max-new-tokens", "8", "--json")
    plain = json.loads(out)
    assert plain["prompt"] == "What is the capital of Germany?" and plain["sources"] == []


def test_sources_reranked_by_the_model_in_chat_and_in_eval_retrieval(chat_env, settings, tmp_path):
    code, out, err = chat_env("ask", "What is the capital of Germany?", "-k", "2", "--rerank",
                              "--max-new-tokens", "16", "--json")
    assert code == 0, err
    turn = json.loads(out)
    assert turn["request"]["rerank"] is True and len(turn["sources"]) == 2
    assert turn["sources"][0]["source"] == "facts.txt" and [s["rank"] for s in turn["sources"]] == [1, 2]
    assert "Berlin" in turn["answer"]

    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps(q) + "\n" for q in [
        {"question": "Which volcano in Sicily sends lava towards Catania?", "sources": ["notes.md"]},
        {"question": "What is the capital city of Germany?", "sources": ["facts.txt"]}]))
    code, out, err = chat_env("eval-retrieval", str(questions), "--mode", "hybrid", "--rerank", "--json")
    assert code == 0, err
    modes = json.loads(out)["modes"]
    assert set(modes) == {"hybrid", "hybrid+rerank"}
    assert modes["hybrid+rerank"]["hit@1"] == 1.0 and modes["hybrid+rerank"]["misses"] == []


def test_int8_and_full_weights_answer_alike(chat_env):
    turns = {}
    for weights in ("int8", "full"):
        code, out, _ = chat_env("ask", "What is the capital of Germany?", "-k", "2", "--max-new-tokens", "24",
                                "--decode-weights", weights, "--json")
        assert code == 0
        turns[weights] = json.loads(out)
    assert turns["int8"]["weights"] == "int8 weights, bfloat16 activations"
    assert "int8" not in turns["full"]["weights"] and turns["full"]["weights"].endswith(" weights")
    assert "Berlin" in turns["int8"]["answer"] and "Berlin" in turns["full"]["answer"]


def test_answer_arrives_in_pieces_that_add_up(chat_env, settings, pulled_base):
    from workbench.chat.session import ChatRequest, answer_stream

    turns = [(t.delta, t.done, t.answer) for t in answer_stream(
        settings.__class__.from_env(), ChatRequest("Where is Mount Etna?", k=1, max_new_tokens=24))]
    pieces = [d for d, done, _ in turns if not done]
    assert len(pieces) > 3 and turns[-1][1]
    assert "".join(pieces).strip() == turns[-1][2]


def test_trained_adapter_is_listed_and_answers(chat_env, settings, pulled_base):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from storage import write_manifest
    from workbench.models.loading import available_models

    base = pulled_base[1]
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    folder = settings.workspace.model_dir("tiny-lora")
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    write_manifest(folder, {"kind": "adapter", "method": "sft-lora", "base": "base"})
    write_manifest(settings.workspace.model_dir("reward_model"), {"kind": "reward", "method": "reward"})
    assert available_models(settings.workspace) == ["base", "tiny-lora"]  # a reward model cannot chat

    for weights in ("full", "int8"):  # int8 merges the adapter into the weights before quantizing
        code, out, _ = chat_env("ask", "Where is Mount Etna?", "--model", "tiny-lora", "-k", "1",
                                "--max-new-tokens", "8", "--decode-weights", weights, "--json")
        assert code == 0 and json.loads(out)["model"] == "tiny-lora" and json.loads(out)["answer"]
        assert ("int8" in json.loads(out)["weights"]) == (weights == "int8")


def test_unknown_model_and_empty_question_are_refused(chat_env):
    code, _, err = chat_env("ask", "hello", "--model", "nope")
    assert code == 2 and "unknown model 'nope'; available: base" in err
    code, _, err = chat_env("ask", "   ")
    assert code == 2 and "the question is empty" in err


def test_turn_sent_to_annotate_and_models_unloaded(chat_env, settings):
    from storage import read_jsonl
    from workbench.chat.model_cache import CACHE
    from workbench.chat.session import ChatRequest, answer_stream, save_turn
    from workbench.errors import WorkbenchError

    live = settings.__class__.from_env()
    *_, turn = answer_stream(live, ChatRequest("What is the capital of Germany?", k=1, max_new_tokens=8))
    saved = save_turn(live.workspace, turn.to_dict(), "alice")
    lines = read_jsonl(live.workspace.chat_turns_file)
    assert lines == [saved]
    assert saved["prompt"].startswith("What is the capital of Germany?\n\nContext:\n")
    assert saved["chunk_ids"] == turn.chunk_ids and saved["user"] == "alice" and saved["model"] == "base"
    with pytest.raises(WorkbenchError, match="nothing to send"):
        save_turn(live.workspace, {}, "alice")

    assert any(m.spec.name == "base" for m in CACHE.loaded())
    assert "base" in CACHE.unload()
    assert CACHE.loaded() == []


def test_closing_the_stream_stops_generation(chat_env, settings):
    import threading
    import time

    from tests.conftest import wait_for
    from workbench.chat.model_cache import CACHE
    from workbench.chat.session import stream_generate
    from workbench.models.generation import Sampling

    live = settings.__class__.from_env()
    loaded = CACHE.get("base", live.workspace, live.base_model)
    stream = stream_generate(loaded, "Write a very long story about a lighthouse keeper.", Sampling(0.9, 2000))
    for _ in range(3):
        next(stream)
    stream.close()  # what Gradio does when the browser tab goes away
    closed = time.monotonic()
    wait_for(lambda: not any(t.name == "generate" and t.is_alive() for t in threading.enumerate()),
             20, what="the generating thread to stop")
    assert time.monotonic() - closed < 20


def test_only_the_generating_thread_keeps_an_openmp_pool(chat_env, settings):
    """The thread that loads the model and retrieves gives its OpenMP pool back before the answer
    is generated (two pools on a small machine make every decoding step slower)."""
    from tests.conftest import threads_named, with_openmp_pool
    from workbench.chat.session import ChatRequest, answer_stream

    def ask(pool):
        left, answer = [], ""
        for turn in answer_stream(settings.__class__.from_env(), ChatRequest("Where is Mount Etna?", k=1,
                                                                             max_new_tokens=16)):
            left.append(pool & threads_named("asker"))  # this thread's workers still alive
            answer = turn.answer
        return left, answer

    seen = with_openmp_pool("asker", ask)
    left, answer = seen["result"]
    assert len(seen["pool"]) == seen["threads"] - 1
    assert left and all(workers == set() for workers in left)
    assert "Sicily" in answer or "Etna" in answer


def test_static_cache_decodes_the_same_tokens(tiny_base):
    """Chat's single stream on a CPU uses a static KV cache of its own size (a speed change only):
    greedy tokens equal the dynamic cache's, and past the size limit the dynamic cache is kept."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, StaticCache

    from workbench.models.generation import (STATIC_CACHE_MAX_POSITIONS, Sampling, generation_kwargs,
                                             one_stream_kwargs)

    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    model = AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.float32).eval()
    inputs = tokenizer.apply_chat_template([{"role": "user", "content": "Name three rivers in Europe."}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    length = inputs["input_ids"].shape[-1]
    kwargs = generation_kwargs(model, tokenizer, Sampling(0.0, 24, stop_loops=False), length)
    outputs = {}
    with torch.inference_mode():
        for name, extra in (("static", one_stream_kwargs(model, "cpu", length + 24)), ("dynamic", {})):
            outputs[name] = model.generate(**inputs, **kwargs, **extra, min_new_tokens=24,
                                           return_dict_in_generate=True)
        short = generation_kwargs(model, tokenizer, Sampling(0.0, 8, stop_loops=False), length)
        shorter = model.generate(**inputs, **short, **one_stream_kwargs(model, "cpu", length + 8),
                                 min_new_tokens=8, return_dict_in_generate=True)
    assert isinstance(outputs["static"].cache, StaticCache)
    assert not isinstance(outputs["dynamic"].cache, StaticCache)
    assert outputs["static"].sequences.shape[-1] == length + 24
    assert torch.equal(outputs["static"].sequences, outputs["dynamic"].sequences)
    assert shorter.cache.get_max_length() == length + 8  # sized for its own call, not the longest so far
    assert one_stream_kwargs(model, "cpu", STATIC_CACHE_MAX_POSITIONS + 1) == {}
    assert one_stream_kwargs(model, "cuda", 100) == {}


def test_the_answer_is_asked_in_the_language_of_the_question_whatever_the_context():
    from workbench.chat.prompt import build_prompt, chat_messages

    french_over_english = chat_messages(build_prompt(
        "Comment les abeilles indiquent-elles où se trouvent les fleurs ?",
        ["Honey bees tell each other where flowers are with the waggle dance."]))
    assert french_over_english[0] == {"role": "system", "content": (
        "Always answer in French, the language of the question, even when the context is in another language.")}
    english_over_french = chat_messages(build_prompt(
        "Which countries does the Rhine flow through?",
        ["Le Rhin coule des Alpes suisses jusqu'à la mer du Nord, en traversant l'Allemagne et les Pays-Bas."]))
    assert english_over_french[0]["content"].startswith("Always answer in English")
    assert english_over_french[1]["content"].startswith("Which countries")
    # the line closes a context in another language too: after a long one the system message is far behind
    assert french_over_english[1]["content"].endswith("waggle dance.\n\n" + french_over_english[0]["content"])
    assert english_over_french[1]["content"].endswith(english_over_french[0]["content"])
    french_over_french = build_prompt("Comment les abeilles indiquent-elles où se trouvent les fleurs ?",
                                      ["Les abeilles indiquent l'emplacement des fleurs par la danse frétillante."])
    no_context = "Comment les abeilles indiquent-elles où se trouvent les fleurs ?"
    for prompt in (french_over_french, no_context):
        assert chat_messages(prompt) == [french_over_english[0], {"role": "user", "content": prompt}]
    assert chat_messages("VACUUM FULL") == [{"role": "user", "content": "VACUUM FULL"}]  # too short to tell

