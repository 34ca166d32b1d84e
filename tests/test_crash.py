"""Crash safety, done for real: kill -9 in the middle of index writes, truncated and corrupted files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from index.embedder import HashingEmbedder
from index.store import build_index, current_version, index_state, load_index, save_index
from qa.errors import IndexCorrupt

ROOT = Path(__file__).resolve().parents[1]

WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from index.documents import parse_document
    from index.embedder import HashingEmbedder
    import time
    import index.store as store
    from index.store import build_index, save_index

    # Slow each fsync so that writing, not embedding, fills the cycle: a kill then lands mid-write.
    real_fsync = store._fsync_path
    store._fsync_path = lambda path: (time.sleep(0.15), real_fsync(path))[1]
    out = Path(sys.argv[1])
    e = HashingEmbedder(256)
    big = [parse_document(f"d{i}", "Sentence number %d about parks. " % i * 40) for i in range(60)]
    small = big[:7]
    n = 0
    print("ready", flush=True)
    while True:  # alternate two corpora forever, so a kill lands mid-write
        save_index(build_index(big if n % 2 else small, e), out)
        n += 1
    """
)


def _kill_writer_after(index_dir: Path, delay: float) -> None:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(index_dir)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    proc.stdout.close()


@pytest.mark.parametrize("delay", [0.5, 1.3])
def test_kill_9_during_index_writes_leaves_the_last_complete_index(tmp_path, delay):
    from index.documents import parse_document

    embedder = HashingEmbedder(256)
    save_index(build_index([parse_document("seed", "The first complete index.")], embedder), tmp_path)
    for attempt in range(3):
        _kill_writer_after(tmp_path, delay + 0.2 * attempt)
        data = load_index(tmp_path, embedder)  # never a half-written version
        assert data.manifest.documents in (1, 7, 60)
        assert len(data.passages) == data.manifest.passages
        half_written = [p for p in (tmp_path / "versions").iterdir() if p.name.startswith(".tmp-")]
        assert current_version(tmp_path).name not in {p.name for p in half_written}
        if half_written:
            break  # proof the kill landed inside a write, and the live index survived it
    else:
        pytest.fail("three kills all missed the write phase; the test proved nothing")


def test_truncated_or_corrupt_files_are_reported_and_rebuilt(tmp_path, tiny_docs):
    embedder = HashingEmbedder(256)
    save_index(build_index(tiny_docs, embedder), tmp_path)
    target = current_version(tmp_path) / "sentences.jsonl"
    target.write_bytes(target.read_bytes()[: len(target.read_bytes()) // 2])
    with pytest.raises(IndexCorrupt, match="checksum"):
        load_index(tmp_path, embedder)
    assert index_state(tmp_path, tiny_docs, embedder.model_id) == "corrupt"  # `--if-stale` rebuilds it
    save_index(build_index(tiny_docs, embedder), tmp_path)
    assert load_index(tmp_path, embedder).manifest.documents == 2


def test_garbage_pointer_is_corrupt_not_a_crash(tmp_path, tiny_docs):
    embedder = HashingEmbedder(256)
    save_index(build_index(tiny_docs, embedder), tmp_path)
    (tmp_path / "CURRENT").write_text("../../etc\n")
    with pytest.raises(IndexCorrupt, match="missing version"):
        load_index(tmp_path, embedder)
