"""The ``qa`` command. The core owns ``qa index build``; the packages above it add their commands.

``api`` adds ``qa ask`` and ``qa serve``, ``eval`` adds ``qa eval``: each names a ``register(sub)``
function under the ``qa.commands`` entry points in ``pyproject.toml``, so this module imports
neither (the command line sits above every package, not inside the core).

Example::

    qa index build --if-stale
    qa ask "How many GP practices?" --json
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points
from pathlib import Path

from qa.config import settings_from_args
from qa.errors import QAError
from qa.progress import progress_reporter

COMMANDS_GROUP = "qa.commands"


def cmd_index_build(args: argparse.Namespace) -> int:
    import time

    from index.documents import load_documents
    from index.embedder import SentenceTransformerEmbedder
    from index.store import index_state, refresh_folder

    settings = settings_from_args(args)
    docs = load_documents(Path(settings.source_dir))
    model_path = Path(settings.embedder_path) if settings.embedder_path else None
    if getattr(args, "ray", False):
        embedder = _ray_embedder(model_path, settings.device)
    else:
        embedder = SentenceTransformerEmbedder(model_path, device=settings.device)
    if args.if_stale:
        state = index_state(Path(settings.index_dir), docs, embedder.model_id, settings.dense_index)
        if state == "fresh":
            print(f"index in {settings.index_dir} is up to date ({len(docs)} documents)", file=sys.stderr)
            return 0
        print(f"index in {settings.index_dir} is {state}; updating", file=sys.stderr)
    embedder.warm_up()
    progress = progress_reporter("embedding", "passage")
    started = time.perf_counter()
    data, changes, folder = refresh_folder(
        Path(settings.index_dir), docs, embedder, progress=progress, dense=settings.dense_index
    )
    seconds = time.perf_counter() - started
    m = data.manifest
    embedded = sum(1 for p in data.passages if p.doc_id in changes.embedded)
    rate = f" ({embedded / seconds:,.0f} passages/s)" if embedded and not changes.kept else ""
    print(f"{changes.summary()}: {embedded:,} passages embedded, {seconds:.1f} s{rate}", file=sys.stderr)
    print(
        f"built {folder}: {m.documents} documents, {m.passages} passages, {m.sentences} sentences; "
        f"dense index {data.dense.describe()}",
        file=sys.stderr,
    )
    return 0


def _ray_embedder(model_path: Path | None, device: str):  # noqa: ANN202 - an index.ray_embed.RayDataEmbedder
    """Start (or join, with ``RAY_ADDRESS``) a Ray cluster and embed across its CPUs with Ray Data."""
    import os

    try:
        import ray
    except ImportError:
        raise QAError("--ray needs Ray: pip install -e '.[cluster]' (ray[serve,data])") from None
    from index.ray_embed import RayDataEmbedder

    address = os.environ.get("RAY_ADDRESS") or None
    ray.init(address=address, include_dashboard=False, logging_level="WARNING")
    cpus = int(ray.cluster_resources().get("CPU", 1))
    print(
        f"embedding with Ray Data on {cpus} CPUs ({'joined ' + address if address else 'local Ray'})", file=sys.stderr
    )
    return RayDataEmbedder(model_path, device=device)


def register_plugins(sub: argparse._SubParsersAction) -> list[str]:
    """Let each installed ``qa.commands`` entry point add its subcommands; returns their names."""
    names = []
    for ep in sorted(entry_points(group=COMMANDS_GROUP), key=lambda ep: ep.name):
        ep.load()(sub)
        names.append(ep.name)
    return names


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qa", description="Cited question answering over news articles.")
    p.add_argument("--index-dir", dest="index_dir", type=Path, help="index directory (default .index)")
    sub = p.add_subparsers(dest="command", required=True)

    index = sub.add_parser("index", help="manage the index").add_subparsers(dest="index_command", required=True)
    build = index.add_parser("build", help="build the index from a folder of *.txt articles")
    build.add_argument("--source", dest="source_dir", type=Path, help="folder of articles (default seeds/)")
    build.add_argument("--index-dir", dest="index_dir", type=Path)
    build.add_argument("--if-stale", action="store_true", help="only build when missing or out of date")
    build.add_argument(
        "--ray", action="store_true", help="embed with Ray Data across a Ray cluster's CPUs (RAY_ADDRESS, or local)"
    )
    build.add_argument(
        "--dense",
        dest="dense_index",
        choices=["auto", "exact", "ivf"],
        help="dense index: auto (exact up to 100,000 passages, IVF-Flat above; QA_DENSE_INDEX), exact or ivf",
    )
    build.set_defaults(func=cmd_index_build)

    if not register_plugins(sub):
        p.epilog = "ask, serve and eval come with the installed project: run `make install` (pip install -e .)"
    return p


def main(argv: list[str] | None = None) -> int:
    from pydantic import ValidationError

    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except QAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:  # the QA_* environment (qa.config.Settings): say which variable and why
        for err in exc.errors():
            name = "QA_" + "_".join(str(p) for p in err["loc"]).upper() if err["loc"] else "configuration"
            print(f"error: {name}: {err['msg']}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
