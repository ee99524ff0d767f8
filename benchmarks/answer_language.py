"""Answers in the asker's language: 12 questions asked across languages (6 French questions over
English context, 6 English questions over French context), each answered greedily by the chat
model with the system lines compared below; an answer counts when py3langid reads it in the
question's language. ``product`` is what chat, pair generation and training give the model
(``workbench.chat.prompt.chat_messages``).

    python benchmarks/answer_language.py [--model base] [--tokens 60]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="base")
    parser.add_argument("--tokens", type=int, default=60)
    args = parser.parse_args()

    import py3langid
    import torch

    from workbench.chat.prompt import build_prompt, chat_messages
    from workbench.models.loading import load_for_inference, resolve
    from workbench.settings import Settings

    settings = Settings.from_env()
    model, tokenizer, device = load_for_inference(resolve(args.model, settings.workspace, settings.base_model), "full")

    def system(line):
        return lambda lang, prompt: [{"role": "system", "content": line[lang]}, {"role": "user", "content": prompt}]

    variants = {"no system line": lambda lang, prompt: [{"role": "user", "content": prompt}],
                "short English line": system(SHORT), "line in the question's language": system(NATIVE),
                "product": lambda lang, prompt: chat_messages(prompt)}
    print(f"{'system line':34} {'French q.':>10} {'English q.':>11} {'all':>5}")
    for name, messages in variants.items():
        right = {"fr": 0, "en": 0}
        for lang, question, context in CASES:
            text = tokenizer.apply_chat_template(messages(lang, build_prompt(question, [context])), tokenize=False,
                                                 add_generation_prompt=True)
            enc = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(device)
            with torch.no_grad():
                out = model.generate(**enc, max_new_tokens=args.tokens, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id)
            answer = tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            right[lang] += py3langid.classify(answer)[0] == lang
        print(f"{name:34} {right['fr']:>8}/6 {right['en']:>9}/6 {right['fr'] + right['en']:>3}/12", flush=True)


if __name__ == "__main__":
    main()
