"""``workbench ingest | search | ask | system-prompt | documents``: the Corpus and Chat tabs, headless."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from workbench.configs import add_arguments, arguments_to_dict
from workbench.index.modes import DEFAULT_MODE
from workbench.kinds import get_kind
from workbench.settings import DECODE_WEIGHTS, Settings


def _json_line(data) -> None:
    print(json.dumps(data, ensure_ascii=False, default=str), flush=True)


def add_parsers(sub) -> None:
    ingest = sub.add_parser("ingest", help="add files or folders (recursive) and index them")
    ingest.add_argument("paths", nargs="*", help="files or folders; none: index every pending document")
    add_arguments(ingest, get_kind("corpus.ingest").load()[0], exclude=("doc_ids",))
    ingest.add_argument("--queue", action="store_true", help="enqueue for a worker and print the run id")
    ingest.add_argument("--json", action="store_true")

    search = sub.add_parser("search", help="top chunks for a query (or one query per line of --file)")
    search.add_argument("query", nargs="?")
    search.add_argument("--file", help="a text file with one query per line")
    search.add_argument("-k", type=int, default=5, help="hits per query (default: 5)")
    search.add_argument("--mode", choices=["dense", "hybrid"], default=DEFAULT_MODE,
                        help="dense (FAISS) or hybrid (dense + BM25, a convex combination of their normalised scores)")
    search.add_argument("--json", action="store_true", help="one JSON line per query")

    ask = sub.add_parser("ask", help="answer a question with retrieved context and sources")
    ask.add_argument("question")
    ask.add_argument("--model", default="base", help="base (default) or a model name under models/")
    ask.add_argument("-k", type=int, default=5, help="chunks of context (default: 5)")
    ask.add_argument("--no-rag", action="store_true", help="answer without retrieval")
    ask.add_argument("--mode", choices=["dense", "hybrid"], default=DEFAULT_MODE)
    ask.add_argument("--temperature", type=float, default=0.0, help="0: greedy (default)")
    ask.add_argument("--max-new-tokens", type=int, default=256)
    ask.add_argument("--repetition-penalty", type=float, default=None,
                     help="default: the model's own, else 1.1 (1 = none)")
    ask.add_argument("--no-loop-stop", action="store_true", help="do not stop an answer whose tail repeats itself")
    ask.add_argument("--rerank", action=argparse.BooleanOptionalAction, default=None,
                     help="rerank the top 10 chunks with the chat model before keeping k (better first source; "
                          "seconds slower on a CPU). Default: on a GPU while it costs under 100 ms a question")
    ask.add_argument("--decode-weights", choices=DECODE_WEIGHTS, default=None,
                     help="on CPU: int8 weight-only, full, or auto (int8 where a quick timing says it pays); "
                          "default: WORKBENCH_DECODE_WEIGHTS, else auto")
    ask.add_argument("--json", action="store_true")

    system = sub.add_parser("system-prompt", help="show or set the workspace's system prompt (chat, pairs, "
                                                  "evaluation and training all use it)")
    system.add_argument("file", nargs="?", help="a UTF-8 text or Markdown file: its text becomes the new version")
    system.add_argument("--clear", action="store_true", help="no system prompt from now on (a new, empty version)")
    system.add_argument("--json", action="store_true")

    docs = sub.add_parser("documents", help="list or delete documents").add_subparsers(dest="documents_cmd", required=True)
    docs.add_parser("list").add_argument("--json", action="store_true")
    delete = docs.add_parser("delete", help="delete documents and their chunks (a corpus.delete job)")
    delete.add_argument("refs", nargs="+", help="document id, stored name or original name")
    delete.add_argument("--queue", action="store_true", help="queue the job for a worker instead of running it here")
    delete.add_argument("--json", action="store_true")


def cmd_ingest(settings: Settings, args: argparse.Namespace) -> int:
    from workbench.cli.common import run_kind
    from workbench.corpus.library import add_paths

    kind = get_kind("corpus.ingest")
    config = arguments_to_dict(args, kind.load()[0])
    kind.preflight(kind.config(config), settings)  # before any document is stored
    added = add_paths(settings.workspace.ensure(), args.paths, settings.max_upload_mb * 1_000_000) if args.paths else []
    refused = [a for a in added if a.error]
    if not args.json:
        for a in added:
            print(a.message(), file=sys.stderr if a.error else sys.stdout)
    report = [{"name": a.name, "id": a.doc and a.doc["id"], "created": a.created, "error": a.error,
               "status": a.doc and a.doc["status"]} for a in added]
    if args.paths:
        config["doc_ids"] = [a.doc["id"] for a in added if a.doc and (a.created or a.doc["status"] != "indexed")]
        if not config["doc_ids"] and not config.get("rebuild"):
            if args.json:
                _json_line({"added": report, "run": None})
            return 1 if refused else 0
    code = run_kind(settings, "corpus.ingest", config, args.queue, args.json, extra={"added": report})
    return code or (1 if refused else 0)


def _print_hits(query: str, hits) -> None:
    print(f"# {query}")
    if not hits:
        print("  (no results: is anything indexed? `workbench documents list`)")
    for h in hits:
        snippet = " ".join(h.text.split())[:160]
        print(f"  {h.rank}. {h.score:.3f}  {h.where()}  [{h.chunk_id}]\n     {snippet}")


def cmd_search(settings: Settings, args: argparse.Namespace) -> int:
    from workbench.index.search import retriever_for

    if bool(args.query) == bool(args.file):
        raise ValueError("give a QUERY or --file QUERIES.txt (one query per line)")
    if args.file:
        lines = Path(args.file).read_text(encoding="utf-8").splitlines()
        queries = [q.strip() for q in lines if q.strip()]
    else:
        queries = [args.query]
    retriever = retriever_for(settings.workspace, settings.embedding_model)
    for query, hits in zip(queries, retriever.search_many(queries, args.k, args.mode)):
        if args.json:
            _json_line({"query": query, "hits": [h.to_dict() for h in hits]})
        else:
            _print_hits(query, hits)
    return 0


def cmd_ask(settings: Settings, args: argparse.Namespace) -> int:
    from workbench.chat.session import ChatRequest, answer_stream

    request = ChatRequest(question=args.question, model=args.model, rag=not args.no_rag, k=args.k,
                          mode=args.mode, temperature=args.temperature, max_new_tokens=args.max_new_tokens,
                          repetition_penalty=args.repetition_penalty, stop_loops=not args.no_loop_stop,
                          rerank=args.rerank)
    if args.decode_weights:
        settings = dataclasses.replace(settings, decode_weights=args.decode_weights)
    turn = None
    for turn in answer_stream(settings, request):
        if not args.json:
            sys.stdout.write(turn.delta)
            sys.stdout.flush()
    if args.json:
        _json_line(turn.to_dict())
        return 0
    print()
    for i, hit in enumerate(turn.sources, start=1):
        print(f"[{i}] {hit.where()} ({hit.score:.3f})")
    return 0


def cmd_documents(settings: Settings, args: argparse.Namespace) -> int:
    from workbench.cli.common import run_kind
    from workbench.corpus.library import list_documents

    if args.documents_cmd == "list":
        docs = list_documents(settings.workspace)
        if args.json:
            print(json.dumps(docs, indent=2, ensure_ascii=False))
            return 0
        if not docs:
            print("no documents: `workbench ingest PATH...`")
        for d in docs:
            extra = f"  {d['error']}" if d.get("error") else ""
            print(f"{d['id']}  {d['status']:8} {d['chunks']:5} chunks  {d['size']:>10} B  {d['name']}{extra}")
        return 0
    config = {"documents": list(args.refs)}
    kind = get_kind("corpus.delete")
    kind.preflight(kind.config(config), settings)  # unknown names: refused before any job
    return run_kind(settings, "corpus.delete", config, args.queue, args.json)


def cmd_system_prompt(settings: Settings, args: argparse.Namespace) -> int:
    import getpass

    from workbench import audit
    from workbench.chat.system_prompt import current_system_prompt, save_system_prompt, system_prompt_from_file
    from workbench.cli.common import CliError

    ws = settings.workspace.ensure()
    if args.file and args.clear:
        raise CliError("give a file or --clear, not both")
    if args.file or args.clear:
        text = "" if args.clear else system_prompt_from_file(Path(args.file))
        saved = save_system_prompt(ws, text, getpass.getuser())
        audit.record(ws, audit.cli_user(), "system_prompt", Path(args.file).name if args.file else "cleared",
                     detail=f"version {saved.version}")
    current = current_system_prompt(ws)
    if args.json:
        _json_line(current._asdict())
    elif not current.text:
        print(f"version {current.version}: no system prompt" + (f" (cleared by {current.author}, {current.timestamp})"
                                                                if current.version else ""))
    else:
        print(f"version {current.version} by {current.author}, {current.timestamp}\n\n{current.text}")
    return 0


COMMANDS = {"ingest": cmd_ingest, "search": cmd_search, "ask": cmd_ask, "system-prompt": cmd_system_prompt,
            "documents": cmd_documents}
