from __future__ import annotations

import json
import os
from dataclasses import replace

import numpy as np
import pytest

from index.documents import parse_document
from index.embedder import HashingEmbedder
from index.store import (
    ChunkingParams,
    build_index,
    current_version,
    follow,
    index_state,
    load_index,
    refresh,
    refresh_folder,
    save_index,
    save_update,
    update_index,
)
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


class CountingEmbedder(HashingEmbedder):
    """Counts the passages it embeds."""

    def __init__(self) -> None:
        super().__init__(256)
        self.embedded: list[str] = []

    def embed(self, texts):  # noqa: ANN001, ANN201
        self.embedded += list(texts)
        return super().embed(texts)


@pytest.fixture
def five(tiny_docs):
    extra = [
        parse_document(f"extra-{n}", f"Article {n} says the town has {n + 2} parks. Its mayor opened one in 200{n}.")
        for n in range(3)
    ]
    return [*tiny_docs, *extra]


def _same_index(a, b) -> None:
    assert list(a.documents) == list(b.documents)
    assert [(p.doc_id, p.start, p.end, p.sentence_ids) for p in a.passages] == [
        (p.doc_id, p.start, p.end, p.sentence_ids) for p in b.passages
    ]
    assert [(s.doc_id, s.start, s.end) for s in a.sentences] == [(s.doc_id, s.start, s.end) for s in b.sentences]
    assert np.allclose(a.passage_vectors, b.passage_vectors, atol=1e-6)
    assert a.manifest.corpus_checksum == b.manifest.corpus_checksum


def test_refresh_embeds_only_what_changed_and_equals_a_full_build(five):
    counting = CountingEmbedder()
    first, changes = refresh(None, five[:3], counting)
    assert changes.summary() == "3 added, 0 changed, 0 removed, 0 kept"
    counting.embedded.clear()
    edited = parse_document(five[1].doc_id, five[1].text + " A sentence added later.")
    wanted = [five[0], edited, *five[3:]]  # 0 kept, 1 changed, 2 removed, the rest added
    second, changes = refresh(first, wanted, counting)
    assert (changes.kept, changes.changed, changes.removed) == (
        (five[0].doc_id,),
        (edited.doc_id,),
        (five[2].doc_id,),
    )
    assert changes.added == tuple(d.doc_id for d in five[3:])
    assert sorted(counting.embedded) == sorted(p.text for p in second.passages if p.doc_id in changes.embedded)
    assert not any(p.doc_id == five[0].doc_id and p.text in counting.embedded for p in second.passages)
    _same_index(second, build_index(wanted, HashingEmbedder(256)))
    assert [p.passage_id for p in second.passages] == list(range(len(second.passages)))


def test_refresh_rebuilds_an_index_of_another_model_or_chunking(five):
    first = build_index(five, HashingEmbedder(128))
    again, changes = refresh(first, five, HashingEmbedder(256))
    assert len(changes.added) == len(five) and not changes.kept
    assert again.passage_vectors.shape[1] == 256
    rechunked, changes = refresh(again, five, HashingEmbedder(256), chunking=ChunkingParams(sentences_per_passage=2))
    assert not changes.kept and len(rechunked.passages) != len(again.passages)


def test_refresh_folder_updates_the_live_index_and_survives_a_corrupt_one(tmp_path, five):
    counting = CountingEmbedder()
    _, changes, _ = refresh_folder(tmp_path, five[:2], counting)
    assert changes.summary() == "2 added, 0 changed, 0 removed, 0 kept"
    counting.embedded.clear()
    data, changes, folder = refresh_folder(tmp_path, five, counting)
    assert len(changes.kept) == 2 and folder == current_version(tmp_path)
    assert {p.doc_id for p in data.passages if p.text in counting.embedded} <= set(changes.added)
    assert (folder / "delta.jsonl").is_file()  # three appended to the two: a delta version
    (folder / "delta-vectors.npy").write_bytes(b"broken")
    _, changes, _ = refresh_folder(tmp_path, five, counting)
    assert len(changes.added) == len(five)  # rebuilt from nothing, not from a broken index
    _same_index(load_index(tmp_path, counting), build_index(five, HashingEmbedder(256)))


