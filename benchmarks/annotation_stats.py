"""How fast a team's annotation counters answer as votes pile up: ``team_stats`` (what
``workbench feedback stats`` and the trainer's panel show), an annotator's ``progress`` and
``claim_next_pair`` (each vote's next page), at 10,000 votes by default, first read of the file
and cached, and ``workbench feedback stats --json`` as a shell runs it.

The votes are French RAG votes of a realistic size (a 1,600-character prompt with its context,
two 600-character answers), five annotators, two votes a pair, a guidelines change halfway.

    .venv/bin/python benchmarks/annotation_stats.py [--votes 10000] [--json out.json]
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import alternate, summary_ms  # noqa: E402

CONTEXT = ("Contexte : le serveur écrit ses journaux dans /var/log/atelier et les fait tourner chaque semaine ; "
           "la rétention est de quatre semaines, sauf si l'administrateur la change dans atelier.toml. ") * 8


def fill(workspace, votes: int, seed: int = 0) -> None:
    from workbench.feedback.guidelines import save_guidelines
    from workbench.feedback.pairs import Side, make_pair, pair_store
    from workbench.feedback.sets import save_set
    from workbench.feedback.votes import Vote, record_votes

    rng = random.Random(seed)
    save_set(workspace, "default", 2)
    pairs = [make_pair(f"Question {i} : combien de semaines de journaux garde-t-on ?\n\n{CONTEXT}", "typed",
                       Side("base", 0.0, answer="Quatre semaines, sauf réglage contraire. " * 15),
                       Side("base", 0.8, answer=f"Les journaux tournent chaque semaine ({i}). " * 14))
             for i in range(votes // 2)]
    pair_store(workspace).add(pairs)
    annotators = [f"annotateur{i}" for i in range(5)]
    batch = []
    for n, pair in enumerate(pairs):
        if n == len(pairs) // 2:
            record_votes(workspace.feedback_file, batch)
            batch = []
            save_guidelines(workspace, "Préférez la réponse fidèle au contexte.", "formateur")
        for annotator in rng.sample(annotators, 2):
            batch.append(Vote(pair_id=pair.pair_id, prompt=pair.prompt, answer_a=pair.a.answer, answer_b=pair.b.answer,
                              choice=rng.choice("aab"), annotator=annotator, model_a="base", model_b="base",
                              guidelines_version=int(n >= len(pairs) // 2)))
    record_votes(workspace.feedback_file, batch)
    # a few pairs still open, so the next-pair search has something to find at the end of the queue
    pair_store(workspace).add([make_pair(f"Question ouverte {i} ?\n\n{CONTEXT}", "typed", Side("base", 0.0, answer="Oui."),
                                         Side("base", 0.8, answer="Non.")) for i in range(20)])


def timed_ms(call, repeats: int) -> dict:
    figures = summary_ms(alternate({"call": call}, repeats)["call"])
    return {"median_ms": figures["p50_ms"], "max_ms": figures["max_ms"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--votes", type=int, default=10_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="wb-annotation-bench-"))
    os.environ.update(WORKBENCH_HOME=str(home), HF_HUB_OFFLINE="1")
    from storage import Workspace
    from workbench.feedback import tally
    from workbench.feedback.distribution import claim_next_pair, release_lease
    from workbench.feedback.stats import progress, team_stats

    workspace = Workspace(home).ensure()
    fill(workspace, args.votes)
    size_mb = workspace.feedback_file.stat().st_size / 2**20

    def cold(call):
        def run():
            tally._cache.clear()
            call()
        return run

    figures = {"votes": args.votes, "feedback_mb": round(size_mb, 1)}
    figures["team_stats_first_read"] = timed_ms(cold(lambda: team_stats(workspace)), 3)
    figures["team_stats_cached"] = timed_ms(lambda: team_stats(workspace), 5)
    figures["progress_cached"] = timed_ms(lambda: progress(workspace, "annotateur0"), 5)

    def claim():
        claim_next_pair(workspace, "nouvelle")
        release_lease(workspace, "nouvelle")
    figures["claim_next_pair_cached"] = timed_ms(claim, 5)
    # as an installed workbench runs: its modules' bytecode cached (written by a first run), which
    # a machine that sets PYTHONDONTWRITEBYTECODE never has: every run would compile them again
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {"PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "workbench.cli", "feedback", "stats"], env=env, check=True,
                   stdout=subprocess.DEVNULL)

    def command(*argv):
        return lambda: subprocess.run([sys.executable, *argv], env=env, check=True, stdout=subprocess.DEVNULL)
    # the same command three ways, alternating, so a busy machine weighs on each alike: the
    # interpreter alone (the floor), the command, and the command without the votes' and pairs'
    # indexes (every file read whole, as before the indexes)
    stats = command("-m", "workbench.cli", "feedback", "stats", "--json")
    indexes = [workspace.data / ".feedback.jsonl.index", workspace.data / ".pairs.jsonl.index"]
    saved = [path.read_bytes() for path in indexes]

    def without_indexes():
        for path in indexes:
            path.unlink()
        stats()
        for path, data in zip(indexes, saved):
            path.write_bytes(data)
            os.utime(path)
    seconds = alternate({"python_start": command("-c", "pass"), "cli_feedback_stats": stats,
                         "cli_feedback_stats_files_read_whole": without_indexes}, 7)
    for name, times in seconds.items():
        figures[name] = {"median_ms": summary_ms(times)["p50_ms"], "max_ms": summary_ms(times)["max_ms"]}
    figures["cli_speedup"] = round(statistics.median(seconds["cli_feedback_stats_files_read_whole"])
                                   / statistics.median(seconds["cli_feedback_stats"]), 2)
    import json

    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
