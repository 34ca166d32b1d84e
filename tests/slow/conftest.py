"""Real packaged models (MiniLM embedder, SmolLM2-135M generator) on the seed articles."""

from __future__ import annotations

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
