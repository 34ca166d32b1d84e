"""`qa index build` on a folder, with the real embedder: a second build embeds only what changed, says
so, and gives the index a build from nothing gives."""

from __future__ import annotations

import shutil

import numpy as np

from index.embedder import SentenceTransformerEmbedder
from index.store import load_index
from qa.cli import main
from tests.conftest import SEEDS

EXTRA = (
    "Harbour trust opens visitor centre\n\nThe harbour trust opened its new visitor centre on Friday. The "
    "building cost £4.2m and will employ 35 staff.\n\nThe trust's chair expects 120,000 visitors a year."
)


def _build(monkeypatch, capsys, source, index_dir) -> str:
    monkeypatch.setenv("QA_SOURCE_DIR", str(source))
    monkeypatch.setenv("QA_INDEX_DIR", str(index_dir))
    assert main(["index", "build"]) == 0
    return capsys.readouterr().err


def test_a_second_build_embeds_only_the_added_and_changed_articles(tmp_path, monkeypatch, capsys):
    source = tmp_path / "articles"
    shutil.copytree(SEEDS, source)
    first = _build(monkeypatch, capsys, source, tmp_path / "index")
    assert "2 added, 0 changed, 0 removed, 0 kept" in first and "passages/s" in first
    (source / "harbour.txt").write_text(EXTRA, encoding="utf-8")
    second = _build(monkeypatch, capsys, source, tmp_path / "index")
    assert "1 added, 0 changed, 0 removed, 2 kept: 2 passages embedded" in second, second
    seed = sorted(source.glob("0*.txt"))[0]
    seed.write_text(seed.read_text(encoding="utf-8") + "\n\nA paragraph added later.\n", encoding="utf-8")
    (source / "harbour.txt").unlink()
    third = _build(monkeypatch, capsys, source, tmp_path / "index")
    assert "0 added, 1 changed, 1 removed, 1 kept" in third, third
    _build(monkeypatch, capsys, source, tmp_path / "scratch")
    embedder = SentenceTransformerEmbedder()
    updated, scratch = load_index(tmp_path / "index", embedder), load_index(tmp_path / "scratch", embedder)
    assert [(p.doc_id, p.start, p.end) for p in updated.passages] == [
        (p.doc_id, p.start, p.end) for p in scratch.passages
    ]
    assert np.allclose(updated.passage_vectors, scratch.passage_vectors, atol=1e-4)