def test_an_embedder_with_embed_all_gets_every_new_passage_in_one_call(tiny_docs, embedder):
    """How `index.ray_embed` is driven: one job for the whole build, the same index as batch by batch."""

    class WholeJob(HashingEmbedder):
        def __init__(self) -> None:
            super().__init__(embedder.dimension)
            self.jobs: list[int] = []

        def embed_all(self, texts, progress=None):  # noqa: ANN001, ANN201
            self.jobs.append(len(texts))
            if progress:
                progress(len(texts), len(texts))
            return self.embed(texts)

    whole = WholeJob()
    data = build_index(tiny_docs, whole)
    reference = build_index(tiny_docs, embedder)
    assert whole.jobs == [len(reference.passages)]
    assert np.array_equal(data.passage_vectors, reference.passage_vectors)
    added = parse_document("late", "Late news\n\nThe town opened 3 parks in 2005. Everyone came.")
    refresh(data, [*tiny_docs, added], whole)
    assert whole.jobs[-1] == sum(1 for p in build_index([added], embedder).passages)  # only the new article


def _edits(five):
    """A run of document writes as `POST`/`DELETE /v1/documents` make them: (upsert, remove) pairs."""
    first, second, *_ = five
    return [
        (parse_document("new-a", "The ferry runs every 10 minutes from May."), None),
        (parse_document(first.doc_id, first.text + " The zoo costs £4m."), None),  # replaced: goes last
        (None, second.doc_id),
        (parse_document("new-b", "The bridge reopens in June 2021 after repairs."), None),
        (parse_document("new-a", "The ferry runs every 12 minutes from May."), None),
        (None, "new-b"),
    ]


def test_document_writes_are_deltas_that_load_as_a_full_build(tmp_path, five):
    """Each write after the first version stores only what changed (no unchanged passage embedded or
    written again), and loading the live delta version gives what a full build of its documents gives."""
    counting = CountingEmbedder()
    data = build_index(five, counting)
    save_index(data, tmp_path)
    base = data.version
    for upsert, remove in _edits(five):
        counting.embedded.clear()
        new, changes = update_index(data, counting, upsert=upsert, remove=remove)
        folder = save_update(new, tmp_path, data)
        assert sorted(f.name for f in folder.iterdir()) == ["delta-vectors.npy", "delta.jsonl", "manifest.json"]
        assert new.manifest.base == base and new.version == folder.name
        vectors = np.load(folder / "delta-vectors.npy")
        assert len(vectors) == len(counting.embedded)
        assert {p.doc_id for p in new.passages if p.text in counting.embedded} <= {upsert and upsert.doc_id}
        loaded = load_index(tmp_path, HashingEmbedder(256))
        _same_index(loaded, build_index(list(new.documents.values()), HashingEmbedder(256)))
        assert loaded.version == new.version and loaded.manifest == new.manifest
        data = new
    assert len(data.manifest.chain) == len(_edits(five)) - 1
    assert index_state(tmp_path, list(data.documents.values()), counting.model_id) == "fresh"


def test_follow_applies_only_the_new_deltas(tmp_path, five):
    """A replica at an older version reaches the live one by applying the deltas after its own; from
    another base (after compaction) it loads the live version whole."""
    embedder = HashingEmbedder(256)
    data = build_index(five, embedder)
    save_index(data, tmp_path)
    replica = load_index(tmp_path, embedder)
    writer = replica
    for i, (upsert, remove) in enumerate(_edits(five)):
        new, _ = update_index(writer, embedder, upsert=upsert, remove=remove)
        save_update(new, tmp_path, writer)
        writer = new
        if i % 2:  # the replica misses some versions: it applies two deltas at once
            continue
        followed, rows_from = follow(replica, tmp_path, embedder)
        assert rows_from is not None and followed.version == writer.version
        assert list(rows_from) == [
            next((i for i, q in enumerate(replica.passages) if (q.doc_id, q.text) == (p.doc_id, p.text)), -1)
            if p.doc_id in replica.documents and replica.documents[p.doc_id] == followed.documents[p.doc_id]
            else -1
            for p in followed.passages
        ]
        _same_index(followed, load_index(tmp_path, embedder))
        replica = followed
    replica = follow(replica, tmp_path, embedder)[0]  # the last write, missed above
    assert replica.version == writer.version and follow(replica, tmp_path, embedder)[0] is replica
    compacted = save_index(writer, tmp_path)  # a full version: another base
    followed, rows_from = follow(replica, tmp_path, embedder)
    assert rows_from is None and followed.version == compacted.name


