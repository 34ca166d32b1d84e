from __future__ import annotations

import json
import os

import pytest

from index.embedder import HashingEmbedder
from index.store import build_index, current_version, index_state, load_index, save_index
from qa.errors import IndexCorrupt, IndexMismatch, IndexMissing


def test_roundtrip_keeps_offsets_and_vectors(tmp_path, tiny_docs, embedder):
    data = build_index(tiny_docs, embedder)
    save_index(data, tmp_path)
    loaded = load_index(tmp_path, embedder)
    assert loaded.manifest.passages == len(data.passages) == len(loaded.passages)
    assert loaded.manifest.embedding_model == embedder.model_id
    for p in loaded.passages:
        assert loaded.documents[p.doc_id].text[p.start : p.end] == p.text
    assert (loaded.passage_vectors == data.passage_vectors).all()


def test_missing_index_is_reported(tmp_path, embedder):
    with pytest.raises(IndexMissing, match="qa index build"):
        load_index(tmp_path, embedder)


def test_other_embedding_model_is_refused(tmp_path, tiny_docs, embedder):
    save_index(build_index(tiny_docs, embedder), tmp_path)
    with pytest.raises(IndexMismatch, match="hashing-bow-64"):
        load_index(tmp_path, HashingEmbedder(64))


def test_corrupted_file_fails_its_checksum(tmp_path, tiny_docs, embedder):
    save_index(build_index(tiny_docs, embedder), tmp_path)
    target = current_version(tmp_path) / "passages.faiss"
    target.write_bytes(target.read_bytes()[:-10])  # truncate
    with pytest.raises(IndexCorrupt, match="checksum"):
        load_index(tmp_path, embedder)


def test_manifest_count_mismatch_is_corrupt(tmp_path, tiny_docs, embedder):
    save_index(build_index(tiny_docs, embedder), tmp_path)
    manifest_path = current_version(tmp_path) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["passages"] += 1
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(IndexCorrupt, match="disagree"):
        load_index(tmp_path, embedder)


def test_crash_during_write_keeps_previous_index_live(tmp_path, tiny_docs, embedder, monkeypatch):
    save_index(build_index(tiny_docs, embedder), tmp_path)
    before = current_version(tmp_path)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "rename", boom)
    with pytest.raises(OSError):
        save_index(build_index(tiny_docs[:1], embedder), tmp_path)
    monkeypatch.undo()
    assert current_version(tmp_path) == before
    assert load_index(tmp_path, embedder).manifest.documents == 2
    assert not [p for p in (tmp_path / "versions").iterdir() if p.name.startswith(".tmp-")]


def test_index_state_tracks_corpus_and_model(tmp_path, tiny_docs, embedder):
    assert index_state(tmp_path, tiny_docs, embedder.model_id) == "missing"
    save_index(build_index(tiny_docs, embedder), tmp_path)
    assert index_state(tmp_path, tiny_docs, embedder.model_id) == "fresh"
    assert index_state(tmp_path, tiny_docs[:1], embedder.model_id) == "stale"
    assert index_state(tmp_path, tiny_docs, "other-model") == "stale"


def test_old_versions_are_pruned(tmp_path, tiny_docs, embedder):
    for _ in range(4):
        save_index(build_index(tiny_docs, embedder), tmp_path)
    assert len(list((tmp_path / "versions").iterdir())) <= 2


def test_an_index_of_the_previous_format_is_stale_and_refused(tmp_path, tiny_docs, embedder):
    """Format 1 also embedded every sentence (sentences.faiss); format 2 embeds passages only."""
    save_index(build_index(tiny_docs, embedder), tmp_path)
    folder = current_version(tmp_path)
    assert not (folder / "sentences.faiss").exists()
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "format_version": 1}))
    assert index_state(tmp_path, tiny_docs, embedder.model_id) == "stale"
    with pytest.raises(IndexMismatch, match="format version is 1.*rebuild"):
        load_index(tmp_path, embedder)


def test_only_passages_are_embedded(tiny_docs):
    class Counting(HashingEmbedder):
        texts = 0

        def embed(self, texts):
            Counting.texts += len(texts)
            return super().embed(texts)

    data = build_index(tiny_docs, Counting(64))
    assert Counting.texts == len(data.passages) < len(data.passages) + len(data.sentences)
