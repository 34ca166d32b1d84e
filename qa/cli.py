"""The ``qa`` command: build the index, ask a question, serve the API, run evals."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from qa.config import Settings
from qa.errors import QAError
from qa.progress import progress_reporter


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {}
    for name in ("source_dir", "index_dir", "generator", "host", "port"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return Settings(**overrides)


def cmd_index_build(args: argparse.Namespace) -> int:
    from index.documents import load_documents
    from index.embedder import SentenceTransformerEmbedder
    from index.store import build_index, index_state, save_index

    settings = _settings(args)
    docs = load_documents(Path(settings.source_dir))
    embedder = SentenceTransformerEmbedder(
        Path(settings.embedder_path) if settings.embedder_path else None, device=settings.device
    )
    if args.if_stale:
        state = index_state(Path(settings.index_dir), docs, embedder.model_id)
        if state == "fresh":
            print(f"index in {settings.index_dir} is up to date ({len(docs)} documents)", file=sys.stderr)
            return 0
        print(f"index in {settings.index_dir} is {state}; building", file=sys.stderr)
    embedder.warm_up()
    progress = progress_reporter("embedding", "text")
    data = build_index(docs, embedder, progress=progress)
    folder = save_index(data, Path(settings.index_dir))
    m = data.manifest
    print(f"built {folder}: {m.documents} documents, {m.passages} passages, {m.sentences} sentences", file=sys.stderr)
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    from qa.pipeline import Pipeline

    settings = _settings(args)
    pipeline = Pipeline.from_settings(settings, progress=lambda msg: print(msg, file=sys.stderr))
    answer = pipeline.ask(args.question, args.top_k)
    if args.json:
        from api.schemas import AskResponse

        print(AskResponse.from_answer(answer, pipeline.documents).model_dump_json(indent=2))
        return 0
    print(answer.text)
    for c in answer.citations:
        print(f"  [{c.id}] {c.doc_id} {c.start}:{c.end}  {c.title}")
    print(f"  ({answer.mode.value}; {answer.timings_ms['total']:.0f} ms)", file=sys.stderr)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app
    from api.observability import configure_logging

    settings = _settings(args)
    configure_logging()  # one JSON object per line, with request ids
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qa", description="Cited question answering over news articles.")
    parser.add_argument("--index-dir", dest="index_dir", type=Path, help="index directory (default .index)")
    sub = parser.add_subparsers(dest="command", required=True)

    index = sub.add_parser("index", help="manage the index").add_subparsers(dest="index_command", required=True)
    build = index.add_parser("build", help="build the index from a folder of *.txt articles")
    build.add_argument("--source", dest="source_dir", type=Path, help="folder of articles (default seeds/)")
    build.add_argument("--index-dir", dest="index_dir", type=Path)
    build.add_argument("--if-stale", action="store_true", help="only build when missing or out of date")
    build.set_defaults(func=cmd_index_build)

    ask = sub.add_parser("ask", help="answer one question")
    ask.add_argument("question")
    ask.add_argument("--top-k", type=int, default=None)
    ask.add_argument("--json", action="store_true", help="print the same JSON as POST /v1/ask")
    ask.add_argument("--generator", choices=["packaged", "local", "openai", "none"])
    ask.set_defaults(func=cmd_ask)

    serve = sub.add_parser("serve", help="serve the HTTP API")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--generator", choices=["packaged", "local", "openai", "none"])
    serve.set_defaults(func=cmd_serve)

    from eval.cli import add_parser as add_eval_parser

    add_eval_parser(sub)

    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except QAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
