"""A real `qa serve` on a corrupted index: alive, not ready with a clear reason, no crash loop."""

from __future__ import annotations

import shutil
import time

import httpx

from index.store import current_version
from tests.slow.conftest import spawned_server


def test_server_on_a_truncated_index_reports_not_ready(real_index_dir, tmp_path):
    broken = tmp_path / "index"
    shutil.copytree(real_index_dir, broken)
    faiss_file = current_version(broken) / "passages.faiss"
    faiss_file.write_bytes(faiss_file.read_bytes()[:100])
    env = {"QA_INDEX_DIR": str(broken), "QA_GENERATOR": "none"}
    with spawned_server(env, tmp_path / "server.log") as (proc, base):
        body = None
        for _ in range(240):
            try:
                r = httpx.get(f"{base}/readyz", timeout=2)
                if r.status_code == 503 and "checksum" in r.text:
                    body = r.json()
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert body is not None, (tmp_path / "server.log").read_text()
        assert "passages.faiss" in body["error"]["message"] and "qa index build" in body["error"]["message"]
        assert httpx.get(f"{base}/healthz").status_code == 200
        r = httpx.post(f"{base}/v1/ask", json={"question": "How much is CSC saving?"})
        assert r.status_code == 503 and "Traceback" not in r.text
        time.sleep(1)
        assert proc.poll() is None  # still serving, not crash-looping
    lines = (tmp_path / "server.log").read_text().splitlines()
    assert any('"level": "error"' in line and "checksum" in line for line in lines)  # structured JSON log
