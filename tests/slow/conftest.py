"""Real packaged models (MiniLM embedder, SmolLM2-135M generator) on the seed articles."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from index.documents import load_documents
from index.embedder import SentenceTransformerEmbedder
from index.store import build_index, save_index
from qa.config import Settings
from qa.pipeline import Pipeline
from tests.conftest import SEEDS


def pytest_collection_modifyitems(items):
    for item in items:
        if "/slow/" in str(item.fspath):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def real_index_dir(tmp_path_factory):
    index_dir = tmp_path_factory.mktemp("real-index")
    embedder = SentenceTransformerEmbedder()
    save_index(build_index(load_documents(SEEDS), embedder), index_dir)
    return index_dir


@pytest.fixture(scope="session")
def real_settings(real_index_dir) -> Settings:
    return Settings(index_dir=real_index_dir, source_dir=SEEDS)


@pytest.fixture(scope="session")
def real_pipeline(real_settings) -> Pipeline:
    return Pipeline.from_settings(real_settings)


ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def spawned_server(env: dict[str, str], log_path: Path):
    """`qa serve` in a subprocess on a free loopback port, logging to ``log_path``; yields (process, base URL)."""
    port = free_port()
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "qa.cli", "serve", "--port", str(port)],
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield proc, f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(30)