def test_a_long_chain_is_compacted_and_pruning_keeps_what_versions_are_made_of(tmp_path, five, monkeypatch):
    import index.store as store

    monkeypatch.setattr(store, "MAX_CHAIN", 3)
    embedder = HashingEmbedder(256)
    data = build_index(five, embedder)
    save_index(data, tmp_path)
    kinds = []
    for n in range(6):
        new, _ = update_index(data, embedder, upsert=parse_document(f"more-{n}", f"The fair has {n + 3} rides."))
        folder = save_update(new, tmp_path, data)
        kinds.append("delta" if (folder / "delta.jsonl").is_file() else "full")
        data = new
        load_index(tmp_path, embedder)  # the live version and everything it is made of are still there
    assert kinds == ["delta", "delta", "delta", "full", "delta", "delta"]
    live = json.loads((current_version(tmp_path) / "manifest.json").read_text())
    kept = {p.name for p in (tmp_path / "versions").iterdir()}
    assert kept == {live["base"], *live["chain"], current_version(tmp_path).name}  # older chain pruned


def test_a_broken_delta_is_refused(tmp_path, five):
    embedder = HashingEmbedder(256)
    data = build_index(five, embedder)
    save_index(data, tmp_path)
    new, _ = update_index(data, embedder, upsert=parse_document("new-a", "The ferry runs every 10 minutes."))
    folder = save_update(new, tmp_path, data)
    (folder / "delta.jsonl").write_text('{"removed": ["no-such-doc"]}\n')
    with pytest.raises(IndexCorrupt):
        load_index(tmp_path, embedder)
    assert index_state(tmp_path, list(new.documents.values()), embedder.model_id) == "corrupt"
    folder.with_name(new.manifest.base).joinpath("manifest.json").unlink()
    assert index_state(tmp_path, list(new.documents.values()), embedder.model_id) == "corrupt"


def test_documents_with_one_id_twice_are_refused(five, embedder):
    with pytest.raises(ValueError, match="distinct"):
        refresh(build_index(five[:2], embedder), [five[0], five[1], five[0]], embedder)


def test_an_appended_version_shares_its_parents_vectors_and_a_second_branch_copies(five):
    """Appending documents writes only the new rows, after the parent's, in the parent's buffer; a
    second refresh of the same parent (another branch) or one that drops rows copies instead, so no
    version ever sees its vectors change."""
    embedder = HashingEmbedder(256)
    parent = build_index(five[:3], embedder)
    before = parent.passage_vectors.copy()
    child, _ = refresh(parent, five[:4], embedder)
    assert np.shares_memory(child.passage_vectors, parent.passage_vectors)
    sibling, _ = refresh(parent, [*five[:3], five[4]], embedder)  # the buffer is the child's now
    assert not np.shares_memory(sibling.passage_vectors, parent.passage_vectors)
    grandchild, _ = refresh(child, five, embedder)
    assert np.shares_memory(grandchild.passage_vectors, child.passage_vectors)
    dropped, _ = refresh(grandchild, five[1:], embedder)
    assert not np.shares_memory(dropped.passage_vectors, grandchild.passage_vectors)
    assert np.array_equal(parent.passage_vectors, before)
    for got, docs in ((child, five[:4]), (sibling, [*five[:3], five[4]]), (grandchild, five), (dropped, five[1:])):
        _same_index(got, build_index(docs, embedder))


def test_a_replica_follows_a_compaction_without_loading_it(tmp_path, five, monkeypatch):
    """The compacting write publishes its delta, then the full version naming it (``same_as``): a
    replica at the delta, or before it, reaches the full version's name by applying deltas only, with
    the contents a load gives; a later delta on the full version applies to it as usual."""
    import index.store as store

    monkeypatch.setattr(store, "MAX_CHAIN", 2)
    embedder = HashingEmbedder(256)
    writer = build_index(five[:2], embedder)
    save_index(writer, tmp_path)
    behind = load_index(tmp_path, embedder)
    at_delta = None
    for n, doc in enumerate(five[2:5]):
        new, _ = update_index(writer, embedder, upsert=doc)
        folder = save_update(new, tmp_path, writer)
        writer = new
        if n == 1:
            at_delta = follow(behind, tmp_path, embedder)[0]  # the chain's second delta
    manifest = store.read_manifest(tmp_path)
    assert not (folder / "delta.jsonl").is_file() and manifest.same_as  # the third write compacted
    for replica in (at_delta, behind):
        followed, rows_from = follow(replica, tmp_path, embedder)
        assert rows_from is not None and followed.version == folder.name and followed.manifest == manifest
        if replica is at_delta:  # (behind's buffer was claimed by at_delta: that follow copied)
            assert np.shares_memory(followed.passage_vectors, replica.passage_vectors)
        _same_index(followed, load_index(tmp_path, embedder))
    new, _ = update_index(writer, embedder, upsert=parse_document("late", "The late ferry runs at 11pm."))
    save_update(new, tmp_path, writer)
    again, rows_from = follow(followed, tmp_path, embedder)
    assert rows_from is not None and again.version == new.version
    _same_index(again, load_index(tmp_path, embedder))


