"""``qa ask`` and ``qa serve``: one answer in the API's own form, or the HTTP API itself.

Registered under the ``qa.commands`` entry points (``pyproject.toml``); ``qa.cli`` finds them there.

Example::

    qa ask "How much will the NHS save?" --json   # the JSON POST /v1/ask returns
    qa serve --port 8000
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
    print(answer.text)
    for c in answer.citations:
        print(f"  [{c.id}] {c.doc_id} {c.start}:{c.end}  {c.title}")
    print(f"  ({answer.mode.value}; {answer.timings_ms['total']:.0f} ms)", file=sys.stderr)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app
    from api.observability import configure_logging

    settings = settings_from_args(args)
    configure_logging()  # one JSON object per line, with request ids
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False)
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
