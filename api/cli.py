"""``qa ask`` and ``qa serve``: one answer in the API's own form, or the HTTP API itself.

Registered under the ``qa.commands`` entry points (``pyproject.toml``); ``qa.cli`` finds them there.

Example::

    qa ask "How much will the NHS save?" --json   # the JSON POST /v1/ask returns
    qa serve --port 8000
    qa serve-cluster --replicas 2 --port 8000   # Ray Serve (the cluster extra): api/cluster.py
"""

from __future__ import annotations

import argparse
import sys

from qa.config import settings_from_args

GENERATORS = ["packaged", "local", "openai", "none"]


def cmd_ask(args: argparse.Namespace) -> int:
    from qa.pipeline import Pipeline

    settings = settings_from_args(args)
    pipeline = Pipeline.from_settings(settings, progress=lambda msg: print(msg, file=sys.stderr))
    answer = pipeline.ask(args.question, args.top_k)
    if args.json:
        from api.schemas import AskResponse

        print(AskResponse.from_answer(answer, pipeline.documents).model_dump_json(indent=2))
        return 0
    print(as_text(answer))
    print(f"  ({answer.mode.value}; {answer.timings_ms['total']:.0f} ms)", file=sys.stderr)
    return 0


def as_text(answer, closest: int = 3, width: int = 100) -> str:  # noqa: ANN001 - a qa.types.Answer
    """An answer for the terminal: its text, then its citations, or, when it abstains, the closest passages
    it promises (the first ``closest``, each cut to ``width`` characters).

    Example (abstained)::

        The articles do not say: … The closest passages are listed for reference.
          closest: 000_27b321e9dc35b123 0:503  A deal designed to save the NHS more than £1bn on its contract…
    """
    lines = [answer.text]
    lines += [f"  [{c.id}] {c.doc_id} {c.start}:{c.end}  {c.title}" for c in answer.citations]
    if answer.abstained:
        for hit in answer.hits[:closest]:
            p = hit.passage
            text = " ".join(p.text.split())
            text = text if len(text) <= width else text[: width - 1].rstrip() + "…"
            lines.append(f"  closest: {p.doc_id} {p.start}:{p.end}  {text}")
    return "\n".join(lines)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app
    from api.observability import configure_logging

    settings = settings_from_args(args)
    configure_logging()  # one JSON object per line, with request ids
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False)
    return 0


def cmd_serve_cluster(args: argparse.Namespace) -> int:
    try:
        import ray  # noqa: F401
        from ray import serve  # noqa: F401
    except ImportError:
        print("error: serve-cluster needs Ray: pip install -e '.[cluster]' (ray[serve,data])", file=sys.stderr)
        return 2
    from api.cluster import serve_cluster
    from api.observability import configure_logging

    configure_logging()
    serve_cluster(settings_from_args(args), args.replicas)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    ask = sub.add_parser("ask", help="answer one question")
    ask.add_argument("question")
    ask.add_argument("--top-k", type=int, default=None)
    ask.add_argument("--json", action="store_true", help="print the same JSON as POST /v1/ask")
    ask.add_argument("--generator", choices=GENERATORS)
    ask.set_defaults(func=cmd_ask)

    serve = sub.add_parser("serve", help="serve the HTTP API")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--generator", choices=GENERATORS)
    serve.set_defaults(func=cmd_serve)

    cluster = sub.add_parser("serve-cluster", help="serve the HTTP API from Ray Serve with N answering replicas")
    cluster.add_argument("--replicas", type=int, default=2, help="answering replicas (each loads the models once)")
    cluster.add_argument("--host")
    cluster.add_argument("--port", type=int)
    cluster.add_argument("--generator", choices=GENERATORS)
    cluster.set_defaults(func=cmd_serve_cluster)
