"""The corpus index at scale: search latency and recall, adding and deleting one document,
searches while a writer commits, and the memory of the searching process, at 100k chunks (or
``--rows``, e.g. 1,000,000 with ``--index ivf``).

The chunk store holds real chunks (PostgreSQL's and Django's manuals, fetched by
``benchmarks/fetch_docs.py`` and ingested with ``workbench ingest``; the 40 questions of
``benchmarks/data/postgres_tutorial_questions.txt`` land in PostgreSQL's tutorial) and filler
documents whose text is a placeholder and whose vectors are random unit vectors (``--filler
random``) or drawn from the real chunks' mean and covariance (``--filler gaussian``), added with
``workbench.index.store_writes`` and compacted into one snapshot of the chosen type. All of that is
built in a child process, so this process holds only what a web process holds: the FAISS
snapshot.

1. Search: ``Retriever.search`` of each question, p50 / p95, dense then hybrid (first query on
   its own), and recall@10 of the index against an exact search over every stored vector.
2. Add one document: ``workbench ingest`` of a five-chunk text file, in this process, against the
   embedding of the same chunks alone; the commit (the chunk store's transaction) on its own.
3. Delete one document: ``workbench documents delete`` (the ``corpus.delete`` job), in this process.
4. Searches while another process makes the same two writes (as a worker does): a thread
   searching in a loop; its p50, p95 and worst latency while a writer runs, against the same
   loop with no writer.
5. Memory: this process's current and peak resident set.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/index_scale.py [--rows 100000]
        [--index flat|hnsw|ivf] [--real postgres,django] [--filler random|gaussian] [--json PATH]
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import summary_ms  # noqa: E402
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

DATA = Path(__file__).resolve().parent / "data"


def rss_mb() -> dict[str, float]:
    current = 0.0
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) / 1024
    return {"current_mb": round(current), "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


class SearchLoop:
    """Searches in a thread, recording (start, seconds) of each."""

    def __init__(self, retriever, queries: list[str]):
        self.retriever, self.queries = retriever, queries
        self.times: list[tuple[float, float]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self.stop.is_set():
            started = time.perf_counter()
            self.retriever.search(self.queries[i % len(self.queries)], 5)
            self.times.append((started, time.perf_counter() - started))
            i += 1

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()

    def during(self, start: float, end: float) -> list[float]:
        return [s for t, s in self.times if t < end and t + s > start]


def build(home: Path, rows: int, index_type: str, real: list[str], filler: str) -> int:
    """(child process) The real manuals ingested, filler up to ``rows``, one snapshot."""
    os.environ.update(WORKBENCH_HOME=str(home), WORKBENCH_AUTO_PULL="0", HF_HUB_OFFLINE="1")
    from search_speed import build_large
    from fetch_docs import fetch
    from common import quiet
    from storage import Workspace
    from workbench.cli import main as cli

    quiet(cli, "ingest", *(str(fetch(name)) for name in real))
    print(json.dumps({"rows": build_large(Workspace(home), Workspace(home), rows, 0, index_type, filler)}))
    return 0


def exact_top(workspace, vectors, k: int) -> list[set[int]]:
    """The true top ``k`` chunk ids of each query, over every stored vector, read in slices."""
    import numpy as np

    from storage.chunkdb import ChunkDB

    best = [[] for _ in range(len(vectors))]
    with ChunkDB(workspace.corpus_db) as db:
        rows = db.vectors()
        while part := list(itertools.islice(rows, 50_000)):
            ids = np.array([r[0] for r in part])
            scores = vectors @ np.frombuffer(b"".join(r[1] for r in part), dtype=np.float32).reshape(len(part), -1).T
            for qi in range(len(vectors)):
                top = np.argsort(-scores[qi])[:k]
                best[qi] = sorted(best[qi] + list(zip(scores[qi][top].tolist(), ids[top].tolist())), reverse=True)[:k]
    return [{i for _, i in hits} for hits in best]


def commit_times(workspace, vectors) -> dict[str, float]:
    """Milliseconds of the two commits alone (lock, transaction), as the jobs make them."""
    from storage.documents import DocumentStore
    from workbench.index import store, store_writes

    doc = {"id": "bench-extra", "name": "bench-extra.txt", "file": "bench-extra.txt", "sha256": "0" * 64}
    rows = [{"chunk_id": f"bench-extra:{i}", "doc_id": doc["id"], "source": doc["name"], "text": "extra"}
            for i in range(len(vectors))]
    times = {}
    for name, write in (("add", lambda db: store_writes.add_document(db, doc, rows, vectors)),
                        ("delete", lambda db: store_writes.remove_documents(db, {doc["id"]}))):
        started = time.perf_counter()
        with DocumentStore(workspace).lock(), store.open_db(workspace) as db, db.writing():
            write(db)
        times[name] = round(1000 * (time.perf_counter() - started), 1)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--index", choices=("flat", "hnsw", "ivf"), default="flat")
    parser.add_argument("--real", default="postgres,django",
                        help="the real documentation sets ingested (fetch_docs.py names; the questions land in "
                             "PostgreSQL's tutorial, part of 'postgres'); default: postgres,django")
    parser.add_argument("--filler", choices=("random", "gaussian"), default="random",
                        help="random unit vectors, or drawn from the real chunks' mean and covariance")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--build", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--reuse", type=Path, help="measure a workspace an earlier run built (skips the build)")
    args = parser.parse_args()
    if args.build:
        return build(args.build, args.rows, args.index, args.real.split(","), args.filler)
    home = args.reuse or Path(tempfile.mkdtemp(prefix="wb-index-scale-"))
    os.environ.update(WORKBENCH_HOME=str(home), WORKBENCH_AUTO_PULL="0", HF_HUB_OFFLINE="1")
    report: dict = {"rows": args.rows, "index": args.index, "real": args.real, "filler": args.filler}
    started = time.perf_counter()
    if args.reuse is None:
        child = subprocess.run([sys.executable, __file__, "--build", str(home), "--rows", str(args.rows),
                                "--index", args.index, "--real", args.real, "--filler", args.filler],
                               check=True, capture_output=True, text=True)
        report["rows"] = json.loads(child.stdout.strip().splitlines()[-1])["rows"]
    report["build_s"] = round(time.perf_counter() - started, 1)

    from common import emit, quiet
    from storage import Workspace
    from workbench.cli import main as cli
    from workbench.index.embedder import embed, load_embedder
    from workbench.index.search import Retriever
    from workbench.settings import Settings

    settings = Settings.from_env()
    workspace: Workspace = settings.workspace
    queries = [q for q in (DATA / "postgres_tutorial_questions.txt").read_text().splitlines() if q.strip()]
    report["files_mb"] = {p.name: round(p.stat().st_size / 1e6) for p in
                          (workspace.corpus_db, workspace.index_file, workspace.metadata_file)}
    print(f"{report['rows']} rows, {args.index} snapshot, built in {report['build_s']} s (child process); "
          f"files {report['files_mb']} MB", flush=True)

    retriever = Retriever(workspace, settings.embedding_model)
    load_s = time.perf_counter()
    retriever.search(queries[0], 5)  # loads the index and the model
    report["first_load_s"] = round(time.perf_counter() - load_s, 1)
    for mode in ("dense", "hybrid"):
        first = time.perf_counter()
        retriever.search(queries[1], 5, mode)
        first = time.perf_counter() - first
        seconds = []
        for q in queries:
            started = time.perf_counter()
            retriever.search(q, 5, mode)
            seconds.append(time.perf_counter() - started)
        report[f"search_{mode}"] = {**summary_ms(seconds), "first_ms": round(1000 * first)}
        print(f"search {mode:6s} p50 {report[f'search_{mode}']['p50_ms']} ms  p95 {report[f'search_{mode}']['p95_ms']} ms"
              f"  (first query {report[f'search_{mode}']['first_ms']} ms)", flush=True)

    model = load_embedder(settings.embedding_model)
    state = retriever.state()
    query_vectors = embed(model, queries, role="query")
    found = state.search(query_vectors, 10)
    truth = exact_top(workspace, query_vectors, 10)
    report["recall_at_10"] = round(sum(len({i for i, _ in f} & t) / len(t) for f, t in zip(found, truth)) / len(truth), 3)
    print(f"recall@10 of the {args.index} snapshot against an exact search: {report['recall_at_10']}", flush=True)
    from storage.chunkdb import ChunkDB

    with ChunkDB(workspace.corpus_db) as db:
        filler_ids = {row[0] for row in db.conn.execute("SELECT id FROM chunks WHERE doc_id LIKE 'filler%'")}
    # filler in the exact top 10 is noise no index finds by its neighbours: say how much there is
    report["filler_share_of_exact_top_10"] = round(sum(len(t & filler_ids) for t in truth) / (10 * len(truth)), 3)
    print(f"share of the exact top 10 that is filler: {report['filler_share_of_exact_top_10']}", flush=True)
    del filler_ids
    del state

    paragraphs = [f"Paragraph {i} of the release notes: the planner now estimates join sizes from extended "
                  f"statistics, and vacuum skips pages that are all visible. " * 6 for i in range(5)]
    extra = home / "release-notes.txt"
    extra.write_text("\n\n".join(paragraphs))
    started = time.perf_counter()
    quiet(cli, "ingest", str(extra))
    report["add_one_document_s"] = round(time.perf_counter() - started, 2)
    started = time.perf_counter()
    quiet(cli, "documents", "delete", "release-notes.txt")
    report["delete_one_document_s"] = round(time.perf_counter() - started, 2)
    started = time.perf_counter()
    vectors = embed(model, paragraphs)
    report["its_embedding_s"] = round(time.perf_counter() - started, 2)
    report["commit_ms"] = commit_times(workspace, vectors)

    # The same two writes from another process, as a worker makes them, while this one searches.
    command = [sys.executable, "-c", "import sys; from workbench.cli import main; sys.exit(main(sys.argv[1:]))"]
    retriever.search(queries[0], 5)
    with SearchLoop(retriever, queries) as loop:
        time.sleep(3)
        idle_end = time.perf_counter()
        windows = {}
        for name, argv in (("adding", ["ingest", str(extra)]), ("deleting", ["documents", "delete", "release-notes.txt"])):
            started = time.perf_counter()
            subprocess.run(command + argv, check=True, capture_output=True)
            windows[name] = (started, time.perf_counter())
        time.sleep(2)
    report["search_while_idle"] = summary_ms([s for t, s in loop.times if t + s < idle_end])
    for name, window in windows.items():
        report[f"search_while_{name}"] = summary_ms(loop.during(*window))
    report["memory"] = rss_mb()
    print(f"add one document {report['add_one_document_s']} s (its embedding alone {report['its_embedding_s']} s); "
          f"delete one {report['delete_one_document_s']} s; the chunk store's commits alone: {report['commit_ms']}",
          flush=True)
    for key in ("search_while_idle", "search_while_adding", "search_while_deleting"):
        print(f"{key:22s} p50 {report[key]['p50_ms']} ms  p95 {report[key]['p95_ms']} ms  "
              f"worst {report[key]['max_ms']} ms  ({report[key]['n']} searches)", flush=True)
    print(f"memory of this process: {report['memory']}", flush=True)
    emit(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
