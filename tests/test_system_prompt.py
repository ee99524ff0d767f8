"""The workspace's system prompt: versions a trainer saves (refused by name when it is not text,
or too long), the one system message every model gets (the team's prompt, then the line asking
for the question's language), the room it takes in the context window, and the copy a run
keeps: a pairs job answers under the version it was launched with, even after a change."""
from __future__ import annotations

import json

import pytest

from workbench.errors import WorkbenchError

SYSTEM = "Tu es l'assistant de l'équipe documentation. Réponds brièvement et cite le document source."
QUESTION = "À quelle pression la vanne 3 s'ouvre-t-elle ?"
CONTEXT = " ".join(f"La vanne {i} de la ligne {i} s'ouvre à {i * 7} bar." for i in range(60))


def test_versions_are_kept_and_bad_files_are_refused_by_name(settings, tmp_path, wb):
    from workbench.chat.system_prompt import (SYSTEM_PROMPT_CHARS, current_system_prompt, save_system_prompt,
                                              system_prompt_from_file)

    ws = settings.workspace.ensure()
    assert current_system_prompt(ws).version == 0 and current_system_prompt(ws).text == ""
    first = save_system_prompt(ws, f"  {SYSTEM}\n", "tom")
    assert (first.version, first.text, first.author) == (1, SYSTEM, "tom")
    assert save_system_prompt(ws, SYSTEM, "ann").version == 1  # the same text: no new version
    with pytest.raises(WorkbenchError, match=f"the system prompt is {SYSTEM_PROMPT_CHARS + 1:,} characters long"):
        save_system_prompt(ws, "x" * (SYSTEM_PROMPT_CHARS + 1), "tom")
    binary = tmp_path / "consigne.md"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(WorkbenchError, match="consigne.md is not a text file"):
        system_prompt_from_file(binary)
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("Réponds en français.".encode("latin-1"))
    with pytest.raises(WorkbenchError, match="latin1.txt is not UTF-8 text"):
        system_prompt_from_file(latin)
    assert current_system_prompt(ws).version == 1  # nothing written by a refusal

    # the command: a file becomes version 2, --clear version 3 (none from then on); each is audited
    text = tmp_path / "systeme.md"
    text.write_text("Réponds en une phrase, fidèle au contexte.", encoding="utf-8")
    code, out, err = wb("system-prompt", str(text), "--json")
    assert code == 0, err
    assert json.loads(out)["version"] == 2 and json.loads(out)["text"] == "Réponds en une phrase, fidèle au contexte."
    code, out, _ = wb("system-prompt", "--clear")
    assert code == 0 and out.startswith("version 3: no system prompt (cleared by")
    assert wb("system-prompt", str(text), "--clear")[0] == 2
    audit = [json.loads(line) for line in (ws.home / "audit.jsonl").read_text().splitlines()]
    assert [e["detail"] for e in audit if e["action"] == "system_prompt"] == ["version 2", "version 3"]


def test_one_system_message_frames_every_prompt_and_takes_its_room(tiny_base):
    from transformers import AutoTokenizer

    from workbench.chat.prompt import build_prompt, chat_messages, fit_prompt
    from workbench.train.data import conversational_pair

    prompt = build_prompt(QUESTION, [CONTEXT])
    messages = chat_messages(prompt, SYSTEM)
    assert messages == [{"role": "system", "content": SYSTEM + "\n\nAlways answer in French, the language of the "
                         "question, even when the context is in another language."},
                        {"role": "user", "content": prompt}]
    assert chat_messages("VACUUM FULL", SYSTEM)[0] == {"role": "system", "content": SYSTEM}
    assert chat_messages("VACUUM FULL", "  ") == [{"role": "user", "content": "VACUUM FULL"}]
    pair = conversational_pair({"prompt": prompt, "chosen": "À 21 bar.", "rejected": "Je ne sais pas."}, SYSTEM)
    assert pair["prompt"] == messages

    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert SYSTEM in rendered and rendered.index(SYSTEM) < rendered.index(QUESTION)

    def length(system: str) -> int:
        text = tokenizer.apply_chat_template(chat_messages(prompt, system), tokenize=False, add_generation_prompt=True)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    budget = length("")  # the prompt fits exactly without a system prompt...
    assert fit_prompt(tokenizer, prompt, budget) == (prompt, "")
    cut, note = fit_prompt(tokenizer, prompt, budget, system=SYSTEM)  # ...and loses context to make room for it
    assert cut.startswith(QUESTION) and len(cut) < len(prompt) and "retrieved context was cut by" in note
    removed = int(note.split("cut by ")[1].split()[0])
    assert removed >= length(SYSTEM) - budget


def test_the_answer_language_is_read_in_the_question_s_own_words():
    """A question that quotes a title or names code from documents in another language is read in
    its own words: read whole, each of these came out English or unclear."""
    from workbench.chat.prompt import ANSWER_IN, answer_instruction, build_prompt
    from workbench.language import QUESTION_CONFIDENCE, _identifier, question_language

    context = "A Box<T> stores data on the heap; Rust's String is a growable UTF-8 encoded text."
    asked = {
        "Que dit la documentation sur « Using Box<T> to Get a Recursive Type with a Known Size » ?": "fr",
        "Comment fonctionne « Storing UTF-8 Encoded Text with Strings » ?": "fr",
        "Pourquoi `std::fs::read_to_string()` renvoie-t-il un Result ?": "fr",
        'How does "Travail sur les fichiers d’entrée" work?': "en",
    }
    for question, language in asked.items():
        whole, confidence = _identifier().classify(question)
        assert whole != language or confidence < QUESTION_CONFIDENCE, question
        assert question_language(question) == language, question
        line = answer_instruction(build_prompt(question, [context]))
        assert line == ANSWER_IN.format(language=dict(fr="French", en="English")[language]), question
    # nothing of its own left: the question is read whole, and a few quoted words stay unclear
    assert question_language("« Ownership »") is None and question_language('"VACUUM FULL"') is None
    # too few words of its own to tell: no line, rather than one in the quoted name's language
    for question in ("Que fait HashMap::entry ?", "Que fait `read_to_string` ?"):
        assert answer_instruction(build_prompt(question, [context])) is None, question


def test_a_pairs_job_answers_under_the_version_it_was_launched_with(train_env, settings):
    from jobs import control
    from jobs.runner import execute
    from workbench.chat.system_prompt import save_system_prompt
    from workbench.feedback.annotation import pair_store
    from workbench.feedback.pairs import Side, make_pair

    ws = settings.workspace.ensure()
    save_system_prompt(ws, SYSTEM, "tom")
    store = pair_store(ws)
    pair = make_pair(build_question(), "typed", Side("base", 0.0, 4), Side("base", 0.7, 4))
    store.add([pair])
    run = control.create(settings, "pairs.generate", {})
    save_system_prompt(ws, "Réponds en anglais.", "tom")  # changed after the launch: the run keeps version 1
    assert execute(settings, run.id)["status"] == "succeeded"
    assert "under the workspace's system prompt, version 1" in run.read_log()
    kept = [json.loads(line) for line in (run.folder / "inputs" / "system.jsonl").read_text().splitlines()]
    assert [r["version"] for r in kept] == [1]
    assert store.all()[pair.pair_id].ready


def build_question() -> str:
    from workbench.chat.prompt import build_prompt

    return build_prompt(QUESTION, [CONTEXT[:300]])