def _one_delta_before_compaction(tmp_path, five, embedder, monkeypatch):  # noqa: ANN001, ANN202
    """A store of ``five[:2]`` and one delta adding ``five[2]``, with chains of one delta: the next write
    compacts. Returns the writer's data (the live version)."""
    import index.store as store

    monkeypatch.setattr(store, "MAX_CHAIN", 1)
    writer = build_index(five[:2], embedder)
    save_index(writer, tmp_path)
    new, _ = update_index(writer, embedder, upsert=five[2])
    save_update(new, tmp_path, writer)
    return new


def test_a_failed_compaction_leaves_the_delta_live_and_held(tmp_path, five, monkeypatch):
    """Once the compacting write's delta is live, failing to write the full version loses nothing:
    the writer holds what is live, and the next write builds on it."""
    import index.store as store

    embedder = HashingEmbedder(256)
    writer = _one_delta_before_compaction(tmp_path, five, embedder, monkeypatch)

    def disk_full(path, data):  # noqa: ANN001, ANN202
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "_write_faiss", disk_full)
    new, _ = update_index(writer, embedder, upsert=five[3])
    folder = save_update(new, tmp_path, writer)  # compaction due: its delta goes live, the full write fails
    assert (folder / "delta.jsonl").is_file() and new.version == folder.name == current_version(tmp_path).name
    monkeypatch.undo()
    later, _ = update_index(new, embedder, upsert=five[4])
    save_update(later, tmp_path, new)
    assert list(load_index(tmp_path, embedder).documents) == [d.doc_id for d in five]


def test_a_replica_at_the_compacted_delta_follows_a_delta_written_on_the_full_version(tmp_path, five, monkeypatch):
    """The replica missed the full version's moment: the live version is already a delta on it and the
    compacted delta has been pruned. It still takes the full version's name and applies the new delta."""
    import index.store as store

    embedder = HashingEmbedder(256)
    writer = _one_delta_before_compaction(tmp_path, five, embedder, monkeypatch)
    replica = load_index(tmp_path, embedder)
    for doc in five[3:]:  # the first compacts (delta, then full), the second is a delta on the full version
        new, _ = update_index(writer, embedder, upsert=doc)
        save_update(new, tmp_path, writer)
        writer = new
        if doc is five[3]:
            at_full = follow(replica, tmp_path, embedder)[0]
            compacted_delta = store.read_manifest(tmp_path).same_as
            assert at_full.version == current_version(tmp_path).name != compacted_delta
    assert not (tmp_path / "versions" / compacted_delta).exists()  # pruned
    stale = replace(at_full, version=compacted_delta)  # as if it had followed just before the full version
    followed, rows_from = follow(stale, tmp_path, embedder)
    assert rows_from is not None and followed.version == writer.version
    _same_index(followed, load_index(tmp_path, embedder))
    assert list(rows_from[: len(stale.passages)]) == list(range(len(stale.passages)))


def test_a_bulk_write_past_the_compaction_share_is_written_once_whole(tmp_path, five, monkeypatch):
    import index.store as store

    monkeypatch.setattr(store, "COMPACT_MIN", 1)
    monkeypatch.setattr(store, "COMPACT_SHARE", 0.1)
    embedder = HashingEmbedder(256)
    data = build_index(five[:1], embedder)
    save_index(data, tmp_path)
    bulk = build_index(five, embedder)
    folder = save_update(refresh(data, five, embedder)[0], tmp_path, data)
    assert not (folder / "delta.jsonl").is_file() and not store.read_manifest(tmp_path).same_as
    assert len(list((tmp_path / "versions").iterdir())) == 2  # no delta written beside it
    assert "same_as" not in json.loads((folder / "manifest.json").read_text())  # readable by earlier releases
    _same_index(load_index(tmp_path, embedder), bulk)
