"""Answers in the asker's language: questions asked across languages, each answered greedily by
the chat model with the lines compared below; an answer counts when ``question_language`` reads
it in the question's language. ``product`` is what chat, pair generation and training give the
model (``workbench.chat.prompt.chat_messages``: the answer-language line in the system message,
and closing the context when the context is in another language); ``system line only`` is the
product before the line closed such a context.

Three sources of questions: 12 written here over a short context (6 French questions over
English context, 6 English over French); with ``--set``, a retrieval benchmark set's pages
ingested into a workspace kept under ``--home`` and its section titles asked in the other
language (``question_language.py``'s phrasings, quoted and unquoted by turns), each with the
two chunks ``workbench search`` retrieves for it, as ``benchmarks/learning.py`` asks; or, with
``--prompts``, real RAG prompts (a JSONL file with a ``prompt`` field: a ``dataset_rlhf.jsonl``,
or the ``pairs.jsonl`` of ``benchmarks/learning.py --ask fr``'s workspace). Of the last two, the
first ``--first`` prompts after ``--skip`` whose question's language is clear and differs from
the context's.

    python benchmarks/answer_language.py [--model base] [--tokens 60]
                                         [--set lilypond-fr [--home DIR] | --prompts FILE] [--first 30 --skip 0]
                                         [--only "system line only,product"]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

CASES = [  # (question's language, question, context in the other language)
    ("fr", "Comment les abeilles indiquent-elles où se trouvent les fleurs ?",
     "Honey bees tell each other where flowers are with the waggle dance, a figure-eight movement whose angle points to the food."),
    ("fr", "Que transforment les cellules photovoltaïques en électricité ?",
     "Photovoltaic cells made of silicon turn sunlight into electricity; panels lose about half a percent of output per year."),
    ("fr", "À quoi sert le démon autovacuum de PostgreSQL ?",
     "The PostgreSQL autovacuum daemon removes dead rows and updates planner statistics in the background."),
    ("fr", "Comment crée-t-on une migration avec Django ?",
     "Django migrations are created with makemigrations and applied with the migrate command."),
    ("fr", "Pourquoi un volcan entre-t-il en éruption ?",
     "A volcano erupts when magma rising through the crust builds enough pressure to break the surface."),
    ("fr", "Par quels pays passe le Rhin ?",
     "The Rhine flows from the Swiss Alps to the North Sea, passing through Germany and the Netherlands."),
    ("en", "How do bees show where the flowers are?",
     "Les abeilles communiquent l'emplacement des fleurs par la danse frétillante, un mouvement en huit dont l'angle indique la nourriture."),
    ("en", "What do photovoltaic cells turn into electricity?",
     "Les cellules photovoltaïques en silicium transforment la lumière du soleil en électricité ; un panneau perd environ un demi pour cent par an."),
    ("en", "What is the PostgreSQL autovacuum daemon for?",
     "Le démon autovacuum de PostgreSQL supprime les lignes mortes et met à jour les statistiques du planificateur."),
    ("en", "How do you create a migration with Django?",
     "Les migrations Django se créent avec makemigrations et s'appliquent avec la commande migrate."),
    ("en", "Why does a volcano erupt?",
     "Un volcan entre en éruption quand le magma qui monte dans la croûte accumule assez de pression pour percer la surface."),
    ("en", "Which countries does the Rhine flow through?",
     "Le Rhin coule des Alpes suisses jusqu'à la mer du Nord, en traversant l'Allemagne et les Pays-Bas."),
]
SHORT = {"fr": "Answer in French.", "en": "Answer in English."}
NATIVE = {"fr": "Réponds en français.", "en": "Answer in English."}


def cases_of(path: Path, first: int, skip: int) -> list[tuple[str, str, str]]:
    """(question's language, question, context) of the file's RAG prompts asked across languages."""
    import json

    from workbench.chat.prompt import split_prompt
    from workbench.language import detect_language, question_language

    out, seen = [], set()
    for line in path.read_text(encoding="utf-8").splitlines():
        prompt = json.loads(line).get("prompt") if line.strip() else None
        if not isinstance(prompt, str) or prompt in seen:
            continue
        seen.add(prompt)
        question, context = split_prompt(prompt)
        asked = question_language(question)
        if asked and context and detect_language(context) not in (None, asked):
            out.append((asked, question, context))
    return out[skip:skip + first]


def set_prompts(name: str, home: Path, k: int = 2) -> Path:
    """The set's section titles asked in the other language, each with its top ``k`` chunks, as a
    prompts file (written once under ``home``); the set is ingested there first."""
    import json

    from common import workbench
    from fetch_docs import set_language
    from question_language import ASKED_IN, section_titles

    from workbench.chat.prompt import build_prompt

    out = home / f"prompts-{name}.jsonl"
    if out.exists():
        return out
    env = {key: value for key, value in os.environ.items() if not key.startswith("WORKBENCH_")}
    env.update(WORKBENCH_HOME=str(home / name), HF_HUB_OFFLINE="1")
    if not (home / name / "models" / "base").exists():
        workbench(env, "models", "pull")
    if not (home / name / "data" / "metadata.json").exists():
        from fetch_docs import fetch

        workbench(env, "ingest", str(fetch(name)))
    phrasings = ASKED_IN["en" if set_language(name) == "fr" else "fr"]
    questions = [phrasings[i % len(phrasings)].format(t) for i, t in enumerate(section_titles(name))]
    listed = home / f"questions-{name}.txt"
    listed.write_text("".join(q + "\n" for q in questions), encoding="utf-8")
    found = [json.loads(line) for line in workbench(env, "search", "--file", str(listed), "-k", str(k),
                                                     "--json").splitlines() if line.strip()]
    out.write_text("".join(json.dumps({"prompt": build_prompt(f["query"], [h["text"] for h in f["hits"]])},
                                      ensure_ascii=False) + "\n" for f in found), encoding="utf-8")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="base")
    parser.add_argument("--tokens", type=int, default=60)
    parser.add_argument("--prompts", type=Path, help="RAG prompts (JSONL with a prompt field) instead of the 12 here")
    parser.add_argument("--set", help="a retrieval benchmark set whose section titles are asked in the other language")
    parser.add_argument("--only", help="the lines compared, by name, comma-separated (default: all)")
    parser.add_argument("--home", type=Path, default=Path(tempfile.gettempdir()) / "answer-language",
                        help="where --set's workspaces are kept")
    parser.add_argument("--first", type=int, default=30, help="how many of --prompts' prompts asked across languages")
    parser.add_argument("--skip", type=int, default=0, help="the prompts asked across languages left out first")
    args = parser.parse_args()

    import torch

    from workbench.chat.prompt import answer_instruction, build_prompt, chat_messages
    from workbench.language import question_language
    from workbench.models.loading import load_for_inference, resolve
    from workbench.settings import Settings

    prompts = set_prompts(args.set, args.home) if args.set else args.prompts
    settings = Settings.from_env()
    workspace = Settings(home=args.home / args.set).workspace if args.set else settings.workspace
    model, tokenizer, device = load_for_inference(resolve(args.model, workspace, settings.base_model), "full")
    cases = cases_of(prompts, args.first, args.skip) if prompts else CASES

    def system(line):
        return lambda lang, prompt: [{"role": "system", "content": line[lang]}, {"role": "user", "content": prompt}]

    def product_system(prompt: str) -> list[dict[str, str]]:  # the product's system message, if any
        return chat_messages(prompt)[:-1]

    def closing(line):  # the product, with another line closing the context
        return lambda lang, prompt: product_system(prompt) + [{"role": "user", "content": f"{prompt}\n\n{line[lang]}"}]

    variants = {"no system line": lambda lang, prompt: [{"role": "user", "content": prompt}],
                "short English line": system(SHORT), "line in the question's language": system(NATIVE),
                "system line only": lambda lang, prompt: product_system(prompt) + [{"role": "user", "content": prompt}],
                "closing line in the question's language": closing(NATIVE),
                "product": lambda lang, prompt: chat_messages(prompt)}
    if args.only:
        variants = {name: variants[name] for name in args.only.split(",")}
    asked = {lang: sum(c[0] == lang for c in cases) for lang in ("fr", "en")}
    lined = sum(bool(answer_instruction(build_prompt(q, [c]))) for _, q, c in cases)
    print(f"{len(cases)} questions asked across languages ({asked['fr']} French, {asked['en']} English); "
          f"{lined} read clearly enough for an answer-language line")
    print(f"{'lines':40} {'French q.':>10} {'English q.':>11} {'all':>7}")
    for name, messages in variants.items():
        right = {"fr": 0, "en": 0}
        for lang, question, context in cases:
            prompt = build_prompt(question, [context])
            text = tokenizer.apply_chat_template(messages(lang, prompt), tokenize=False, add_generation_prompt=True)
            enc = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(device)
            with torch.no_grad():
                out = model.generate(**enc, max_new_tokens=args.tokens, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id)
            answer = tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            right[lang] += question_language(answer[:500]) == lang
        print(f"{name:40} {right['fr']:>6}/{asked['fr']:<3} {right['en']:>7}/{asked['en']:<3} "
              f"{right['fr'] + right['en']:>3}/{len(cases)}", flush=True)


if __name__ == "__main__":
    main()
