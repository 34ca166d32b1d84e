"""Shared fixtures. Fast tests use the hashing embedder and a scripted generator (no model loads)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from index.documents import Document, load_documents, parse_document
from index.embedder import HashingEmbedder
from index.store import build_index, load_index, save_index
from qa.generate import ScriptedGenerator
from qa.pipeline import Pipeline
from qa.reader.reader import FakeReader

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "seeds"

TINY = {
    "alpha": (
        "The Acme Council agreed a £2.5bn budget on 3 March 2020. Mayor Jane Doe said the deal would save "
        "£40m a year.\n\nThe council runs 12 libraries and 3 swimming pools across Northtown."
    ),
    "beta": (
        "Northtown’s library service was founded in 1901 by Mr. Arthur Penn. Today it lends 250,000 books a year.\n\n"
        "Critics said the £40m savings figure was optimistic."
    ),
}


# What the fake reader "finds" in TINY: {a word of the question: the answer span}. Anything else reads
# as not answered, so questions about penguins or Australia abstain.
TINY_SCRIPT = {
    "libraries": "12",
    "swimming pools": "3 swimming pools",
    "budget": "£2.5bn",
    "savings": "£40m",
    "founded": "1901",
    "save": "£40m",
    "penguins": ["41", "43"],  # in no TINY passage: found only once a test adds the zoo article
    "parks": "5 parks",
}


def tiny_reader() -> FakeReader:
    return FakeReader(TINY_SCRIPT)


@pytest.fixture(scope="session")
def tiny_docs() -> list[Document]:
    return [parse_document(doc_id, text) for doc_id, text in TINY.items()]


@pytest.fixture(scope="session")
def seed_docs() -> list[Document]:
    return load_documents(SEEDS)


@pytest.fixture(scope="session")
def embedder() -> HashingEmbedder:
    return HashingEmbedder(256)


@pytest.fixture(scope="session")
def tiny_index(tmp_path_factory, tiny_docs, embedder):
    index_dir = tmp_path_factory.mktemp("tiny-index")
    save_index(build_index(tiny_docs, embedder), index_dir)
    return load_index(index_dir, embedder)


@pytest.fixture(scope="session")
def seed_index(tmp_path_factory, seed_docs, embedder):
    index_dir = tmp_path_factory.mktemp("seed-index")
    save_index(build_index(seed_docs, embedder), index_dir)
    return load_index(index_dir, embedder)


@pytest.fixture
def scripted() -> ScriptedGenerator:
    return ScriptedGenerator("")


@pytest.fixture
def tiny_pipeline(tiny_index, embedder, scripted) -> Pipeline:
    return Pipeline(tiny_index, embedder, scripted, reader=tiny_reader())


@contextlib.contextmanager
def live_server(app):
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yields the base URL."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
